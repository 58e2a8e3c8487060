//! The OTLP trace exporter, from the standard `OTEL_*` variables.

use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::TelemetryError;

/// The tracer provider the `OTEL_*` variables ask for; `None` when no OTLP
/// endpoint is set, or traces are turned off.
pub(crate) fn provider_from_env(default_service: &str) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    let endpoint_set =
        var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    if disabled || !endpoint_set {
        return Ok(None);
    }
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    // The builders read the endpoint, headers, timeout and compression
    // from the same variables.
    let exporter = match protocol.to_ascii_lowercase().as_str() {
        "grpc" => SpanExporter::builder().with_tonic().build(),
        "http/protobuf" => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
        other => {
            return Err(TelemetryError::Traces(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL `{other}` is not supported (use `http/protobuf` or `grpc`)"
            )));
        }
    }
    .map_err(|e| TelemetryError::Traces(e.to_string()))?;
    Ok(Some(provider(exporter, default_service)))
}

/// A tracer provider exporting over OTLP/HTTP (protobuf) to `endpoint`.
pub(crate) fn http_provider(endpoint: &str, default_service: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| TelemetryError::Traces(e.to_string()))?;
    Ok(provider(exporter, default_service))
}

/// The provider batching `exporter`'s spans, for `OTEL_SERVICE_NAME` or
/// else `default_service`. The sampler comes from `OTEL_TRACES_SAMPLER`
/// (default: parent-based, always on), the batching from `OTEL_BSP_*`.
fn provider(exporter: SpanExporter, default_service: &str) -> SdkTracerProvider {
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(default_service.to_owned());
    }
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build()
}
