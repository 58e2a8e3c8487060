//! sqlx errors as dtask errors.

use dtask_core::Error;

/// The backend's name in errors and readiness reports.
pub(crate) const BACKEND: &str = "postgres";

pub(crate) fn pg_error(error: sqlx::Error) -> Error {
    Error::backend(BACKEND, error)
}

/// Milliseconds of `duration` for an SQL interval, at least 1.
pub(crate) fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX).max(1)
}
