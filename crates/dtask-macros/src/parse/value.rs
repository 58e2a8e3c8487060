//! The values of arguments: integers, strings, booleans, one identifier
//! out of a known set, types, identifier lists and data paths. Each takes
//! the input just after the key, and fails with a message naming the key.

use proc_macro2::Ident;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{Expr, Lit, LitStr, Token, Type, UnOp};

use crate::model::{DataPath, Spanned};
use crate::names::{did_you_mean, single_ident};

/// `= <expr>`.
fn assigned(input: ParseStream<'_>) -> syn::Result<Expr> {
    input.parse::<Token![=]>()?;
    input.parse()
}

/// What kind of literal `lit` is, for "found a ..." messages.
fn lit_kind(lit: &Lit) -> &'static str {
    match lit {
        Lit::Str(_) => "a string",
        Lit::ByteStr(_) | Lit::CStr(_) => "a byte string",
        Lit::Byte(_) | Lit::Char(_) => "a character",
        Lit::Int(_) => "an integer",
        Lit::Float(_) => "a float",
        Lit::Bool(_) => "a boolean",
        _ => "a literal",
    }
}

/// `= N`: a non-negative integer literal that fits `T`.
pub(crate) fn integer<T>(input: ParseStream<'_>, key: &str) -> syn::Result<Spanned<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let expr = assigned(input)?;
    match &expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Int(int) => Ok(Spanned {
                value: int
                    .base10_parse()
                    .map_err(|e| syn::Error::new(int.span(), format!("`{key}` is out of range: {e}")))?,
                span: int.span(),
            }),
            other => Err(syn::Error::new_spanned(
                other,
                format!("`{key}` takes an integer, found {}", lit_kind(other)),
            )),
        },
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => {
            Err(syn::Error::new_spanned(&expr, format!("`{key}` cannot be negative")))
        }
        _ => Err(syn::Error::new_spanned(
            &expr,
            format!("`{key}` takes an integer literal"),
        )),
    }
}

/// `= N` with `N > 0`: a time limit.
pub(crate) fn positive(input: ParseStream<'_>, key: &str) -> syn::Result<u64> {
    let value = integer::<u64>(input, key)?;
    if value.value == 0 {
        return Err(syn::Error::new(
            value.span,
            format!("`{key}` must be greater than 0: a limit of 0 seconds would fail every attempt"),
        ));
    }
    Ok(value.value)
}

/// `= "text"`.
pub(crate) fn string(input: ParseStream<'_>, key: &str) -> syn::Result<LitStr> {
    match assigned(input)? {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(lit), .. }) => Ok(lit),
        Expr::Lit(lit) => Err(syn::Error::new_spanned(
            &lit,
            format!("`{key}` takes a string literal, found {}", lit_kind(&lit.lit)),
        )),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{key}` takes a string literal"),
        )),
    }
}

/// `= "text"` or `= ["one", "two"]`.
pub(crate) fn strings(input: ParseStream<'_>, key: &str) -> syn::Result<Vec<LitStr>> {
    let expr = assigned(input)?;
    let elements: Vec<&Expr> = match &expr {
        Expr::Array(array) => array.elems.iter().collect(),
        single => vec![single],
    };
    elements
        .into_iter()
        .map(|element| match element {
            Expr::Lit(syn::ExprLit { lit: Lit::Str(lit), .. }) => Ok(lit.clone()),
            other => Err(syn::Error::new_spanned(
                other,
                format!("`{key}` takes a string literal or an array of them: `{key} = [\"a\", \"b\"]`"),
            )),
        })
        .collect()
}

/// Nothing (`true`) or `= true|false`.
pub(crate) fn flag(input: ParseStream<'_>, key: &str) -> syn::Result<bool> {
    if !input.peek(Token![=]) {
        return Ok(true);
    }
    match assigned(input)? {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Bool(lit), ..
        }) => Ok(lit.value),
        Expr::Lit(lit) => Err(syn::Error::new_spanned(
            &lit,
            format!("`{key}` takes `true` or `false`, found {}", lit_kind(&lit.lit)),
        )),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{key}` takes `true` or `false`"),
        )),
    }
}

/// `= Ident` with `Ident` one of `options`.
pub(crate) fn choice<T: Copy>(input: ParseStream<'_>, key: &str, options: &[(&str, T)]) -> syn::Result<Spanned<T>> {
    let expr = assigned(input)?;
    let listed = list_options(options.iter().map(|(name, _)| *name));
    let Some(ident) = single_ident(&expr) else {
        return Err(syn::Error::new_spanned(&expr, format!("`{key}` takes one of {listed}")));
    };
    let name = ident.to_string();
    match options.iter().find(|(option, _)| *option == name) {
        Some((_, value)) => Ok(Spanned {
            value: *value,
            span: ident.span(),
        }),
        None => Err(syn::Error::new(
            ident.span(),
            format!(
                "unknown `{key}` value `{name}`: expected {listed}{}",
                did_you_mean(&name, options.iter().map(|(option, _)| *option))
            ),
        )),
    }
}

/// `` `A`, `B` or `C` ``.
fn list_options<'a>(options: impl Iterator<Item = &'a str>) -> String {
    let options: Vec<String> = options.map(|o| format!("`{o}`")).collect();
    match options.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// `= Ident`.
pub(crate) fn ident(input: ParseStream<'_>, key: &str, what: &str) -> syn::Result<Ident> {
    let expr = assigned(input)?;
    single_ident(&expr)
        .cloned()
        .ok_or_else(|| syn::Error::new_spanned(&expr, format!("`{key}` takes {what}")))
}

/// `= Type`.
pub(crate) fn ty(input: ParseStream<'_>) -> syn::Result<Type> {
    input.parse::<Token![=]>()?;
    input.parse()
}

/// `(a, b, c)`.
pub(crate) fn ident_list(input: ParseStream<'_>, key: &str) -> syn::Result<Vec<Ident>> {
    if !input.peek(syn::token::Paren) {
        return Err(input.error(format!(
            "`{key}` lists step names in parentheses: `{key}(step_a, step_b)`"
        )));
    }
    let content;
    syn::parenthesized!(content in input);
    let list = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
    Ok(list.into_iter().collect())
}

/// `= request.field`, `= step` or `= step.field.field`.
pub(crate) fn data_path(input: ParseStream<'_>, key: &str) -> syn::Result<DataPath> {
    let expr = assigned(input)?;
    let mut fields = Vec::new();
    let mut base = &expr;
    while let Expr::Field(field) = base {
        fields.push(field.member.clone());
        base = &field.base;
    }
    fields.reverse();
    match single_ident(base) {
        Some(root) => Ok(DataPath {
            root: root.clone(),
            fields,
            expr: expr.clone(),
        }),
        None => Err(syn::Error::new_spanned(
            &expr,
            format!(
                "`{key}` names a request field (`request.files`), a step's data (`create_zip_archive`) \
                 or a field of it (`create_zip_archive.archive`)"
            ),
        )),
    }
}
