//! Observability for dtask processes: one call sets up
//!
//! - the `tracing` subscriber: log lines on standard error, filtered by
//!   `RUST_LOG` (a task's lines carry its `task.id` and `trace_id`);
//! - **traces** over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, configured by the
//!   standard variables: `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`,
//!   the default, or `grpc`), `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`
//!   (and `_ARG`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`;
//!   `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn them off.
//!   Unset, nothing is exported and the kernel's spans cost what a
//!   `tracing` span costs;
//! - **metrics**: the global Prometheus recorder, rendered by
//!   [`Telemetry::prometheus`] (`GET /metrics` in `dtask-http`).
//!
//! Give the host [`OtelBridge`] (`HostBuilder::trace_bridge`) so that the
//! API's submit span and the worker's step spans share one trace, carried
//! through the queue as a W3C `traceparent`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dtask_telemetry::TelemetryError> {
//! let telemetry = dtask_telemetry::Telemetry::builder("my-worker").metrics(true).init()?;
//! let host = dtask_core::Host::builder().trace_bridge(dtask_telemetry::OtelBridge);
//! // ... build the host, run ...
//! telemetry.shutdown(); // exports the spans still buffered
//! # Ok(()) }
//! ```

mod bridge;
mod otlp;
mod prometheus;

pub use bridge::OtelBridge;
pub use metrics_exporter_prometheus::PrometheusHandle;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// What went wrong setting up telemetry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from the `OTEL_*` variables.
    #[error("cannot export traces: {0}")]
    Traces(String),
    /// The Prometheus recorder could not be installed (another recorder
    /// is installed already).
    #[error("cannot record metrics: {0}")]
    Metrics(String),
    /// A global subscriber is installed already.
    #[error("cannot install the tracing subscriber: {0}")]
    Subscriber(String),
}

/// Sets up a process's telemetry ([`Telemetry::builder`]).
#[derive(Debug, Clone)]
pub struct TelemetryBuilder {
    service_name: String,
    otlp_endpoint: Option<String>,
    log_filter: String,
    metrics: bool,
    ansi: bool,
}

impl TelemetryBuilder {
    /// The log filter when `RUST_LOG` is unset (default `info`).
    #[must_use]
    pub fn log_filter(mut self, filter: impl Into<String>) -> Self {
        self.log_filter = filter.into();
        self
    }

    /// Exports traces over OTLP/HTTP (protobuf) to `endpoint` (its base
    /// URL; `/v1/traces` is appended), whatever the `OTEL_*` variables say.
    #[must_use]
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp_endpoint = Some(endpoint.into());
        self
    }

    /// Installs the Prometheus recorder (default: no metrics).
    #[must_use]
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.metrics = enabled;
        self
    }

    /// Colours in log lines (default: off).
    #[must_use]
    pub fn ansi(mut self, enabled: bool) -> Self {
        self.ansi = enabled;
        self
    }

    /// Installs the global subscriber (and, when asked, the metrics
    /// recorder). Call it once, early, inside the tokio runtime, before
    /// building the host.
    ///
    /// # Errors
    /// [`TelemetryError`] when the `OTEL_*` variables name an exporter that
    /// cannot be built, or a subscriber or recorder is installed already.
    pub fn init(self) -> Result<Telemetry, TelemetryError> {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&self.log_filter));
        let logs = fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(self.ansi)
            .with_filter(filter);
        let provider = match &self.otlp_endpoint {
            Some(endpoint) => Some(otlp::http_provider(endpoint, &self.service_name)?),
            None => otlp::provider_from_env(&self.service_name)?,
        };
        let traces = provider.as_ref().map(|provider| {
            use opentelemetry::trace::TracerProvider as _;
            // dtask's spans and events (StepStarted, ConditionEvaluated are
            // DEBUG) whatever RUST_LOG says; others' at INFO.
            let targets = Targets::new()
                .with_target("dtask", LevelFilter::DEBUG)
                .with_default(LevelFilter::INFO);
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("dtask"))
                .with_filter(targets)
        });
        tracing_subscriber::registry()
            .with(logs)
            .with(traces)
            .try_init()
            .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
        let prometheus = match self.metrics {
            true => Some(prometheus::install()?),
            false => None,
        };
        Ok(Telemetry { provider, prometheus })
    }
}

/// A process's telemetry: flushes its traces when shut down or dropped.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    prometheus: Option<PrometheusHandle>,
}

impl Telemetry {
    /// Telemetry for service `service_name` (`OTEL_SERVICE_NAME` overrides
    /// it).
    pub fn builder(service_name: impl Into<String>) -> TelemetryBuilder {
        TelemetryBuilder {
            service_name: service_name.into(),
            otlp_endpoint: None,
            log_filter: "info".into(),
            metrics: false,
            ansi: false,
        }
    }

    /// Whether traces are exported.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }

    /// The Prometheus recorder's handle (its `render()` is the text of
    /// `GET /metrics`), when metrics are on.
    pub fn prometheus(&self) -> Option<&PrometheusHandle> {
        self.prometheus.as_ref()
    }

    /// Exports the spans ended so far, now.
    ///
    /// # Errors
    /// [`TelemetryError::Traces`] when the export failed.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        match &self.provider {
            Some(provider) => provider
                .force_flush()
                .map_err(|e| TelemetryError::Traces(e.to_string())),
            None => Ok(()),
        }
    }

    /// Exports the spans still buffered and stops exporting.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "exporting the last traces failed");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}
