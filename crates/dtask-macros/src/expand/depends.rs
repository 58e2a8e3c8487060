//! The `#[depends_on]` edges: `Task::upstreams` (each edge's condition on
//! the upstream's response and how the request is built from it) and
//! `Task::CHAIN_DEPTH`.

use proc_macro2::TokenStream;
use quote::quote;

use super::task_impl::snapshot;
use crate::checked::Task;

/// The `upstreams` and `CHAIN_DEPTH` items of the `Task` impl; nothing for
/// a task without dependencies (the trait's defaults).
pub(super) fn upstreams(task: &Task) -> TokenStream {
    if task.dependencies.is_empty() {
        return TokenStream::new();
    }
    let edges = task.dependencies.iter().map(|dependency| {
        let upstream = &dependency.upstream;
        let response = quote!(<#upstream as ::dtask::Task>::Response);
        let condition = match &dependency.condition {
            Some(condition) => {
                let snapshot = snapshot(condition);
                quote! {
                    ::dtask::__private::Option::Some(
                        (|response: &#response| -> ::dtask::__private::ConditionSnapshot { #snapshot })
                            as fn(&#response) -> ::dtask::__private::ConditionSnapshot,
                    )
                }
            }
            None => quote!(::dtask::__private::Option::None),
        };
        let build = match &dependency.request {
            Some(path) => quote!(#path),
            None => quote! {
                |response: &#response| -> <Self as ::dtask::Task>::Request {
                    ::dtask::__private::From::from(::dtask::__private::Clone::clone(response))
                }
            },
        };
        let edge = quote!(::dtask::__private::Upstream::new::<#upstream>(#condition, #build));
        match dependency.compensate_upstream {
            true => quote!(#edge.compensating_upstream()),
            false => edge,
        }
    });
    let depths = task.dependencies.iter().map(|dependency| {
        let upstream = &dependency.upstream;
        quote!(<#upstream as ::dtask::Task>::CHAIN_DEPTH)
    });
    quote! {
        fn upstreams() -> ::dtask::__private::Vec<::dtask::__private::Upstream<Self>> {
            ::dtask::__private::Vec::from([#(#edges),*])
        }

        const CHAIN_DEPTH: usize = 1 + ::dtask::__private::max_depth(&[#(#depths),*]);
    }
}

/// The `depends_on` entries of the static definition.
pub(super) fn definitions(task: &Task) -> TokenStream {
    let entries = task.dependencies.iter().map(|dependency| {
        let upstream = &dependency.upstream;
        let condition = match &dependency.condition {
            Some(condition) => {
                let text = &condition.text;
                quote!(::dtask::__private::Option::Some(#text))
            }
            None => quote!(::dtask::__private::Option::None),
        };
        let compensate_upstream = dependency.compensate_upstream;
        quote! {
            ::dtask::__private::DependencyDefinition {
                upstream: <#upstream as ::dtask::Task>::definition,
                condition: #condition,
                compensate_upstream: #compensate_upstream,
            }
        }
    });
    quote!(&[#(#entries),*])
}
