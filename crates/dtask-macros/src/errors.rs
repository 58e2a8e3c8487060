//! Collecting several errors before failing, each spanned on its own token.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

/// The errors found so far by one stage.
#[derive(Default)]
pub(crate) struct Errors {
    errors: Vec<syn::Error>,
}

impl Errors {
    /// Records an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    /// Records an error spanned on `span`.
    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Records an error spanned on the tokens of `node`.
    pub(crate) fn on(&mut self, node: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(node, message));
    }

    /// Records every error of `other`.
    pub(crate) fn extend(&mut self, other: Errors) {
        self.errors.extend(other.errors);
    }

    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, the errors otherwise.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, Errors> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }

    /// Every error as a `compile_error!`, in the order found.
    pub(crate) fn to_compile_error(&self) -> TokenStream {
        self.errors.iter().map(syn::Error::to_compile_error).collect()
    }
}
