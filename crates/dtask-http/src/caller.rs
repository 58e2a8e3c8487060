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
        // The trace the request's submissions continue (they may run in a
        // task of their own): the request span's, where a tracing system
        // traces it, else the caller's W3C `traceparent`.
        let traced = (state.host.trace_bridge()).and_then(|bridge| bridge.context_of(&tracing::Span::current()));
        let trace_parent = traced.or_else(|| {
            parts
                .headers
                .get("traceparent")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok())
        });
        Ok(Self(state.host.caller(principal).with_trace_parent(trace_parent)))
    }
}
