//! One telemetry setup for both binaries, and W3C trace context over gRPC.
//!
//! Every process gets a `tracing` registry with a fmt layer (text or JSON) and an
//! OpenTelemetry layer, so spans always carry trace ids that cross service boundaries;
//! spans are exported over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Server
//! spans follow the OpenTelemetry `rpc.*` conventions.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Telemetry settings, shared by both binaries. `RUST_LOG` sets the filter.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryConfig {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// OTLP/gRPC collector endpoint, e.g. http://127.0.0.1:4317; spans are exported only
    /// when set.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,
}

/// Flushes and stops span export when the process ends.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Exports what is still buffered; called after the server has drained.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {error}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("tracing subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Installs the process-wide subscriber. Call once, from `main`.
pub fn init(
    service_name: &'static str,
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, TelemetryError> {
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name)
            .build(),
    );
    if let Some(endpoint) = &config.otel_exporter_otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(otel_layer(&provider, service_name));
    match config.log_format {
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init()?,
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()?,
    }
    Ok(TelemetryGuard { provider })
}

/// The OpenTelemetry layer over a given provider, for processes (and tests) that build
/// their own subscriber.
pub fn otel_layer<S>(
    provider: &SdkTracerProvider,
    name: &'static str,
) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    // Busy and idle time would cost two clock reads at every poll of every span.
    tracing_opentelemetry::layer()
        .with_tracked_inactivity(false)
        .with_tracer(provider.tracer(name))
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Writes the current span's context as W3C `traceparent`/`tracestate` into outgoing
/// gRPC metadata.
pub fn inject_trace_context(metadata: &mut tonic::metadata::MetadataMap) {
    let context = Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
}

/// A span for an outgoing gRPC call; enter it around the call so the injected context
/// names it as the parent of the server's span.
pub fn client_span(service: &'static str, method: &'static str) -> Span {
    tracing::info_span!(
        "grpc.client",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records a call's outcome on its client span.
pub fn record_client_status(span: &Span, code: tonic::Code) {
    span.record("rpc.grpc.status_code", code as i32);
    if code != tonic::Code::Ok {
        span.record("otel.status_code", "ERROR");
    }
}

/// Makes the server span of each RPC, parented to the caller's `traceparent`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcServerSpan;

impl<B> tower_http::trace::MakeSpan<B> for GrpcServerSpan {
    fn make_span(&mut self, request: &http::Request<B>) -> Span {
        let path = request.uri().path();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            enduser.id = tracing::field::Empty,
            latchkey.tenant_id = tracing::field::Empty,
        );
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        // A request without a traceparent starts a new trace; nothing to report.
        let _ = span.set_parent(parent);
        span
    }
}

fn record_server_status(span: &Span, status: Option<&http::HeaderValue>) {
    let Some(code) = status
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
    else {
        return;
    };
    span.record("rpc.grpc.status_code", code);
    // Server errors per the OpenTelemetry gRPC conventions.
    let code = tonic::Code::from_i32(code);
    if matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    ) {
        span.record("otel.status_code", "ERROR");
    }
}

/// Records the gRPC status of a call on its server span: from the headers of a
/// trailers-only answer, or from the trailers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordGrpcStatus;

impl<B> tower_http::trace::OnResponse<B> for RecordGrpcStatus {
    fn on_response(self, response: &http::Response<B>, _latency: Duration, span: &Span) {
        record_server_status(span, response.headers().get("grpc-status"));
    }
}

impl tower_http::trace::OnEos for RecordGrpcStatus {
    fn on_eos(self, trailers: Option<&http::HeaderMap>, _duration: Duration, span: &Span) {
        record_server_status(span, trailers.and_then(|t| t.get("grpc-status")));
    }
}

/// The layer type [`grpc_trace_layer`] returns.
pub type GrpcTraceLayer = tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::GrpcErrorsAsFailures>,
    GrpcServerSpan,
    (),
    RecordGrpcStatus,
    (),
    RecordGrpcStatus,
    (),
>;

/// The tower layer that opens the `rpc.*` server span of every call and records its
/// gRPC status.
pub fn grpc_trace_layer() -> GrpcTraceLayer {
    tower_http::trace::TraceLayer::new_for_grpc()
        .make_span_with(GrpcServerSpan)
        .on_request(())
        .on_response(RecordGrpcStatus)
        .on_body_chunk(())
        .on_eos(RecordGrpcStatus)
        .on_failure(())
}

/// Spawns a task that stays inside the current span.
pub fn spawn_in_span<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument;
    tokio::spawn(future.instrument(Span::current()))
}
