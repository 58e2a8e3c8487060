//! `#[depends_on(Upstream, condition = <expr>, request = path,
//! compensate_upstream)]`: the task starts when `Upstream` completes.

use syn::parse::ParseStream;
use syn::{Attribute, Expr, Token};

use super::args::parse_args;
use super::value;
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
        let mut compensate_upstream = false;
        parse_args(
            input,
            errors,
            DependsOnKey::parse,
            DependsOnKey::name,
            |key, input, _| {
                if key == DependsOnKey::CompensateUpstream {
                    compensate_upstream = value::flag(input, "compensate_upstream")?;
                    return Ok(());
                }
                input.parse::<Token![=]>()?;
                match key {
                    DependsOnKey::CompensateUpstream => {}
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
            compensate_upstream,
        })
    })
}
