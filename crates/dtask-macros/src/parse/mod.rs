//! Stage 1: from tokens to the syntax model of [`crate::model`].
//!
//! The task attribute's own arguments are parsed, then every helper
//! attribute of the struct is taken off it and parsed. Every syntax error is
//! recorded; the stage fails once, with all of them, at its end.

mod args;
mod depends;
mod setting;
mod step;
mod task;
mod value;

use proc_macro2::TokenStream;
use syn::{Attribute, ItemStruct};

use self::setting::SettingKind;
use crate::errors::Errors;
use crate::model::Declaration;

/// The helper attributes the macro consumes.
#[derive(Clone, Copy)]
enum Helper {
    CustomStep,
    FileUpload,
    FileDownload,
    ParallelGroup,
    DependsOn,
    Setting(SettingKind),
}

impl Helper {
    fn of(attr: &Attribute) -> Option<Self> {
        let ident = attr.path().get_ident()?;
        Some(match ident.to_string().as_str() {
            "custom_step" => Self::CustomStep,
            "file_upload" => Self::FileUpload,
            "file_download" => Self::FileDownload,
            "parallel_group" => Self::ParallelGroup,
            "depends_on" => Self::DependsOn,
            "placement" => Self::Setting(SettingKind::Placement),
            "retry" => Self::Setting(SettingKind::Retry),
            "condition" => Self::Setting(SettingKind::Condition),
            "compensation" => Self::Setting(SettingKind::Compensation),
            _ => return None,
        })
    }
}

/// Parses the task attribute's arguments and takes the helper attributes
/// off `item`.
pub(crate) fn parse(args: TokenStream, item: &mut ItemStruct) -> Result<Declaration, Errors> {
    let mut errors = Errors::default();
    let mut declaration = Declaration {
        args: task::parse_task_args(args, &mut errors),
        steps: Vec::new(),
        groups: Vec::new(),
        settings: Vec::new(),
        dependencies: Vec::new(),
    };
    for attr in std::mem::take(&mut item.attrs) {
        match Helper::of(&attr) {
            Some(helper) => {
                if let Err(error) = helper_attr(helper, &attr, &mut declaration, &mut errors) {
                    errors.push(error);
                }
            }
            None => item.attrs.push(attr),
        }
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.on(
            &item.generics,
            "a task struct cannot be generic: its definition is one static description",
        );
    }
    errors.finish(declaration)
}

fn helper_attr(
    helper: Helper,
    attr: &Attribute,
    declaration: &mut Declaration,
    errors: &mut Errors,
) -> syn::Result<()> {
    match helper {
        Helper::CustomStep => declaration.steps.extend(step::custom_step(attr, errors)?),
        Helper::FileUpload => declaration.steps.extend(step::file_upload(attr, errors)?),
        Helper::FileDownload => declaration.steps.extend(step::file_download(attr, errors)?),
        Helper::ParallelGroup => declaration.groups.extend(step::parallel_group(attr, errors)?),
        Helper::DependsOn => declaration.dependencies.push(depends::depends_on(attr, errors)?),
        Helper::Setting(kind) => declaration.settings.extend(setting::setting(kind, attr, errors)?),
    }
    Ok(())
}
