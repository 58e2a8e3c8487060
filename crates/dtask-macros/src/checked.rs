//! The checked model: a declaration that passed validation, with every
//! reference resolved to an index and every default applied. Expansion
//! reads only this.

use proc_macro2::{Ident, TokenStream};
use quote::quote;
use syn::{Expr, Member, Type, Visibility};

use crate::model::{Format, Host, Mode, RetryArgs};

/// A valid task.
pub(crate) struct Task {
    /// The struct.
    pub(crate) ident: Ident,
    /// The struct's visibility, which the generated module gets.
    pub(crate) vis: Visibility,
    /// The generated module: the struct's name in snake_case.
    pub(crate) module: Ident,
    pub(crate) name: String,
    pub(crate) queue: String,
    pub(crate) max_retries: u32,
    pub(crate) timeout_secs: u64,
    pub(crate) mode: Mode,
    pub(crate) format: Format,
    pub(crate) cancellable: bool,
    /// Holders of any of these may submit it; empty: anyone.
    pub(crate) required_roles: Vec<String>,
    /// Its messages and saga states must be sealed.
    pub(crate) encrypt_messages: bool,
    /// The declared version.
    pub(crate) version: u32,
    pub(crate) request: Type,
    pub(crate) response: Type,
    /// Sorted by order, declaration order among equals.
    pub(crate) steps: Vec<Step>,
    /// Sorted by order.
    pub(crate) groups: Vec<Group>,
    /// Its `#[depends_on]` edges, in declaration order.
    pub(crate) dependencies: Vec<Dependency>,
}

/// A `#[depends_on]` edge.
pub(crate) struct Dependency {
    /// The upstream task's type.
    pub(crate) upstream: syn::Path,
    /// The condition on the upstream's response (reads `response`).
    pub(crate) condition: Option<Condition>,
    /// The request builder; `None`: `From` the response.
    pub(crate) request: Option<syn::Path>,
    /// Whether the upstream awaits this task and is compensated when it
    /// does not complete.
    pub(crate) compensate_upstream: bool,
}

/// A parallel group.
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) order: u32,
    pub(crate) await_all: bool,
    pub(crate) distribute: bool,
}

/// A valid step.
pub(crate) struct Step {
    pub(crate) name: Ident,
    pub(crate) snake: Ident,
    pub(crate) order: u32,
    pub(crate) kind: Kind,
    pub(crate) host: Host,
    /// Index into [`Task::groups`].
    pub(crate) group: Option<usize>,
    /// `None`: the task's default policy.
    pub(crate) retry: Option<RetryArgs>,
    pub(crate) timeout_secs: Option<u64>,
    pub(crate) condition: Option<Condition>,
    /// Whether the user wrote a compensation for this custom step.
    pub(crate) user_compensation: bool,
    /// Whether its data may be missing after it ran: it has a condition, or
    /// it belongs to a group that does not await all its members.
    pub(crate) may_skip: bool,
}

/// What a step does.
pub(crate) enum Kind {
    Custom { inputs: Vec<usize>, output: Type },
    Upload { bucket: String, source: Source },
    Download { source: Source },
}

/// Where a built-in step takes its data from.
pub(crate) struct Source {
    /// `None`: the request; otherwise the index of a step.
    pub(crate) root: Option<usize>,
    /// The root as written, whose span type errors point at.
    pub(crate) written: Ident,
    pub(crate) fields: Vec<Member>,
}

/// A step's condition, analysed.
pub(crate) struct Condition {
    pub(crate) expr: Expr,
    /// The expression as text, for the definition and the audit trail.
    pub(crate) text: String,
    /// Whether it reads `request`.
    pub(crate) reads_request: bool,
    /// The steps whose data it reads.
    pub(crate) reads: Vec<usize>,
    /// The values recorded when it is evaluated: their text and the
    /// expression reading them.
    pub(crate) observed: Vec<(String, TokenStream)>,
}

impl Step {
    /// The type of this step's data.
    pub(crate) fn data_type(&self) -> TokenStream {
        match &self.kind {
            Kind::Custom { output, .. } => quote!(#output),
            Kind::Upload { .. } => quote!(::dtask::StoredObjects),
            Kind::Download { .. } => quote!(::dtask::DownloadedFiles),
        }
    }

    /// Whether the runtime may call `compensate_step` for it.
    pub(crate) fn compensable(&self) -> bool {
        self.user_compensation || !matches!(self.kind, Kind::Custom { .. })
    }
}
