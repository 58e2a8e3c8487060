//! [`OtelBridge`]: the kernel's spans in OpenTelemetry traces.

use dtask_core::trace::{TraceBridge, TraceParent};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Links dtask's `tracing` spans to OpenTelemetry through the
/// `tracing-opentelemetry` layer of the global subscriber: a span's
/// context is its OpenTelemetry span context, and a remote parent becomes
/// the OpenTelemetry parent of the span. Where the subscriber has no such
/// layer (traces not exported), it traces nothing and the kernel carries
/// trace contexts of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct OtelBridge;

impl TraceBridge for OtelBridge {
    fn context_of(&self, span: &tracing::Span) -> Option<TraceParent> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        let span_ref = context.span();
        let span_context = span_ref.span_context();
        span_context.is_valid().then(|| TraceParent {
            trace_id: span_context.trace_id().to_bytes(),
            span_id: span_context.span_id().to_bytes(),
            sampled: span_context.is_sampled(),
        })
    }

    fn set_parent(&self, span: &tracing::Span, parent: TraceParent) {
        let flags = if parent.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.span_id),
            flags,
            true,
            TraceState::default(),
        );
        let context = opentelemetry::Context::new().with_remote_span_context(remote);
        // Refused only for a disabled span, or one already started: it
        // keeps the parent it has.
        let _ = span.set_parent(context);
    }
}
