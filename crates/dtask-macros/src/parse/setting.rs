//! The attributes that set something on a declared step: `#[placement]`,
//! `#[retry]`, `#[condition]` and `#[compensation]`.

use syn::parse::ParseStream;
use syn::{Attribute, Expr, Token};

use super::args::{leading_name, parse_args};
use super::value;
use crate::errors::Errors;
use crate::kw::{PlacementKey, RetryKey};
use crate::model::{Backoff, Host, Jitter, OnExhausted, RetryArgs, Setting, StepSetting};

/// Which setting attribute is being parsed.
#[derive(Clone, Copy)]
pub(crate) enum SettingKind {
    Placement,
    Retry,
    Condition,
    Compensation,
}

/// Parses one setting attribute.
pub(crate) fn setting(kind: SettingKind, attr: &Attribute, errors: &mut Errors) -> syn::Result<Option<StepSetting>> {
    attr.parse_args_with(|input: ParseStream<'_>| {
        let target = leading_name(input, "step")?;
        let setting = match kind {
            SettingKind::Placement => placement(input, attr, errors),
            SettingKind::Retry => Some(retry(input, errors)),
            SettingKind::Condition => Some(Setting::Condition(condition(input)?)),
            SettingKind::Compensation => Some(Setting::Compensation),
        };
        Ok(setting.map(|setting| StepSetting {
            attr: attr.clone(),
            target,
            setting,
        }))
    })
}

fn placement(input: ParseStream<'_>, attr: &Attribute, errors: &mut Errors) -> Option<Setting> {
    let mut host = None;
    let seen = parse_args(
        input,
        errors,
        PlacementKey::parse,
        PlacementKey::name,
        |key, input, _| {
            match key {
                PlacementKey::Host => {
                    let options = [("Api", Host::Api), ("Worker", Host::Worker)];
                    host = Some(value::choice(input, "host", &options)?);
                }
            }
            Ok(())
        },
    );
    if host.is_none() && seen.is_empty() {
        errors.on(attr, "a placement names its host: `host = Api` or `host = Worker`");
    }
    host.map(Setting::Placement)
}

fn retry(input: ParseStream<'_>, errors: &mut Errors) -> Setting {
    let mut args = RetryArgs::default();
    let _ = parse_args(input, errors, RetryKey::parse, RetryKey::name, |key, input, _| {
        let name = key.name();
        match key {
            RetryKey::MaxRetries => args.max_retries = Some(value::integer(input, name)?.value),
            RetryKey::BaseDelayMs => args.base_delay_ms = Some(value::integer(input, name)?.value),
            RetryKey::MaxDelayMs => args.max_delay_ms = Some(max_delay(input)?),
            RetryKey::Backoff => {
                let options = [
                    ("Constant", Backoff::Constant),
                    ("Linear", Backoff::Linear),
                    ("Exponential", Backoff::Exponential),
                ];
                args.backoff = Some(value::choice(input, name, &options)?.value);
            }
            RetryKey::Jitter => {
                let options = [("None", Jitter::None), ("Full", Jitter::Full), ("Equal", Jitter::Equal)];
                args.jitter = Some(value::choice(input, name, &options)?.value);
            }
            RetryKey::OnExhausted => {
                let options = [("Compensate", OnExhausted::Compensate), ("Fail", OnExhausted::Fail)];
                args.on_exhausted = Some(value::choice(input, name, &options)?.value);
            }
        }
        Ok(())
    });
    Setting::Retry(args)
}

/// `= N` (a cap in milliseconds) or `= None` (no cap).
fn max_delay(input: ParseStream<'_>) -> syn::Result<Option<u64>> {
    let fork = input.fork();
    if fork.parse::<Token![=]>().is_ok() && fork.peek(syn::Ident) {
        return value::choice(input, "max_delay_ms", &[("None", None)]).map(|v| v.value);
    }
    value::integer(input, "max_delay_ms").map(|v| Some(v.value))
}

/// The expression after the step name, with an optional trailing comma.
fn condition(input: ParseStream<'_>) -> syn::Result<Expr> {
    if input.is_empty() {
        return Err(input.error(
            "a condition is a Rust boolean expression after the step name: \
             `#[condition(Step, extract_metadata.height > 1080)]`",
        ));
    }
    let expr: Expr = input.parse()?;
    let _ = input.parse::<Option<Token![,]>>()?;
    Ok(expr)
}
