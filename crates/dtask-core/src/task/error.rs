//! The error a step returns.

use std::error::Error as StdError;
use std::fmt;

/// How the kernel treats a step's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepErrorKind {
    /// Worth retrying (the default for errors converted with `?`).
    Transient,
    /// Retrying cannot help: the step fails at once.
    Permanent,
    /// The step stopped because its cancellation token fired.
    Cancelled,
    /// The attempt exceeded the step's timeout.
    TimedOut,
}

/// A step's failure: a kind that decides retrying, a message, and the
/// underlying error when there is one.
///
/// Any `std::error::Error` converts into a transient `StepError`, so step
/// code can use `?` freely; [`StepError::permanent`] marks a failure that
/// retrying cannot fix.
///
/// ```
/// use dtask_core::StepError;
///
/// fn parse(text: &str) -> Result<u32, StepError> {
///     let n: u32 = text.parse()?; // transient by default
///     if n == 0 {
///         return Err(StepError::permanent("zero is not a valid size"));
///     }
///     Ok(n)
/// }
/// assert!(parse("0").unwrap_err().is_permanent());
/// ```
pub struct StepError {
    kind: StepErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl StepError {
    /// A failure worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(StepErrorKind::Transient, message)
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(StepErrorKind::Permanent, message)
    }

    /// The step noticed its cancellation token and stopped.
    pub fn cancelled() -> Self {
        Self::new(StepErrorKind::Cancelled, "cancelled")
    }

    /// The attempt ran past its time limit.
    pub fn timed_out(limit: std::time::Duration) -> Self {
        Self::new(
            StepErrorKind::TimedOut,
            format!("timed out after {} ms", limit.as_millis()),
        )
    }

    /// A failure of `kind`.
    pub fn new(kind: StepErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Makes this failure permanent.
    #[must_use]
    pub fn into_permanent(mut self) -> Self {
        self.kind = StepErrorKind::Permanent;
        self
    }

    /// Its kind.
    pub fn kind(&self) -> StepErrorKind {
        self.kind
    }

    /// Whether the kernel may retry after it.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, StepErrorKind::Transient | StepErrorKind::TimedOut)
    }

    /// Whether it is [`StepErrorKind::Permanent`].
    pub fn is_permanent(&self) -> bool {
        self.kind == StepErrorKind::Permanent
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The underlying error.
    pub fn source(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for StepError {
    fn from(error: E) -> Self {
        Self {
            kind: StepErrorKind::Transient,
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        let mut source = self.source.as_deref().and_then(|s| s.source());
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}
