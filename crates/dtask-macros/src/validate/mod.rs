//! Stage 2: checks the declaration as a whole and produces the
//! [`checked`](crate::checked) model. Every check runs, and the stage fails
//! once, with every error found.

mod condition;
mod data;
mod scope;
mod structure;

use syn::{ItemStruct, LitStr, Type};

use self::scope::Scope;
use crate::checked::{Condition, Dependency, Group, Kind, Step, Task};
use crate::errors::Errors;
use crate::model::{Declaration, DependsOnDecl, Format, Mode, TaskArgs};
use crate::names::{is_keyword, snake};
use crate::render;

/// The required task arguments.
struct Required {
    name: String,
    request: Type,
    response: Type,
}

/// Validates `declaration`, the helper attributes of `item`.
pub(crate) fn validate(item: &ItemStruct, declaration: Declaration) -> Result<Task, Errors> {
    let mut errors = Errors::default();
    let required = required_args(&declaration.args, &mut errors);
    let module = snake(&item.ident);
    if is_keyword(&module.to_string()) {
        errors.on(
            &item.ident,
            format_args!("the generated module `{module}` would be a Rust keyword: rename the struct"),
        );
    }
    if declaration.steps.is_empty() {
        errors.on(
            &item.ident,
            "a task must declare at least one step: add a #[custom_step], #[file_upload] or #[file_download] below #[dtask::task]",
        );
    }
    let scope = Scope::new(&declaration, &mut errors);
    let groups = structure::groups(&scope, &mut errors);
    structure::orders(&scope, &groups, &mut errors);
    let settings = structure::settings(&scope, &mut errors);
    structure::api_prefix(&scope, &settings, &mut errors);
    let kinds = data::kinds(&scope, &mut errors);
    let required_roles = required_roles(&declaration.args.required_roles, &mut errors);
    let conditions: Vec<Option<Condition>> = declaration
        .steps
        .iter()
        .zip(&settings)
        .map(|(step, setting)| {
            let expr = setting.condition?;
            condition::analyse(&scope, step, expr, &mut errors)
        })
        .collect();
    let dependencies = dependencies(item, &declaration.dependencies, &mut errors);
    let Some(required) = required else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }

    // Everything resolved: sort steps and groups by order and re-index.
    let step_order = sorted_by(declaration.steps.iter().map(|s| s.order.value));
    let group_order = sorted_by(declaration.groups.iter().map(|g| g.order.value));
    let step_at = positions(&step_order);
    let group_at = positions(&group_order);
    let mut kinds: Vec<Option<Kind>> = kinds;
    let mut conditions = conditions;
    let steps = step_order
        .iter()
        .map(|&index| {
            let decl = &declaration.steps[index];
            let setting = &settings[index];
            let group = groups[index];
            let condition = conditions[index].take().map(|mut c| {
                c.reads = c.reads.iter().map(|r| step_at[*r]).collect();
                c
            });
            let await_all = group.is_none_or(|g| declaration.groups[g].await_all);
            Step {
                name: decl.name.clone(),
                snake: scope.snakes[index].clone(),
                order: decl.order.value,
                kind: reindex(kinds[index].take(), &step_at),
                host: setting.host(),
                group: group.map(|g| group_at[g]),
                retry: setting.retry.cloned(),
                timeout_secs: decl.timeout_secs,
                may_skip: condition.is_some() || !await_all,
                condition,
                user_compensation: setting.compensation,
            }
        })
        .collect();
    let groups = group_order
        .iter()
        .map(|&index| {
            let group = &declaration.groups[index];
            Group {
                name: group.name.to_string(),
                order: group.order.value,
                await_all: group.await_all,
                distribute: group.distribute,
            }
        })
        .collect();
    let args = &declaration.args;
    Ok(Task {
        ident: item.ident.clone(),
        vis: item.vis.clone(),
        module,
        name: required.name,
        queue: args.queue.as_ref().map_or_else(|| "default".to_owned(), LitStr::value),
        max_retries: args.max_retries.unwrap_or(3),
        timeout_secs: args.timeout_secs.unwrap_or(300),
        mode: args.mode.unwrap_or(Mode::Distributed),
        format: args.format.unwrap_or(Format::Json),
        cancellable: args.cancellable,
        required_roles,
        encrypt_messages: args.encrypt_messages,
        version: args.version.unwrap_or(1),
        request: required.request,
        response: required.response,
        steps,
        groups,
        dependencies,
    })
}

