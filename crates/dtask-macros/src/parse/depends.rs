//! `#[depends_on(Upstream, condition = <expr>, request = path)]`: the task
//! starts when `Upstream` completes.

use syn::parse::ParseStream;
use syn::{Attribute, Expr, Token};

use super::args::parse_args;
use crate::errors::Errors;
use crate::kw::DependsOnKey;
use crate::model::DependsOnDecl;

/// Parses one `#[depends_on]`.
pub(crate) fn depends_on(attr: &Attribute, errors: &mut Errors) -> syn::Result<DependsOnDecl> {
    attr.parse_args_with(|input: ParseStream<'_>| {
        let upstream: syn::Path = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the upstream task's type first: `#[depends_on(ValidateInventory, ...)]`",
            )
        })?;
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
        let mut condition = None;
        let mut request = None;
        parse_args(
            input,
            errors,
            DependsOnKey::parse,
            DependsOnKey::name,
            |key, input, _| {
                input.parse::<Token![=]>()?;
                match key {
                    DependsOnKey::Condition => condition = Some(input.parse::<Expr>()?),
                    DependsOnKey::Request => {
                        request = Some(input.parse::<syn::Path>().map_err(|e| {
                            syn::Error::new(
                                e.span(),
                                "`request` names a function from the upstream's response to this task's request",
                            )
                        })?);
                    }
                }
                Ok(())
            },
        );
        Ok(DependsOnDecl {
            upstream,
            condition,
            request,
        })
    })
}
