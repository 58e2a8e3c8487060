//! The names a declaration introduces: steps (PascalCase, and their
//! snake_case data names) and groups. Building the scope checks that they
//! are well-formed and unique; resolving a reference names the closest
//! declared name when it fails.

use std::collections::HashMap;

use heck::ToUpperCamelCase;
use proc_macro2::Ident;

use crate::errors::Errors;
use crate::model::{Declaration, StepDecl, StepKind};
use crate::names::{did_you_mean, is_keyword, snake};

/// What a data reference (an input, a source, a name in a condition)
/// resolves to.
pub(crate) enum Data {
    Request,
    /// A step, by declaration index.
    Step(usize),
}

/// The declared names.
pub(crate) struct Scope<'a> {
    pub(crate) declaration: &'a Declaration,
    /// The snake_case name of each step, by declaration index.
    pub(crate) snakes: Vec<Ident>,
    steps: HashMap<String, usize>,
    data: HashMap<String, usize>,
    groups: HashMap<String, usize>,
}

impl<'a> Scope<'a> {
    /// Collects the names, reporting malformed, duplicate and colliding
    /// ones (the first declaration of a name wins).
    pub(crate) fn new(declaration: &'a Declaration, errors: &mut Errors) -> Self {
        let mut scope = Self {
            declaration,
            snakes: declaration.steps.iter().map(|s| snake(&s.name)).collect(),
            steps: HashMap::new(),
            data: HashMap::new(),
            groups: HashMap::new(),
        };
        for (index, step) in declaration.steps.iter().enumerate() {
            scope.add_step(index, step, errors);
        }
        for (index, group) in declaration.groups.iter().enumerate() {
            let name = group.name.to_string();
            if scope.steps.contains_key(&name) {
                errors.at(group.name.span(), format_args!("`{name}` already names a step"));
            } else if scope.groups.insert(name.clone(), index).is_some() {
                errors.at(group.name.span(), format_args!("duplicate parallel group `{name}`"));
            }
        }
        scope.check_method_names(errors);
        scope
    }

    fn add_step(&mut self, index: usize, step: &StepDecl, errors: &mut Errors) {
        let name = step.name.to_string();
        let snake = self.snakes[index].to_string();
        if !name.starts_with(|c: char| c.is_ascii_uppercase()) || name.contains('_') {
            let pascal = name.to_upper_camel_case();
            errors.at(
                step.name.span(),
                format_args!("step names are PascalCase: `{pascal}`, not `{name}`"),
            );
        }
        if let Some(first) = self.steps.get(&name) {
            let kind = kind_name(&self.declaration.steps[*first]);
            errors.at(
                step.name.span(),
                format_args!(
                    "duplicate step name `{name}`: a #[{kind}] already declares it, and step names are unique"
                ),
            );
            return;
        }
        if is_keyword(&snake) {
            errors.at(
                step.name.span(),
                format_args!("`{name}` cannot name a step: its snake_case name `{snake}` is a Rust keyword"),
            );
        }
        if matches!(snake.as_str(), "request" | "response") {
            errors.at(
                step.name.span(),
                format_args!("`{name}` cannot name a step: `{snake}` is reserved for the task's {snake}"),
            );
        }
        if let Some(other) = self.data.get(&snake) {
            let other = &self.declaration.steps[*other].name;
            errors.at(
                step.name.span(),
                format_args!("steps `{other}` and `{name}` both have the snake_case name `{snake}`: rename one"),
            );
        }
        self.steps.insert(name, index);
        self.data.insert(snake, index);
    }

    /// A custom step named `CompensateX` would collide with the method
    /// compensating step `X`.
    fn check_method_names(&self, errors: &mut Errors) {
        for (index, step) in self.declaration.steps.iter().enumerate() {
            let snake = self.snakes[index].to_string();
            if let Some(rest) = snake.strip_prefix("compensate_")
                && self.data.contains_key(rest)
            {
                errors.at(
                    step.name.span(),
                    format_args!(
                        "`{}` cannot name a step: `{snake}` is the method compensating step `{rest}`",
                        step.name
                    ),
                );
            }
        }
    }

    /// The declaration index of the step named `name` (PascalCase).
    pub(crate) fn step(&self, name: &Ident) -> Option<usize> {
        self.steps.get(&name.to_string()).copied()
    }

    /// The declaration index of the group named `name`.
    pub(crate) fn group(&self, name: &Ident) -> Option<usize> {
        self.groups.get(&name.to_string()).copied()
    }

    /// The error for a setting or group reference naming no step.
    pub(crate) fn unknown_step(&self, name: &Ident, what: &str) -> syn::Error {
        let text = name.to_string();
        let detail = if self.groups.contains_key(&text) {
            format!(": `{text}` is a parallel group, and {what} applies to steps")
        } else {
            did_you_mean(&text, self.steps.keys().map(String::as_str))
        };
        syn::Error::new(name.span(), format!("{what} names unknown step `{text}`{detail}"))
    }

    /// The error for a `group = X` naming no group.
    pub(crate) fn unknown_group(&self, name: &Ident) -> syn::Error {
        let text = name.to_string();
        syn::Error::new(
            name.span(),
            format!(
                "unknown parallel group `{text}`: declare it with #[parallel_group({text}, order = N)]{}",
                did_you_mean(&text, self.groups.keys().map(String::as_str))
            ),
        )
    }

    /// Resolves a data reference without checking orders.
    pub(crate) fn data(&self, name: &Ident) -> Option<Data> {
        let text = name.to_string();
        if text == "request" {
            return Some(Data::Request);
        }
        self.data.get(&text).map(|index| Data::Step(*index))
    }

    /// The error for a data reference naming no step, `what` being
    /// "step" or "step or value".
    pub(crate) fn unknown_data(&self, name: &Ident, what: &str, place: &str) -> syn::Error {
        let text = name.to_string();
        let hint = match self.steps.get(&text) {
            Some(index) => format!(": data references use the snake_case name `{}`", self.snakes[*index]),
            None => did_you_mean(&text, self.data.keys().map(String::as_str).chain(["request"])),
        };
        syn::Error::new(name.span(), format!("unknown {what} `{text}` in {place}{hint}"))
    }

    /// Checks that step `producer` (declaration index) runs strictly before
    /// `reader`, whose data reference `name` reads it.
    pub(crate) fn check_before(&self, name: &Ident, producer: usize, reader: &StepDecl) -> syn::Result<()> {
        let step = &self.declaration.steps[producer];
        let (order, reader_order) = (step.order.value, reader.order.value);
        if order < reader_order {
            return Ok(());
        }
        let when = if step.name == reader.name {
            format!("`{name}` is the data of step `{}` itself", reader.name)
        } else if order == reader_order {
            format!(
                "`{name}` is the data of step `{}`, which runs alongside it at order {order}",
                step.name
            )
        } else {
            format!(
                "`{name}` is the data of step `{}`, which runs at order {order}, not before order {reader_order}",
                step.name
            )
        };
        Err(syn::Error::new(
            name.span(),
            format!(
                "{when}: step `{}` reads only the request and the data of steps with a lower order",
                reader.name
            ),
        ))
    }
}

/// The attribute that declares `step`.
pub(crate) fn kind_name(step: &StepDecl) -> &'static str {
    match step.kind {
        StepKind::Custom { .. } => "custom_step",
        StepKind::Upload { .. } => "file_upload",
        StepKind::Download { .. } => "file_download",
    }
}
