//! The SignalR connections negotiated and not connected yet: each token
//! is good for one WebSocket, by the principal that negotiated it, for a
//! while.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use dtask_core::Principal;

use crate::problem::{ApiResult, kinds};

/// How long a negotiated connection token waits for its WebSocket.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(30);

/// The most negotiated connections waiting for their WebSocket at once.
const MAX_PENDING: usize = 10_000;

/// The connection tokens negotiated and not used yet, each with the
/// principal that negotiated it.
#[derive(Debug, Default)]
pub(crate) struct Negotiated {
    pending: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl Negotiated {
    /// A new token for `principal`.
    ///
    /// # Errors
    /// `503` when too many negotiated connections wait for their socket.
    pub(crate) fn issue(&self, principal: &Principal) -> ApiResult<String> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        pending.retain(|_, (_, expires)| *expires > now);
        if pending.len() >= MAX_PENDING {
            return Err(kinds::unavailable(
                "too many SignalR connections are being negotiated; retry later",
            ));
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        pending.insert(token.clone(), (principal.clone(), now + TOKEN_LIFETIME));
        Ok(token)
    }

    /// Takes `token`, if it is pending and was negotiated by `principal`.
    pub(crate) fn take(&self, token: &str, principal: &Principal) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let valid = pending
            .get(token)
            .is_some_and(|(owner, expires)| owner == principal && *expires > Instant::now());
        if valid {
            pending.remove(token);
        }
        valid
    }
}