/// The `#[depends_on]` edges: no task depends on itself or twice on one
/// task, and each condition reads only `response`.
fn dependencies(item: &ItemStruct, declared: &[DependsOnDecl], errors: &mut Errors) -> Vec<Dependency> {
    let mut seen: Vec<String> = Vec::new();
    let mut checked = Vec::new();
    for decl in declared {
        let upstream = &decl.upstream;
        let text = render::tokens(quote::quote!(#upstream));
        if upstream.is_ident("Self") || upstream.is_ident(&item.ident) {
            errors.on(
                upstream,
                format_args!(
                    "task `{}` cannot depend on itself: the dependencies form a cycle",
                    item.ident
                ),
            );
            continue;
        }
        if seen.contains(&text) {
            errors.on(upstream, format_args!("`{}` depends on `{text}` twice", item.ident));
            continue;
        }
        seen.push(text);
        let condition = match &decl.condition {
            Some(expr) => match condition::analyse_dependency(expr, errors) {
                Some(condition) => Some(condition),
                None => continue,
            },
            None => None,
        };
        checked.push(Dependency {
            upstream: upstream.clone(),
            condition,
            request: decl.request.clone(),
            compensate_upstream: decl.compensate_upstream,
        });
    }
    checked
}

/// The roles of `requires_role`, reporting empty and repeated ones.
fn required_roles(roles: &[LitStr], errors: &mut Errors) -> Vec<String> {
    let mut seen: Vec<String> = Vec::with_capacity(roles.len());
    for role in roles {
        let value = role.value();
        if value.trim().is_empty() {
            errors.on(role, "a role in `requires_role` cannot be empty");
        } else if value.chars().any(char::is_whitespace) {
            errors.on(
                role,
                format_args!("the role `{value}` contains whitespace: roles are single words"),
            );
        } else if seen.contains(&value) {
            errors.on(
                role,
                format_args!("the role `{value}` is listed twice in `requires_role`"),
            );
        } else {
            seen.push(value);
        }
    }
    seen
}

/// The required arguments, reporting those missing (spanned on the task
/// attribute) and malformed names.
fn required_args(args: &TaskArgs, errors: &mut Errors) -> Option<Required> {
    let call_site = proc_macro2::Span::call_site();
    if args.name.is_none() {
        errors.at(call_site, "a task needs a name: add `name = \"MyTask\"` (MustHaveName)");
    }
    if args.request.is_none() {
        errors.at(
            call_site,
            "a task needs a request type: add `request = MyRequest` (MustHaveRequest)",
        );
    }
    if args.response.is_none() {
        errors.at(
            call_site,
            "a task needs a response type: add `response = MyResponse` (MustHaveResponse)",
        );
    }
    for (key, lit) in [("name", &args.name), ("queue", &args.queue)] {
        if let Some(lit) = lit {
            let value = lit.value();
            if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '/') {
                errors.at(
                    lit.span(),
                    format_args!(
                        "a task's {key} is not empty and has no spaces or `/`: it appears in URLs and queue names"
                    ),
                );
            }
        }
    }
    Some(Required {
        name: args.name.as_ref()?.value(),
        request: args.request.clone()?,
        response: args.response.clone()?,
    })
}

/// The indices of `keys`, sorted by key; equal keys keep their order.
fn sorted_by(keys: impl Iterator<Item = u32>) -> Vec<usize> {
    let keys: Vec<u32> = keys.collect();
    let mut indices: Vec<usize> = (0..keys.len()).collect();
    indices.sort_by_key(|&i| keys[i]);
    indices
}

/// The inverse of a permutation: where each original index went.
fn positions(sorted: &[usize]) -> Vec<usize> {
    let mut at = vec![0; sorted.len()];
    for (position, &index) in sorted.iter().enumerate() {
        at[index] = position;
    }
    at
}

/// Moves a kind's step references from declaration to sorted indices.
fn reindex(kind: Option<Kind>, step_at: &[usize]) -> Kind {
    match kind {
        Some(Kind::Custom { inputs, output }) => Kind::Custom {
            inputs: inputs.iter().map(|i| step_at[*i]).collect(),
            output,
        },
        Some(Kind::Upload { bucket, mut source }) => {
            source.root = source.root.map(|r| step_at[r]);
            Kind::Upload { bucket, source }
        }
        Some(Kind::Download { mut source }) => {
            source.root = source.root.map(|r| step_at[r]);
            Kind::Download { source }
        }
        // Unreachable after a clean validation; a unit custom step keeps
        // expansion total rather than panicking.
        None => Kind::Custom {
            inputs: Vec::new(),
            output: syn::parse_quote!(()),
        },
    }
}
