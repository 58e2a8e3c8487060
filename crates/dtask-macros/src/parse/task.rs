//! The arguments of `#[dtask::task(...)]` itself.

use proc_macro2::TokenStream;
use syn::parse::{ParseStream, Parser};

use super::args::parse_args;
use super::value;
use crate::errors::Errors;
use crate::kw::TaskKey;
use crate::model::{Format, Mode, TaskArgs};

/// Parses the task attribute's arguments. Missing required ones are left
/// `None` for validation to report.
pub(crate) fn parse_task_args(tokens: TokenStream, errors: &mut Errors) -> TaskArgs {
    let mut args = TaskArgs::default();
    let parser = |input: ParseStream<'_>| {
        let _ = parse_args(input, errors, TaskKey::parse, TaskKey::name, |key, input, _| {
            task_arg(&mut args, key, input)
        });
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
    args
}

fn task_arg(args: &mut TaskArgs, key: TaskKey, input: ParseStream<'_>) -> syn::Result<()> {
    let name = key.name();
    match key {
        TaskKey::Name => args.name = Some(value::string(input, name)?),
        TaskKey::Request => args.request = Some(value::ty(input)?),
        TaskKey::Response => args.response = Some(value::ty(input)?),
        TaskKey::Queue => args.queue = Some(value::string(input, name)?),
        TaskKey::MaxRetries => args.max_retries = Some(value::integer(input, name)?.value),
        TaskKey::TimeoutSecs => args.timeout_secs = Some(value::positive(input, name)?),
        TaskKey::Mode => {
            let options = [("InProcess", Mode::InProcess), ("Distributed", Mode::Distributed)];
            args.mode = Some(value::choice(input, name, &options)?.value);
        }
        TaskKey::Serialization => {
            args.format = Some(
                value::choice(
                    input,
                    name,
                    &[
                        ("Json", Format::Json),
                        ("MessagePack", Format::MessagePack),
                        ("Protobuf", Format::Protobuf),
                    ],
                )?
                .value,
            );
        }
        TaskKey::Cancellable => args.cancellable = value::flag(input, name)?,
        TaskKey::RequiresRole => args.required_roles = value::strings(input, name)?,
        TaskKey::EncryptMessages => args.encrypt_messages = value::flag(input, name)?,
        TaskKey::Version => {
            let version = value::integer::<u32>(input, name)?;
            if version.value == 0 {
                return Err(syn::Error::new(version.span, "`version` starts at 1"));
            }
            args.version = Some(version.value);
        }
    }
    Ok(())
}
