//! The task DSL of dtask (being written).
use proc_macro::TokenStream;

/// Declares a task.
#[proc_macro_attribute]
pub fn task(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
