//! Data flow: every input and source names the request or a step that runs
//! earlier; request files are uploaded once; buckets are valid.

use std::collections::HashMap;

use proc_macro2::Ident;
use syn::LitStr;

use super::scope::{Data, Scope};
use crate::checked::{Kind, Source};
use crate::errors::Errors;
use crate::model::{DataPath, StepDecl, StepKind};

/// Resolves the data references of every step's declaration. Step indices
/// in the result are declaration indices. `None` where a reference failed.
pub(crate) fn kinds(scope: &Scope<'_>, errors: &mut Errors) -> Vec<Option<Kind>> {
    let mut uploaded: HashMap<String, &Ident> = HashMap::new();
    let steps = &scope.declaration.steps;
    steps
        .iter()
        .map(|step| match &step.kind {
            StepKind::Custom { inputs, output } => {
                let inputs = custom_inputs(scope, step, inputs, errors)?;
                let output = output.clone().unwrap_or_else(|| syn::parse_quote!(()));
                Some(Kind::Custom { inputs, output })
            }
            StepKind::Upload { bucket, source } => {
                check_bucket(bucket, errors);
                if source.root == "request"
                    && !source.fields.is_empty()
                    && let Some(first) = uploaded.insert(path_text(source), &step.name)
                {
                    errors.on(
                        &source.expr,
                        format_args!(
                            "`{}` is already the source of upload step `{first}`: a request's files can be read only once",
                            path_text(source)
                        ),
                    );
                }
                let source = resolve_source(scope, step, source, errors)?;
                Some(Kind::Upload {
                    bucket: bucket.value(),
                    source,
                })
            }
            StepKind::Download { source } => Some(Kind::Download {
                source: resolve_source(scope, step, source, errors)?,
            }),
        })
        .collect()
}

fn custom_inputs(scope: &Scope<'_>, step: &StepDecl, inputs: &[Ident], errors: &mut Errors) -> Option<Vec<usize>> {
    let mut resolved = Vec::new();
    let mut ok = true;
    for (position, name) in inputs.iter().enumerate() {
        if inputs[..position].contains(name) {
            errors.at(name.span(), format_args!("`{name}` is listed twice in `inputs`"));
            ok = false;
            continue;
        }
        match scope.data(name) {
            Some(Data::Request) => {
                errors.at(
                    name.span(),
                    "the request is always part of a step's input: remove `request` from `inputs`",
                );
                ok = false;
            }
            Some(Data::Step(producer)) => match scope.check_before(name, producer, step) {
                Ok(()) => resolved.push(producer),
                Err(error) => {
                    errors.push(error);
                    ok = false;
                }
            },
            None => {
                errors.push(scope.unknown_data(name, "step", "`inputs`"));
                ok = false;
            }
        }
    }
    ok.then_some(resolved)
}

fn resolve_source(scope: &Scope<'_>, step: &StepDecl, source: &DataPath, errors: &mut Errors) -> Option<Source> {
    let root = match scope.data(&source.root) {
        Some(Data::Request) if source.fields.is_empty() => {
            errors.on(&source.expr, "a source reads a field of the request: `request.<field>`");
            return None;
        }
        Some(Data::Request) => None,
        Some(Data::Step(producer)) => match scope.check_before(&source.root, producer, step) {
            Ok(()) => Some(producer),
            Err(error) => {
                errors.push(error);
                return None;
            }
        },
        None => {
            errors.push(scope.unknown_data(&source.root, "step", "`source`"));
            return None;
        }
    };
    Some(Source {
        root,
        written: source.root.clone(),
        fields: source.fields.clone(),
    })
}

/// `request.files`: the path as written, without spaces.
fn path_text(path: &DataPath) -> String {
    let mut text = path.root.to_string();
    for member in &path.fields {
        text.push('.');
        text.push_str(&crate::render::member(member));
    }
    text
}

/// Checks an S3-style bucket name: 3 to 63 characters among `a-z`, `0-9`,
/// `-` and `.`, starting and ending with a letter or a digit.
fn check_bucket(bucket: &LitStr, errors: &mut Errors) {
    let name = bucket.value();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = (3..=63).contains(&name.len())
        && name.chars().all(allowed)
        && edge(name.chars().next())
        && edge(name.chars().last());
    if !valid {
        errors.at(
            bucket.span(),
            format_args!(
                "invalid bucket name \"{name}\": a bucket name has 3 to 63 characters among a-z, 0-9, `-` and `.`, \
                 and starts and ends with a letter or a digit"
            ),
        );
    }
}
