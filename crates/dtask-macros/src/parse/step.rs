//! The attributes that declare steps and groups: `#[custom_step]`,
//! `#[file_upload]`, `#[file_download]` and `#[parallel_group]`.

use proc_macro2::Ident;
use syn::parse::ParseStream;
use syn::{Attribute, LitStr, Type};

use super::args::{leading_name, parse_args};
use super::value;
use crate::errors::Errors;
use crate::kw::{CustomKey, DownloadKey, GroupKey, UploadKey};
use crate::model::{DataPath, GroupDecl, Spanned, StepDecl, StepKind};

/// The options every step kind shares.
#[derive(Default)]
struct Common {
    /// Whether `order` was written, even with a bad value.
    order_given: bool,
    order: Option<Spanned<u32>>,
    group: Option<Ident>,
    timeout_secs: Option<u64>,
}

impl Common {
    fn order(&mut self, input: ParseStream<'_>) -> syn::Result<()> {
        self.order_given = true;
        self.order = Some(value::integer(input, "order")?);
        Ok(())
    }

    fn group(&mut self, input: ParseStream<'_>) -> syn::Result<()> {
        self.group = Some(value::ident(input, "group", "the name of a #[parallel_group]")?);
        Ok(())
    }

    fn timeout(&mut self, input: ParseStream<'_>) -> syn::Result<()> {
        self.timeout_secs = Some(value::positive(input, "timeout_secs")?);
        Ok(())
    }

    /// The declaration, when the required `order` was given.
    fn finish(self, attr: &Attribute, name: Ident, kind: StepKind, errors: &mut Errors) -> Option<StepDecl> {
        let Some(order) = self.order else {
            if !self.order_given {
                errors.on(attr, format_args!("step `{name}` needs an order: add `order = N`"));
            }
            return None;
        };
        Some(StepDecl {
            name,
            order,
            group: self.group,
            timeout_secs: self.timeout_secs,
            kind,
        })
    }
}

/// `#[custom_step(Name, order = N, group = G, inputs(a, b), output = T, timeout_secs = N)]`.
pub(crate) fn custom_step(attr: &Attribute, errors: &mut Errors) -> syn::Result<Option<StepDecl>> {
    attr.parse_args_with(|input: ParseStream<'_>| {
        let name = leading_name(input, "step")?;
        let mut common = Common::default();
        let mut inputs = Vec::new();
        let mut output: Option<Type> = None;
        let _ = parse_args(
            input,
            errors,
            CustomKey::parse,
            CustomKey::name,
            |key, input, _| match key {
                CustomKey::Order => common.order(input),
                CustomKey::Group => common.group(input),
                CustomKey::TimeoutSecs => common.timeout(input),
                CustomKey::Inputs => {
                    inputs = value::ident_list(input, "inputs")?;
                    Ok(())
                }
                CustomKey::Output => {
                    output = Some(value::ty(input)?);
                    Ok(())
                }
            },
        );
        Ok(common.finish(attr, name, StepKind::Custom { inputs, output }, errors))
    })
}

/// `#[file_upload(Name, order = N, bucket = "b", source = path, group = G, timeout_secs = N)]`.
pub(crate) fn file_upload(attr: &Attribute, errors: &mut Errors) -> syn::Result<Option<StepDecl>> {
    attr.parse_args_with(|input: ParseStream<'_>| {
        let name = leading_name(input, "step")?;
        let mut common = Common::default();
        let mut bucket: Option<LitStr> = None;
        let mut source: Option<DataPath> = None;
        let seen = parse_args(
            input,
            errors,
            UploadKey::parse,
            UploadKey::name,
            |key, input, _| match key {
                UploadKey::Order => common.order(input),
                UploadKey::Group => common.group(input),
                UploadKey::TimeoutSecs => common.timeout(input),
                UploadKey::Bucket => {
                    bucket = Some(value::string(input, "bucket")?);
                    Ok(())
                }
                UploadKey::Source => {
                    source = Some(value::data_path(input, "source")?);
                    Ok(())
                }
            },
        );
        let (Some(bucket), Some(source)) = (bucket, source) else {
            if !(seen.contains(&UploadKey::Bucket) && seen.contains(&UploadKey::Source)) {
                errors.on(
                    attr,
                    format_args!("upload step `{name}` needs `bucket = \"...\"` and `source = ...`"),
                );
            }
            return Ok(None);
        };
        Ok(common.finish(attr, name, StepKind::Upload { bucket, source }, errors))
    })
}

/// `#[file_download(Name, order = N, source = path, group = G, timeout_secs = N)]`.
pub(crate) fn file_download(attr: &Attribute, errors: &mut Errors) -> syn::Result<Option<StepDecl>> {
    attr.parse_args_with(|input: ParseStream<'_>| {
        let name = leading_name(input, "step")?;
        let mut common = Common::default();
        let mut source: Option<DataPath> = None;
        let seen = parse_args(
            input,
            errors,
            DownloadKey::parse,
            DownloadKey::name,
            |key, input, _| match key {
                DownloadKey::Order => common.order(input),
                DownloadKey::Group => common.group(input),
                DownloadKey::TimeoutSecs => common.timeout(input),
                DownloadKey::Source => {
                    source = Some(value::data_path(input, "source")?);
                    Ok(())
                }
            },
        );
        let Some(source) = source else {
            if !seen.contains(&DownloadKey::Source) {
                errors.on(attr, format_args!("download step `{name}` needs `source = ...`"));
            }
            return Ok(None);
        };
        Ok(common.finish(attr, name, StepKind::Download { source }, errors))
    })
}

/// `#[parallel_group(Name, order = N, await_all = true|false, distribute)]`.
pub(crate) fn parallel_group(attr: &Attribute, errors: &mut Errors) -> syn::Result<Option<GroupDecl>> {
    attr.parse_args_with(|input: ParseStream<'_>| {
        let name = leading_name(input, "group")?;
        let mut order = None;
        let mut await_all = true;
        let mut distribute = false;
        let seen = parse_args(input, errors, GroupKey::parse, GroupKey::name, |key, input, _| {
            match key {
                GroupKey::Order => order = Some(value::integer(input, "order")?),
                GroupKey::AwaitAll => await_all = value::flag(input, "await_all")?,
                GroupKey::Distribute => distribute = value::flag(input, "distribute")?,
            }
            Ok(())
        });
        let Some(order) = order else {
            if !seen.contains(&GroupKey::Order) {
                errors.on(
                    attr,
                    format_args!("parallel group `{name}` needs an order: add `order = N`"),
                );
            }
            return Ok(None);
        };
        if distribute && !await_all {
            errors.on(
                attr,
                format_args!(
                    "parallel group `{name}` cannot be both `distribute` and `await_all = false`: \
                     a distributed group awaits all its members"
                ),
            );
        }
        Ok(Some(GroupDecl {
            name,
            order,
            await_all,
            distribute,
        }))
    })
}
