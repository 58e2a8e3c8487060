//! The argument loop shared by every attribute: `key`, `key = value` or
//! `key(list)` arguments separated by commas. An error in one argument is
//! recorded and parsing goes on at the next comma, so one attribute can
//! report several mistakes at once.

use proc_macro2::{Ident, Span, TokenTree};
use syn::Token;
use syn::parse::ParseStream;

use crate::errors::Errors;

/// Parses the keys of one attribute with `key` and hands each to `value`,
/// which parses the rest of the argument. A key given twice is an error.
/// Returns the keys met, even those whose value was wrong, so that a
/// caller does not report a required key as missing when it was given
/// with a bad value.
pub(crate) fn parse_args<K: Copy + PartialEq>(
    input: ParseStream<'_>,
    errors: &mut Errors,
    key: fn(ParseStream<'_>) -> syn::Result<(K, Span)>,
    name: fn(K) -> &'static str,
    mut value: impl FnMut(K, ParseStream<'_>, &mut Errors) -> syn::Result<()>,
) -> Vec<K> {
    let mut seen: Vec<K> = Vec::new();
    while !input.is_empty() {
        let result = key(input).and_then(|(key, span)| {
            if seen.contains(&key) {
                errors.at(span, format_args!("`{}` is given twice", name(key)));
            }
            seen.push(key);
            value(key, input, errors)
        });
        if let Err(error) = result {
            errors.push(error);
            skip_to_comma(input);
        }
        if input.is_empty() {
            break;
        }
        if let Err(error) = input.parse::<Token![,]>() {
            errors.push(error);
            skip_to_comma(input);
            let _ = input.parse::<Option<Token![,]>>();
        }
    }
    seen
}

/// Parses the leading name of a step attribute (`UploadZip` in
/// `#[file_upload(UploadZip, ...)]`) and the comma after it.
pub(crate) fn leading_name(input: ParseStream<'_>, what: &str) -> syn::Result<Ident> {
    if input.peek(syn::LitStr) {
        let lit: syn::LitStr = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            format!("{what} names are identifiers, not strings: write `{}`", lit.value()),
        ));
    }
    let name: Ident = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), format!("expected the {what}'s name first")))?;
    if !input.is_empty() {
        input.parse::<Token![,]>()?;
    }
    Ok(name)
}

/// Skips the tokens of a broken argument, up to the next comma.
fn skip_to_comma(input: ParseStream<'_>) {
    while !input.is_empty() && !input.peek(Token![,]) {
        if input.parse::<TokenTree>().is_err() {
            break;
        }
    }
}
