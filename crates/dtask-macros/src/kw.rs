//! The words of the DSL, as `syn` custom keywords, and the set of keys each
//! attribute accepts. An unknown key fails with `syn`'s "expected one of"
//! error listing the keys of that attribute.

use proc_macro2::{Ident, Span};
use syn::ext::IdentExt;
use syn::parse::ParseStream;

use crate::names::did_you_mean;

syn::custom_keyword!(name);
syn::custom_keyword!(request);
syn::custom_keyword!(response);
syn::custom_keyword!(queue);
syn::custom_keyword!(max_retries);
syn::custom_keyword!(timeout_secs);
syn::custom_keyword!(mode);
syn::custom_keyword!(serialization);
syn::custom_keyword!(cancellable);
syn::custom_keyword!(requires_role);
syn::custom_keyword!(encrypt_messages);
syn::custom_keyword!(version);
syn::custom_keyword!(order);
syn::custom_keyword!(group);
syn::custom_keyword!(inputs);
syn::custom_keyword!(output);
syn::custom_keyword!(bucket);
syn::custom_keyword!(source);
syn::custom_keyword!(await_all);
syn::custom_keyword!(distribute);
syn::custom_keyword!(host);
syn::custom_keyword!(backoff);
syn::custom_keyword!(base_delay_ms);
syn::custom_keyword!(max_delay_ms);
syn::custom_keyword!(jitter);
syn::custom_keyword!(on_exhausted);
syn::custom_keyword!(condition);
syn::custom_keyword!(compensate_upstream);

/// The error for a key `keys` does not hold: names the attribute and the
/// accepted keys, and the closest one when it is close.
fn unknown_key(input: ParseStream<'_>, attr: &str, keys: &[&str], fallback: syn::Error) -> syn::Error {
    let Ok(ident) = input.fork().call(Ident::parse_any) else {
        return fallback;
    };
    let listed: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    syn::Error::new(
        ident.span(),
        format!(
            "unknown option `{ident}` of #[{attr}]: expected one of {}{}",
            listed.join(", "),
            did_you_mean(&ident.to_string(), keys.iter().copied())
        ),
    )
}

/// Declares the keys of one attribute: an enum with a `parse` that peeks
/// each key's custom keyword and a `name` for messages.
macro_rules! keys {
    ($(#[$doc:meta])* $enum:ident in $attr:literal { $($variant:ident => $kw:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $enum {
            $($variant),+
        }

        impl $enum {
            /// Parses one key, failing with the list of the accepted ones.
            pub(crate) fn parse(input: ParseStream<'_>) -> syn::Result<(Self, Span)> {
                let lookahead = input.lookahead1();
                $(
                    if lookahead.peek($kw) {
                        return Ok((Self::$variant, input.parse::<$kw>()?.span));
                    }
                )+
                Err(unknown_key(input, $attr, &[$(stringify!($kw)),+], lookahead.error()))
            }

            /// The key as written.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($kw)),+
                }
            }
        }
    };
}

keys! {
    /// The keys of `#[dtask::task(...)]`.
    TaskKey in "dtask::task" {
        Name => name,
        Request => request,
        Response => response,
        Queue => queue,
        MaxRetries => max_retries,
        TimeoutSecs => timeout_secs,
        Mode => mode,
        Serialization => serialization,
        Cancellable => cancellable,
        RequiresRole => requires_role,
        EncryptMessages => encrypt_messages,
        Version => version,
    }
}

keys! {
    /// The keys of `#[custom_step(Name, ...)]`.
    CustomKey in "custom_step" {
        Order => order,
        Group => group,
        Inputs => inputs,
        Output => output,
        TimeoutSecs => timeout_secs,
    }
}

keys! {
    /// The keys of `#[file_upload(Name, ...)]`.
    UploadKey in "file_upload" {
        Order => order,
        Group => group,
        Bucket => bucket,
        Source => source,
        TimeoutSecs => timeout_secs,
    }
}

keys! {
    /// The keys of `#[file_download(Name, ...)]`.
    DownloadKey in "file_download" {
        Order => order,
        Group => group,
        Source => source,
        TimeoutSecs => timeout_secs,
    }
}

keys! {
    /// The keys of `#[parallel_group(Name, ...)]`.
    GroupKey in "parallel_group" {
        Order => order,
        AwaitAll => await_all,
        Distribute => distribute,
    }
}

keys! {
    /// The keys of `#[placement(Step, ...)]`.
    PlacementKey in "placement" {
        Host => host,
    }
}

keys! {
    /// The keys of `#[retry(Step, ...)]`.
    RetryKey in "retry" {
        MaxRetries => max_retries,
        Backoff => backoff,
        BaseDelayMs => base_delay_ms,
        MaxDelayMs => max_delay_ms,
        Jitter => jitter,
        OnExhausted => on_exhausted,
    }
}

keys! {
    /// The keys of `#[depends_on(Upstream, ...)]`.
    DependsOnKey in "depends_on" {
        Condition => condition,
        Request => request,
        CompensateUpstream => compensate_upstream,
    }
}
