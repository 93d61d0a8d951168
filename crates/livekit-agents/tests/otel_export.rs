//! OTLP export of a scripted session's spans to a local receiver on 127.0.0.1 (HTTP/protobuf
//! and gRPC), decoded with `opentelemetry-proto`: one trace, the span tree, the resource.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use livekit_agents::io::memory::{audio_input_channel, MemoryAudioOutput};
use livekit_agents::telemetry::otel::{OtelConfig, OtlpProtocol};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse, FakeStt, FakeTts, FakeVad, UserSpeech};
use livekit_agents::voice::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use parking_lot::Mutex;
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;

type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

async fn http_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).unwrap();
                sink.lock().push(req);
                let resp = ExportTraceServiceResponse::default().encode_to_vec();
                ([("content-type", "application/x-protobuf")], resp)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1/traces"), received)
}

struct Collector(Received);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn grpc_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = TraceServiceServer::new(Collector(received.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap()
    });
    (format!("http://{addr}"), received)
}

/// One user turn and one reply on the paused clock, then the clock resumes (for the network).
async fn run_scripted_session() {
    let speeches = vec![UserSpeech::new(0.5, 1.5, "Hello there")];
    let mut options = SessionOptions::default().without_user_away_timeout();
    options.turn_handling.preemptive_generation.enabled = false;
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speeches.clone())))
        .stt(Arc::new(FakeStt::new(speeches)))
        .llm(Arc::new(FakeLlm::new(vec![FakeLlmResponse::text(
            "Hi! How can I help?",
            Duration::from_millis(200),
        )])))
        .tts(Arc::new(FakeTts::new(
            Duration::from_millis(100),
            Duration::from_millis(800),
        )))
        .options(options)
        .build();
    let (_audio, input) = audio_input_channel();
    session
        .start(
            Agent::new("You are a helpful assistant."),
            SessionIo {
                audio_input: Some(input),
                audio_output: Some(Arc::new(MemoryAudioOutput::new())),
                text_output: None,
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    session.close().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn attr(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        kv.value.as_ref().and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            Some(Value::DoubleValue(d)) => Some(d.to_string()),
            Some(Value::BoolValue(b)) => Some(b.to_string()),
            _ => None,
        })
    })
}

async fn export_and_check(protocol: OtlpProtocol, endpoint: String, received: Received) {
    let exporter = OtelConfig::default()
        .protocol(protocol)
        .endpoint(endpoint)
        .service_name("otel-test-agent")
        .resource_attribute("lk.job_id", "AJ_test")
        .resource_attribute("lk.room_name", "room-test")
        .install()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(exporter.layer());
    let guard = tracing::subscriber::set_default(subscriber);
    run_scripted_session().await;
    drop(guard);
    tokio::time::resume();
    let flushing = exporter.clone();
    tokio::task::spawn_blocking(move || flushing.flush())
        .await
        .unwrap();
    // The receiver handles the request on this runtime; wait (bounded) for it.
    for _ in 0..200 {
        if !received.lock().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shutting = exporter.clone();
    tokio::task::spawn_blocking(move || shutting.shutdown())
        .await
        .unwrap();

    let requests = received.lock().clone();
    assert!(!requests.is_empty(), "nothing exported");
    let mut spans = Vec::new();
    for req in &requests {
        for rs in &req.resource_spans {
            let resource = rs.resource.as_ref().unwrap();
            assert_eq!(
                attr(&resource.attributes, "service.name").as_deref(),
                Some("otel-test-agent")
            );
            assert_eq!(
                attr(&resource.attributes, "lk.job_id").as_deref(),
                Some("AJ_test")
            );
            assert_eq!(
                attr(&resource.attributes, "lk.room_name").as_deref(),
                Some("room-test")
            );
            for ss in &rs.scope_spans {
                spans.extend(ss.spans.iter().cloned());
            }
        }
    }
    // One trace.
    let trace_ids: std::collections::HashSet<_> =
        spans.iter().map(|s| s.trace_id.clone()).collect();
    assert_eq!(trace_ids.len(), 1, "{} traces", trace_ids.len());
    let by_id: HashMap<Vec<u8>, String> = spans
        .iter()
        .map(|s| (s.span_id.clone(), s.name.clone()))
        .collect();
    let parent_of = |name: &str| -> Vec<Option<String>> {
        spans
            .iter()
            .filter(|s| s.name == name)
            .map(|s| by_id.get(&s.parent_span_id).cloned())
            .collect()
    };
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(parent_of("agent_session"), vec![None], "{names:?}");
    assert_eq!(parent_of("user_turn"), vec![Some("agent_session".into())]);
    assert_eq!(parent_of("eou_detection"), vec![Some("user_turn".into())]);
    assert_eq!(parent_of("agent_turn"), vec![Some("agent_session".into())]);
    assert_eq!(parent_of("llm_request"), vec![Some("agent_turn".into())]);
    assert_eq!(parent_of("tts_request"), vec![Some("agent_turn".into())]);
    assert_eq!(parent_of("agent_speaking"), vec![Some("agent_turn".into())]);
    let llm = spans.iter().find(|s| s.name == "llm_request").unwrap();
    assert!(attr(&llm.attributes, "lk.response.ttft").is_some());
    assert!(attr(&llm.attributes, "gen_ai.request.model").is_some());
    let turn = spans.iter().find(|s| s.name == "agent_turn").unwrap();
    assert_eq!(
        attr(&turn.attributes, "lk.interrupted").as_deref(),
        Some("false")
    );
    assert!(attr(&turn.attributes, "lk.speech_id")
        .unwrap()
        .starts_with("speech_"));
}

#[tokio::test(start_paused = true)]
async fn session_spans_export_over_otlp_http_protobuf() {
    let (endpoint, received) = http_receiver().await;
    export_and_check(OtlpProtocol::HttpProtobuf, endpoint, received).await;
}

#[tokio::test(start_paused = true)]
async fn session_spans_export_over_otlp_grpc() {
    let (endpoint, received) = grpc_receiver().await;
    export_and_check(OtlpProtocol::Grpc, endpoint, received).await;
}
