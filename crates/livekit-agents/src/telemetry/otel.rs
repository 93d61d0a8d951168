//! OpenTelemetry export of the session spans (feature `otel`): OTLP over HTTP/protobuf or gRPC.
//!
//! Configure in code or with the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
//! `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, read by the OpenTelemetry SDK), then add the exporter's layer to
//! your `tracing` subscriber:
//!
//! ```no_run
//! # fn demo() -> Result<(), livekit_agents::telemetry::otel::OtelError> {
//! use livekit_agents::telemetry::otel::{OtelConfig, OtlpProtocol};
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! let exporter = OtelConfig::from_env()
//!     .protocol(OtlpProtocol::Grpc)
//!     .resource_attribute("lk.job_id", "AJ_123")
//!     .install()?;
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(exporter.layer())
//!     .init();
//! // ... run sessions; each is one trace (root span `agent_session`) ...
//! exporter.shutdown();
//! # Ok(()) }
//! ```
//!
//! Only the spans of `livekit_agents::telemetry` are exported (the session tree), not every
//! span of the process. An endpoint's credentials (in headers) never appear in logs.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::Layer;

/// The wire protocol of the OTLP exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`, port 4318, path `/v1/traces`).
    HttpProtobuf,
    /// OTLP/gRPC (`grpc`, port 4317).
    Grpc,
}

impl OtlpProtocol {
    /// Parses an `OTEL_EXPORTER_OTLP_PROTOCOL` value (`grpc`, `http/protobuf`).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" => Some(Self::HttpProtobuf),
            _ => None,
        }
    }
}

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The OTLP exporter could not be built (bad endpoint, TLS setup).
    #[error("cannot build the OTLP {protocol:?} exporter: {message}")]
    Build {
        /// The protocol asked for.
        protocol: OtlpProtocol,
        /// The SDK's error.
        message: String,
    },
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol this exporter does not speak.
    #[error("unsupported OTLP protocol {protocol:?} (use grpc or http/protobuf)")]
    Protocol {
        /// The protocol named.
        protocol: String,
    },
}

/// How to export: protocol, endpoint, resource. Defaults follow the OTLP specification.
#[derive(Debug, Clone)]
pub struct OtelConfig {
    protocol: Option<OtlpProtocol>,
    protocol_error: Option<String>,
    endpoint: Option<String>,
    service_name: String,
    resource: Vec<(String, String)>,
    timeout: Duration,
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self {
            protocol: None,
            protocol_error: None,
            endpoint: None,
            service_name: "livekit-agents".into(),
            resource: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl OtelConfig {
    /// The configuration of the `OTEL_EXPORTER_OTLP_*` variables: the protocol from
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL` (default
    /// `http/protobuf`, as the specification); endpoints and headers are read by the SDK.
    pub fn from_env() -> Self {
        let mut config = Self::default();
        let value = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .ok();
        if let Some(v) = value {
            match OtlpProtocol::parse(&v) {
                Some(p) => config.protocol = Some(p),
                None => config.protocol_error = Some(v),
            }
        }
        if let Ok(name) = std::env::var("OTEL_SERVICE_NAME") {
            config.service_name = name;
        }
        config
    }

    /// Sets the protocol.
    pub fn protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.protocol = Some(protocol);
        self.protocol_error = None;
        self
    }

    /// Sets the endpoint: for gRPC the collector's address (`http://127.0.0.1:4317`), for HTTP
    /// the full traces URL (`http://127.0.0.1:4318/v1/traces`). Without it the SDK reads the
    /// variables, then uses the specification's default.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets `service.name` (default `livekit-agents`, or `OTEL_SERVICE_NAME`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Adds a resource attribute, e.g. `lk.job_id` and `lk.room_name` for a process that runs
    /// one job.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource.push((key.into(), value.into()));
        self
    }

    /// Sets the export timeout (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the exporter and its batch processor (call inside a tokio runtime for gRPC).
    pub fn install(self) -> Result<OtelExporter, OtelError> {
        if let Some(v) = self.protocol_error {
            return Err(OtelError::Protocol { protocol: v });
        }
        let protocol = self.protocol.unwrap_or(OtlpProtocol::HttpProtobuf);
        let build_err = |e: opentelemetry_otlp::ExporterBuildError| OtelError::Build {
            protocol,
            message: e.to_string(),
        };
        let exporter = match protocol {
            OtlpProtocol::HttpProtobuf => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_timeout(self.timeout);
                if let Some(e) = &self.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                b.build().map_err(build_err)?
            }
            OtlpProtocol::Grpc => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_timeout(self.timeout);
                if let Some(e) = &self.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                b.build().map_err(build_err)?
            }
        };
        let resource = Resource::builder()
            .with_service_name(self.service_name)
            .with_attributes(
                self.resource
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect::<Vec<_>>(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(OtelExporter { provider })
    }
}

/// A running exporter. Add [`layer`](Self::layer) to the subscriber; call
/// [`shutdown`](Self::shutdown) before the process exits so the last spans are sent.
#[derive(Debug, Clone)]
pub struct OtelExporter {
    provider: SdkTracerProvider,
}

impl OtelExporter {
    /// A `tracing` layer exporting the session spans (target `livekit_agents::telemetry`).
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + Send + Sync + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let tracer = self.provider.tracer("livekit-agents");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                Targets::new().with_target("livekit_agents::telemetry", tracing::Level::INFO),
            )
    }

    /// Sends the spans finished so far.
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "OpenTelemetry flush failed");
        }
    }

    /// Sends what is left and stops the exporter.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OpenTelemetry shutdown failed");
        }
    }
}
