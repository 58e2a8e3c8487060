//! [`RequestCaller`]: the caller of a request, as the routes act for it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use dtask_core::{Caller, Principal};

use crate::auth::Refusal;
use crate::problem::Problem;
use crate::state::Shared;

/// The caller of a request: the host as the request's principal sees it.
/// Without authentication, the host's operator.
pub(crate) struct RequestCaller(pub(crate) Caller);

impl FromRequestParts<Shared> for RequestCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Problem> {
        let principal = match parts.extensions.get::<Principal>() {
            Some(principal) => principal.clone(),
            None if !state.auth.is_enabled() => Principal::operator(state.host.operator_role()),
            None => return Err(Refusal::Missing.into_problem()),
        };
        Ok(Self(state.host.caller(principal)))
    }
}
