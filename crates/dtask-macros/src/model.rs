//! The syntax model: what the attributes say, before any cross-checking.
//! Every value keeps the span it came from, for the validation errors.

use proc_macro2::{Ident, Span};
use syn::{Attribute, Expr, LitStr, Member, Type};

/// A value and the span of the tokens it came from.
#[derive(Clone, Copy)]
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// `mode = ...`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    InProcess,
    Distributed,
}

/// `serialization = ...`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    MessagePack,
    Protobuf,
}

/// `host = ...`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    Api,
    Worker,
}

/// `backoff = ...`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backoff {
    Constant,
    Linear,
    Exponential,
}

/// `jitter = ...`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jitter {
    None,
    Full,
    Equal,
}

/// `on_exhausted = ...`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnExhausted {
    Compensate,
    Fail,
}

/// The arguments of `#[dtask::task(...)]`; `None` where not given.
#[derive(Default)]
pub(crate) struct TaskArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) request: Option<Type>,
    pub(crate) response: Option<Type>,
    pub(crate) queue: Option<LitStr>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) timeout_secs: Option<u64>,
    pub(crate) mode: Option<Mode>,
    pub(crate) format: Option<Format>,
    pub(crate) cancellable: bool,
    /// `requires_role`: holders of any of them may submit the task.
    pub(crate) required_roles: Vec<LitStr>,
    /// `encrypt_messages`: its messages and saga states must be sealed.
    pub(crate) encrypt_messages: bool,
    /// `version`: the declared version (default 1), kept in the history.
    pub(crate) version: Option<u32>,
}

/// `request.files`, `create_zip_archive` or `create_zip_archive.archive`.
#[derive(Clone)]
pub(crate) struct DataPath {
    /// `request` or a step's snake_case name.
    pub(crate) root: Ident,
    /// The fields read from it, outermost last.
    pub(crate) fields: Vec<Member>,
    /// The whole expression, for spans.
    pub(crate) expr: Expr,
}

/// What a step declaration declares besides its common options.
pub(crate) enum StepKind {
    Custom { inputs: Vec<Ident>, output: Option<Type> },
    Upload { bucket: LitStr, source: DataPath },
    Download { source: DataPath },
}

/// `#[custom_step]`, `#[file_upload]` or `#[file_download]`.
pub(crate) struct StepDecl {
    pub(crate) name: Ident,
    pub(crate) order: Spanned<u32>,
    pub(crate) group: Option<Ident>,
    pub(crate) timeout_secs: Option<u64>,
    pub(crate) kind: StepKind,
}

/// `#[parallel_group(Name, order = N, await_all = bool, distribute)]`.
pub(crate) struct GroupDecl {
    pub(crate) name: Ident,
    pub(crate) order: Spanned<u32>,
    pub(crate) await_all: bool,
    /// Each member runs from a queue message of its own, on any worker.
    pub(crate) distribute: bool,
}

/// `#[retry(Step, ...)]`: the options given, the others default to the
/// task's policy.
#[derive(Default, Clone)]
pub(crate) struct RetryArgs {
    pub(crate) max_retries: Option<u32>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) base_delay_ms: Option<u64>,
    /// `Some(None)`: `max_delay_ms = None`, no cap.
    pub(crate) max_delay_ms: Option<Option<u64>>,
    pub(crate) jitter: Option<Jitter>,
    pub(crate) on_exhausted: Option<OnExhausted>,
}

/// What an attribute that targets a step says about it.
pub(crate) enum Setting {
    Placement(Spanned<Host>),
    Retry(RetryArgs),
    Condition(Expr),
    Compensation,
}

impl Setting {
    /// The attribute's name, for messages.
    pub(crate) fn attribute(&self) -> &'static str {
        match self {
            Self::Placement(_) => "placement",
            Self::Retry(_) => "retry",
            Self::Condition(_) => "condition",
            Self::Compensation => "compensation",
        }
    }
}

/// `#[placement]`, `#[retry]`, `#[condition]` or `#[compensation]`.
pub(crate) struct StepSetting {
    /// The attribute, for spans.
    pub(crate) attr: Attribute,
    /// The step it targets.
    pub(crate) target: Ident,
    pub(crate) setting: Setting,
}

/// `#[depends_on(Upstream, condition = <expr>, request = path,
/// compensate_upstream)]`.
pub(crate) struct DependsOnDecl {
    /// The upstream task's type.
    pub(crate) upstream: syn::Path,
    /// Whether the upstream starts it only when this holds on its response.
    pub(crate) condition: Option<Expr>,
    /// The function building the request from the upstream's response;
    /// `None`: `From` the response.
    pub(crate) request: Option<syn::Path>,
    /// Whether the upstream awaits this task and is compensated when it
    /// does not complete.
    pub(crate) compensate_upstream: bool,
}

/// The whole declaration, as written.
pub(crate) struct Declaration {
    pub(crate) args: TaskArgs,
    pub(crate) steps: Vec<StepDecl>,
    pub(crate) groups: Vec<GroupDecl>,
    pub(crate) settings: Vec<StepSetting>,
    pub(crate) dependencies: Vec<DependsOnDecl>,
}
