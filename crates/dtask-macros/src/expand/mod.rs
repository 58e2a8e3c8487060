//! Stage 3: the generated code. Thin glue: typed structs for the step data
//! and inputs, the `Steps` trait the user implements, a static definition,
//! and a `Task` implementation whose methods dispatch on the step index to
//! the user's methods and the runtime's built-in steps. Every path is
//! absolute, through `::dtask::__private` or `::dtask`.

mod definition;
mod depends;
mod module;
mod task_impl;

use proc_macro2::{Ident, TokenStream};
use quote::quote;
use syn::visit_mut::{self, VisitMut};
use syn::{Path, Type};

use crate::checked::{Kind, Step, Task};

/// The module and the `Task` implementation for `task`.
pub(crate) fn expand(task: &Task) -> TokenStream {
    let module = module::module(task);
    let task_impl = task_impl::task_impl(task);
    quote! {
        #module
        #task_impl
    }
}

/// `#[doc = "..."]`.
fn doc(text: impl AsRef<str>) -> TokenStream {
    let text = text.as_ref();
    quote!(#[doc = #text])
}

/// A type written next to the struct, as seen from inside the generated
/// module: `self::X` becomes `super::X`, `super::X` becomes
/// `super::super::X`, and a name the module itself declares (`Data`,
/// `Outputs`, `Steps`, `<Step>Input`) becomes `super::Name`; other paths
/// resolve through the module's `use super::*`.
fn in_module(task: &Task, ty: &Type) -> Type {
    struct Rebase<'a>(&'a Task);
    impl VisitMut for Rebase<'_> {
        fn visit_path_mut(&mut self, path: &mut Path) {
            if path.leading_colon.is_none()
                && let Some(first) = path.segments.first_mut()
            {
                let span = first.ident.span();
                if first.ident == "self" {
                    first.ident = Ident::new("super", span);
                } else if first.ident == "super" || declared_in_module(self.0, &first.ident) {
                    path.segments.insert(0, Ident::new("super", span).into());
                }
            }
            visit_mut::visit_path_mut(self, path);
        }
    }
    let mut ty = ty.clone();
    Rebase(task).visit_type_mut(&mut ty);
    ty
}

/// Whether the generated module declares an item named `name`.
fn declared_in_module(task: &Task, name: &Ident) -> bool {
    let name = name.to_string();
    matches!(name.as_str(), "Data" | "Outputs" | "Steps")
        || task
            .steps
            .iter()
            .any(|step| matches!(step.kind, Kind::Custom { .. }) && module::input_name(step) == name)
}

/// A step's data type as seen from inside the generated module.
fn data_type_in_module(task: &Task, step: &Step) -> TokenStream {
    match &step.kind {
        Kind::Custom { output, .. } => {
            let output = in_module(task, output);
            quote!(#output)
        }
        _ => step.data_type(),
    }
}

/// `&'a T`, or `Option<&'a T>` when the step may have been skipped.
fn borrowed_data(task: &Task, step: &Step) -> TokenStream {
    let ty = data_type_in_module(task, step);
    if step.may_skip {
        quote!(::dtask::__private::Option<&'a #ty>)
    } else {
        quote!(&'a #ty)
    }
}

/// How an `Input` or `Outputs` field gets step `step`'s data from the
/// variable `data`: `required(...)?` or, for a step that may be skipped,
/// the bare `Option`.
fn data_value(step: &Step) -> TokenStream {
    let snake = &step.snake;
    let name = step.name.to_string();
    if step.may_skip {
        quote!(data.#snake.as_ref())
    } else {
        quote!(::dtask::__private::required(data.#snake.as_ref(), #name)?)
    }
}
