//! Distributed locks with real expiry and fencing tokens.
//!
//! A lock is a lease: [`DistributedLock::try_acquire`] either returns a
//! [`LockGuard`] valid for the requested time-to-live or `None` when
//! another holder has it. An unreleased lease expires and can then be
//! taken by someone else; a holder extends it while its work runs. Each
//! grant carries a [`fencing token`](LockGuard::fencing_token) larger than
//! every earlier grant of the same resource, which stores use to reject
//! writes from a holder whose lease has lapsed.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

/// Grants leases on named resources.
#[async_trait]
pub trait DistributedLock: Send + Sync + fmt::Debug + 'static {
    /// Takes the lock on `resource` for `ttl`, or returns `None` at once
    /// when a live lease is held by someone else.
    ///
    /// # Errors
    /// A backend error; [`Error::Invalid`](crate::Error::Invalid) for a
    /// zero `ttl`.
    async fn try_acquire(&self, resource: &str, ttl: Duration) -> Result<Option<LockGuard>>;

    /// Checks that the backend answers (used by readiness probes).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// One granted lease, implemented by each backend.
///
/// Dropping a lease releases it (best effort: remote backends release in the
/// background); [`LockGuard::release`] releases it and reports errors.
#[async_trait]
pub trait LockLease: Send + Sync + 'static {
    /// The locked resource.
    fn resource(&self) -> &str;

    /// The grant's fencing token: larger than every earlier grant's.
    fn fencing_token(&self) -> u64;

    /// Makes the lease valid for `ttl` from now.
    ///
    /// # Errors
    /// [`Error::LockLost`](crate::Error::LockLost) when the lease has
    /// expired or been taken over.
    async fn extend(&self, ttl: Duration) -> Result<()>;

    /// Releases the lease now (a no-op if it has already expired).
    async fn release(&mut self) -> Result<()>;
}

/// A held lock. Released when dropped.
pub struct LockGuard {
    lease: Box<dyn LockLease>,
}

impl LockGuard {
    /// Wraps a backend's lease.
    pub fn new(lease: impl LockLease) -> Self {
        Self { lease: Box::new(lease) }
    }

    /// The locked resource.
    pub fn resource(&self) -> &str {
        self.lease.resource()
    }

    /// The grant's fencing token.
    pub fn fencing_token(&self) -> u64 {
        self.lease.fencing_token()
    }

    /// Makes the lease valid for `ttl` from now.
    ///
    /// # Errors
    /// [`Error::LockLost`](crate::Error::LockLost) when it has expired or
    /// been taken over.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        self.lease.extend(ttl).await
    }

    /// Releases the lock now.
    ///
    /// # Errors
    /// A backend error (the lease will still expire).
    pub async fn release(mut self) -> Result<()> {
        self.lease.release().await
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("resource", &self.resource())
            .field("fencing_token", &self.fencing_token())
            .finish()
    }
}
