//! The task DSL of dtask: `#[dtask::task]` and its step attributes.
//!
//! Users reach the macro through the `dtask` facade (`dtask::task`); its
//! full documentation is in `docs/dsl.md` and on [`macro@task`].
//!
//! The macro works in three stages, each in its own module:
//!
//! 1. [`parse`] turns the attribute arguments and the helper attributes
//!    (`#[custom_step]`, `#[retry]`, ...) into the syntax model of
//!    [`model`], recording every syntax error (unknown keys, wrong literal
//!    kinds, negative counts) instead of stopping at the first;
//! 2. [`validate`] checks the declaration as a whole (names, references,
//!    orders, data flow, placement) and produces the [`checked`] model,
//!    again collecting every error;
//! 3. [`expand`] turns the checked model into glue code that calls the
//!    typed runtime through `::dtask::__private`.

mod checked;
mod errors;
mod expand;
mod kw;
mod model;
mod names;
mod parse;
mod render;
mod validate;

use proc_macro::TokenStream;
use quote::quote;

/// Declares a task: a struct whose helper attributes (`#[custom_step]`,
/// `#[file_upload]`, `#[file_download]`, `#[parallel_group]`,
/// `#[placement]`, `#[retry]`, `#[condition]`, `#[compensation]`) describe
/// its steps.
///
/// The macro keeps the struct, removes the helper attributes, and emits a
/// module named after the struct in snake_case holding the typed step data
/// (`Data`), each custom step's input (`<Step>Input`), the response
/// builder's view (`Outputs`) and the `Steps` trait the user implements,
/// plus an implementation of `dtask::Task` for the struct.
///
/// ```text
/// #[dtask::task(name = "CreateZipFromFiles", request = CreateZipRequest, response = CreateZipResponse)]
/// #[file_upload(UploadSourceFiles, order = 1, bucket = "incoming-files", source = request.files)]
/// #[placement(UploadSourceFiles, host = Api)]
/// #[custom_step(CreateZipArchive, order = 2, inputs(upload_source_files), output = ZipArchive)]
/// #[file_upload(UploadZip, order = 3, bucket = "processed-files", source = create_zip_archive.archive)]
/// pub struct CreateZipFromFiles;
/// ```
///
/// See `docs/dsl.md` for every attribute, option, default and rule.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_task(attr.into(), item.into()).into()
}

fn expand_task(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let mut item: syn::ItemStruct = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let error = syn::Error::new(
                proc_macro2::Span::call_site(),
                "#[dtask::task] goes on a struct: the task's type, which implements its `Steps`",
            );
            let error = error.to_compile_error();
            return quote!(#error #item);
        }
    };
    let result = parse::parse(attr, &mut item).and_then(|parsed| validate::validate(&item, parsed));
    match result {
        Ok(checked) => {
            let generated = expand::expand(&checked);
            quote!(#item #generated)
        }
        Err(errors) => {
            let errors = errors.to_compile_error();
            quote!(#item #errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::expand_task;

    const ARGS: &str = r#"name = "T", request = R, response = S"#;

    fn expand(attr: &str, item: &str) -> String {
        expand_task(attr.parse().unwrap(), item.parse().unwrap()).to_string()
    }

    #[test]
    fn malformed_declarations_give_errors_not_panics() {
        let cases = [
            ("", "#[custom_step(A, order = 1)] struct X;"),
            ("name = ", "#[custom_step(A, order = 1)] struct X;"),
            (r#"name = "X" request = R"#, "#[custom_step(A, order = 1)] struct X;"),
            (ARGS, "#[custom_step] struct X;"),
            (ARGS, "#[custom_step()] struct X;"),
            (ARGS, "#[custom_step(A, order = )] struct X;"),
            (ARGS, "#[custom_step(A order = 1)] struct X;"),
            (ARGS, "#[custom_step(__, order = 1)] struct X;"),
            (ARGS, "#[custom_step(_1, order = 1)] struct X;"),
            (ARGS, "#[custom_step(r#A, order = 1)] struct X;"),
            (ARGS, "#[custom_step(Type, order = 1)] struct X;"),
            (ARGS, "#[custom_step(A, order = 4294967296)] struct X;"),
            (ARGS, "#[custom_step(A, order = 1, inputs = x)] struct X;"),
            (ARGS, "#[custom_step(A, order = 1, inputs(1))] struct X;"),
            (ARGS, "#[custom_step(A, order = 1, output = )] struct X;"),
            (ARGS, "#[custom_step(A, order = 1)] #[condition(A)] struct X;"),
            (ARGS, "#[custom_step(A, order = 1)] #[condition(A, )] struct X;"),
            (ARGS, "#[custom_step(A, order = 1)] #[condition(A, x y)] struct X;"),
            (
                ARGS,
                "#[custom_step(A, order = 1)] #[retry(A, max_delay_ms = Nope)] struct X;",
            ),
            (ARGS, "#[custom_step(A, order = 1)] #[placement(A)] struct X;"),
            (ARGS, "#[custom_step(A, order = 1)] #[compensation(A, B)] struct X;"),
            (
                ARGS,
                r#"#[file_upload(A, order = 1, bucket = "abc", source = 1 + 2)] struct X;"#,
            ),
            (
                ARGS,
                r#"#[file_upload(A, order = 1, bucket = "abc", source = request)] struct X;"#,
            ),
            (ARGS, r#"#[file_download(A, order = 1)] struct X;"#),
            (
                ARGS,
                "#[parallel_group(G)] #[custom_step(A, order = 1, group = G)] struct X;",
            ),
            (ARGS, "#[custom_step(A, order = 1)] enum X {}"),
            (ARGS, "fn x() {}"),
            (ARGS, "#[custom_step(A, order = 1)] struct X<'a>(&'a u8);"),
        ];
        for (attr, item) in cases {
            let out = expand(attr, item);
            assert!(
                out.contains("compile_error"),
                "no error for `{attr}` on `{item}`: {out}"
            );
        }
    }

    #[test]
    fn a_valid_declaration_expands_without_errors() {
        let out = expand(ARGS, "#[custom_step(A, order = 1)] pub struct X;");
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("impl :: dtask :: Task for X"), "{out}");
    }
}
