//! The static `TaskDefinition`.

use proc_macro2::TokenStream;
use quote::quote;

use crate::checked::{Group, Kind, Step, Task};
use crate::model::{Backoff, Format, Host, Jitter, Mode, OnExhausted, RetryArgs};

/// The body of `Task::definition`.
pub(super) fn definition(task: &Task) -> TokenStream {
    let Task {
        name,
        queue,
        max_retries,
        timeout_secs,
        cancellable,
        required_roles,
        encrypt_messages,
        version,
        ..
    } = task;
    let mode = match task.mode {
        Mode::InProcess => quote!(InProcess),
        Mode::Distributed => quote!(Distributed),
    };
    let format = match task.format {
        Format::Json => quote!(Json),
        Format::MessagePack => quote!(MessagePack),
        Format::Protobuf => quote!(Protobuf),
    };
    let steps = task.steps.iter().map(|step| step_definition(task, step));
    let groups = task.groups.iter().map(group_definition);
    let depends_on = super::depends::definitions(task);
    quote! {
        static DEFINITION: ::dtask::__private::TaskDefinition = ::dtask::__private::TaskDefinition {
            name: #name,
            queue: #queue,
            max_retries: #max_retries,
            timeout: ::dtask::__private::Duration::from_secs(#timeout_secs),
            mode: ::dtask::__private::Mode::#mode,
            format: ::dtask::__private::Format::#format,
            cancellable: #cancellable,
            required_roles: &[#(#required_roles),*],
            encrypt_messages: #encrypt_messages,
            version: #version,
            steps: &[#(#steps),*],
            groups: &[#(#groups),*],
            depends_on: #depends_on,
        };
        &DEFINITION
    }
}

fn step_definition(task: &Task, step: &Step) -> TokenStream {
    let name = step.name.to_string();
    let order = step.order;
    let kind = match &step.kind {
        Kind::Custom { .. } => quote!(::dtask::__private::StepKind::Custom),
        Kind::Upload { bucket, .. } => quote!(::dtask::__private::StepKind::FileUpload { bucket: #bucket }),
        Kind::Download { .. } => quote!(::dtask::__private::StepKind::FileDownload),
    };
    let host = match step.host {
        Host::Api => quote!(Api),
        Host::Worker => quote!(Worker),
    };
    let group = option(step.group.map(|g| quote!(#g)));
    let retry = retry_policy(task.max_retries, step.retry.as_ref());
    let timeout = option(
        step.timeout_secs
            .map(|s| quote!(::dtask::__private::Duration::from_secs(#s))),
    );
    let condition = option(step.condition.as_ref().map(|c| {
        let text = &c.text;
        quote!(#text)
    }));
    let compensable = step.compensable();
    quote! {
        ::dtask::__private::StepDefinition {
            name: #name,
            order: #order,
            kind: #kind,
            host: ::dtask::__private::StepHost::#host,
            group: #group,
            retry: #retry,
            timeout: #timeout,
            condition: #condition,
            compensable: #compensable,
        }
    }
}

fn group_definition(group: &Group) -> TokenStream {
    let Group {
        name,
        order,
        await_all,
        distribute,
    } = group;
    quote! {
        ::dtask::__private::GroupDefinition {
            name: #name,
            order: #order,
            await_all: #await_all,
            distribute: #distribute,
        }
    }
}

/// `Some(value)` or `None`.
fn option(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(value) => quote!(::dtask::__private::Option::Some(#value)),
        None => quote!(::dtask::__private::Option::None),
    }
}

/// The task's default policy with the fields `#[retry]` sets.
fn retry_policy(task_max_retries: u32, retry: Option<&RetryArgs>) -> TokenStream {
    let default = quote!(::dtask::__private::RetryPolicy::task_default(#task_max_retries));
    let Some(retry) = retry else {
        return default;
    };
    let millis = |ms: u64| quote!(::dtask::__private::Duration::from_millis(#ms));
    let mut fields = Vec::new();
    if let Some(max_retries) = retry.max_retries {
        fields.push(quote!(max_retries: #max_retries));
    }
    if let Some(backoff) = retry.backoff {
        let backoff = match backoff {
            Backoff::Constant => quote!(Constant),
            Backoff::Linear => quote!(Linear),
            Backoff::Exponential => quote!(Exponential),
        };
        fields.push(quote!(backoff: ::dtask::__private::Backoff::#backoff));
    }
    if let Some(base) = retry.base_delay_ms {
        let base = millis(base);
        fields.push(quote!(base_delay: #base));
    }
    if let Some(max) = retry.max_delay_ms {
        let max = option(max.map(millis));
        fields.push(quote!(max_delay: #max));
    }
    if let Some(jitter) = retry.jitter {
        let jitter = match jitter {
            Jitter::None => quote!(None),
            Jitter::Full => quote!(Full),
            Jitter::Equal => quote!(Equal),
        };
        fields.push(quote!(jitter: ::dtask::__private::Jitter::#jitter));
    }
    if let Some(on_exhausted) = retry.on_exhausted {
        let on_exhausted = match on_exhausted {
            OnExhausted::Compensate => quote!(Compensate),
            OnExhausted::Fail => quote!(Fail),
        };
        fields.push(quote!(on_exhausted: ::dtask::__private::OnExhausted::#on_exhausted));
    }
    let rest = (fields.len() < 6).then(|| quote!(..#default));
    quote!(::dtask::__private::RetryPolicy { #(#fields,)* #rest })
}
