//! [`Principal`]: who asks, as an authentication layer established it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The role that sees and manages every task ([`Principal::operator`]),
/// unless a host names another ([`HostBuilder::operator_role`](crate::HostBuilder::operator_role)).
pub const DEFAULT_OPERATOR_ROLE: &str = "dtask-operator";

/// A verified identity: a subject (a JWT's `sub`, an API key's owner) and
/// the roles it holds.
///
/// The host scopes what a principal may see and do to its own tasks (see
/// [`Host::caller`](crate::Host::caller)); a principal holding the
/// operator role sees and manages every task.
///
/// ```
/// use dtask_core::Principal;
///
/// let alice = Principal::new("alice", ["uploader"]);
/// assert!(alice.has_role("uploader"));
/// assert!(!alice.has_role("dtask-operator"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    subject: String,
    roles: BTreeSet<String>,
}

impl Principal {
    /// `subject`, holding `roles`.
    pub fn new<I, R>(subject: impl Into<String>, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        Self {
            subject: subject.into(),
            roles: roles.into_iter().map(Into::into).collect(),
        }
    }

    /// The operator of a host whose API runs without authentication (or a
    /// program acting for itself): subject `anonymous`, holding `role`.
    pub fn operator(role: &str) -> Self {
        Self::new("anonymous", [role])
    }

    /// Who it is.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The roles it holds.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.roles.iter().map(String::as_str)
    }

    /// Whether it holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }
}
