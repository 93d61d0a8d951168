//! Telephony: call control against a local Twirp server (SIP and room services; request bodies
//! decoded with `livekit-protocol` and checked field by field), the ready tools and
//! `GetDtmfTask` in text sessions with scripted models.
//!
//! Server-API tests run on the real clock (the HTTP round trip is real I/O on 127.0.0.1);
//! session-only tests run on the paused clock.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use livekit_agents::io::memory::MemoryTextOutput;
use livekit_agents::llm::ChatRole;
use livekit_agents::telephony::*;
use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
use livekit_agents::voice::*;
use livekit_agents::worker::{ApiCredentials, JobContext, JobContextParams, JobProcess};
use livekit_protocol as proto;
use parking_lot::Mutex;
use prost::Message;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[derive(Debug, Clone)]
struct Seen {
    service: String,
    method: String,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answer SIP calls with this SIP status (code, reason) instead of success.
    sip_failure: Option<(u16, &'static str)>,
}

fn protobuf(msg: impl Message) -> Response {
    (
        [(header::CONTENT_TYPE, "application/protobuf")],
        msg.encode_to_vec(),
    )
        .into_response()
}

async fn twirp(
    State(fake): State<Fake>,
    Path((service, method)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    fake.seen.lock().push(Seen {
        service: service.clone(),
        method: method.clone(),
        body: body.clone(),
    });
    if service == "livekit.SIP" {
        if let Some((code, reason)) = fake.sip_failure {
            let error = serde_json::json!({
                "code": "resource_exhausted",
                "msg": "call failed",
                "meta": {"sip_status_code": code.to_string(), "sip_status": reason},
            });
            return (StatusCode::TOO_MANY_REQUESTS, axum::Json(error)).into_response();
        }
    }
    match (service.as_str(), method.as_str()) {
        ("livekit.SIP", "CreateSIPParticipant") => protobuf(proto::SipParticipantInfo {
            participant_id: "PA_callee".into(),
            participant_identity: "+15105550100".into(),
            room_name: "call-1".into(),
            sip_call_id: "SCL_1".into(),
        }),
        ("livekit.SIP", "TransferSIPParticipant") => protobuf(()),
        ("livekit.RoomService", "DeleteRoom") => protobuf(proto::DeleteRoomResponse::default()),
        ("livekit.RoomService", "MoveParticipant") => {
            protobuf(proto::MoveParticipantResponse::default())
        }
        ("livekit.RoomService", "RemoveParticipant") => {
            protobuf(proto::RemoveParticipantResponse::default())
        }
        ("livekit.RoomService", "GetParticipant") => protobuf(proto::ParticipantInfo {
            identity: "caller".into(),
            kind: proto::participant_info::Kind::Sip as i32,
            attributes: [
                ("sip.callID", "SCL_9"),
                ("sip.callStatus", "active"),
                ("sip.phoneNumber", "+15105550111"),
                ("sip.trunkID", "ST_in"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..Default::default()
        }),
        _ => (StatusCode::NOT_FOUND, "no such method").into_response(),
    }
}

async fn serve(fake: Fake) -> String {
    let app = axum::Router::new()
        .route("/twirp/{service}/{method}", axum::routing::post(twirp))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn job(url: &str) -> JobContext {
    let job = proto::Job {
        id: "AJ_1".into(),
        room: Some(proto::Room {
            name: "call-1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    JobContext::new(
        JobContextParams {
            job,
            api: ApiCredentials {
                url: url.into(),
                api_key: "key".into(),
                api_secret: "secret-secret-secret-secret-000".into(),
            },
            ..Default::default()
        },
        JobProcess::new(),
    )
}

async fn text_session(llm: FakeLlm, agent: Agent) -> (AgentSession, MemoryTextOutput) {
    let session = AgentSession::builder().llm(Arc::new(llm)).build();
    let text = MemoryTextOutput::new();
    session
        .start(
            agent,
            SessionIo {
                text_output: Some(Arc::new(text.clone())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (session, text)
}

/// The reason of the `Close` event among the events received so far.
fn close_reason(
    events: &mut livekit_agents::types::EventStream<SessionEvent>,
) -> Option<CloseReason> {
    let mut reason = None;
    while let Some(Ok(ev)) = events.try_recv() {
        if let SessionEvent::Close { reason: r, .. } = ev {
            reason = Some(r);
        }
    }
    reason
}

/// A console-mode job (no server: hanging up only shuts the job down).
fn console_job() -> JobContext {
    JobContext::new(
        JobContextParams {
            fake_job: true,
            ..Default::default()
        },
        JobProcess::new(),
    )
}

fn methods(fake: &Fake) -> Vec<String> {
    fake.seen
        .lock()
        .iter()
        .map(|s| format!("{}/{}", s.service, s.method))
        .collect()
}

// ---------- server API ----------

#[tokio::test]
async fn dial_sends_create_sip_participant_and_waits_for_the_answer() {
    let fake = Fake::default();
    let ctx = job(&serve(fake.clone()).await);
    let mut call = OutboundCall::from_metadata(
        r#"{"phone_number": "+15105550100", "sip_trunk_id": "ST_out"}"#,
        None,
    )
    .unwrap();
    call.dtmf = Some("ww12#".into());
    call.ringing_timeout = Some(Duration::from_secs(20));
    let info = ctx.dial(&call).await.unwrap();
    assert_eq!(info.sip_call_id, "SCL_1");
    let seen = fake.seen.lock();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "CreateSIPParticipant");
    let req = proto::CreateSipParticipantRequest::decode(seen[0].body.clone()).unwrap();
    assert_eq!(req.sip_trunk_id, "ST_out");
    assert_eq!(req.sip_call_to, "+15105550100");
    assert_eq!(req.room_name, "call-1");
    assert_eq!(req.participant_identity, "+15105550100");
    assert!(req.wait_until_answered);
    assert_eq!(req.dtmf, "ww12#");
    assert!(!req.play_dialtone);
    assert_eq!(req.ringing_timeout.unwrap().seconds, 20);
    assert!(req.headers.is_empty());
}

#[tokio::test]
async fn a_busy_callee_is_a_typed_sip_error() {
    let fake = Fake {
        sip_failure: Some((486, "Busy Here")),
        ..Default::default()
    };
    let ctx = job(&serve(fake.clone()).await);
    let err = ctx
        .dial(&OutboundCall::new("+15105550100", "ST_out"))
        .await
        .unwrap_err();
    let TelephonyError::Sip(sip) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(sip.failure(), Some(SipFailure::Busy));
    assert_eq!(sip.sip_status_code(), Some(486));
    assert!(matches!(sip, SipError::Call { status, twirp_code, .. }
        if status == "Busy Here" && twirp_code == "resource_exhausted"));
    assert!(!err.to_string().contains("secret-secret"), "{err}");

    let fake = Fake {
        sip_failure: Some((480, "Temporarily Unavailable")),
        ..Default::default()
    };
    let ctx = job(&serve(fake).await);
    let err = ctx
        .transfer_sip_participant("caller", "+15105550199", &TransferOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(&err, TelephonyError::Sip(s) if s.failure() == Some(SipFailure::NoAnswer)));
}

#[tokio::test]
async fn cold_transfer_announces_transfers_and_ends_the_session() {
    let fake = Fake::default();
    let ctx = job(&serve(fake.clone()).await);
    let llm = FakeLlm::new(vec![]);
    let (session, text) = text_session(llm, Agent::new("Answer the phone.")).await;
    ctx.transfer_call(
        Some(&session),
        "caller",
        "+1 510 555 0199",
        TransferOptions {
            announcement: Some("Transferring you to billing now.".into()),
            play_dialtone: true,
            ringing_timeout: Some(Duration::from_secs(15)),
            headers: [("X-Reason".to_string(), "billing".to_string())].into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(text.segments(), ["Transferring you to billing now."]);
    assert!(!session.is_running());
    assert!(ctx.is_shutting_down());
    assert_eq!(ctx.wait_for_shutdown().await, "call transferred");
    let seen = fake.seen.lock();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "TransferSIPParticipant");
    let req = proto::TransferSipParticipantRequest::decode(seen[0].body.clone()).unwrap();
    assert_eq!(req.room_name, "call-1");
    assert_eq!(req.participant_identity, "caller");
    assert_eq!(req.transfer_to, "tel:+15105550199");
    assert!(req.play_dialtone);
    assert_eq!(req.ringing_timeout.unwrap().seconds, 15);
    assert_eq!(req.headers["X-Reason"], "billing");
}

#[tokio::test]
async fn a_failed_transfer_keeps_the_session() {
    let fake = Fake {
        sip_failure: Some((603, "Decline")),
        ..Default::default()
    };
    let ctx = job(&serve(fake).await);
    let (session, _text) = text_session(FakeLlm::new(vec![]), Agent::new("Hi.")).await;
    let err = ctx
        .transfer_call(
            Some(&session),
            "caller",
            "sip:desk@example.com",
            TransferOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(&err, TelephonyError::Sip(s) if s.failure() == Some(SipFailure::Declined)));
    assert!(session.is_running());
    assert!(!ctx.is_shutting_down());
    // An invalid destination is refused before anything is sent.
    let err = ctx
        .transfer_call(
            Some(&session),
            "caller",
            "call my mom",
            TransferOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        TelephonyError::Sip(SipError::InvalidRequest { .. })
    ));
}

#[tokio::test]
async fn hang_up_says_goodbye_closes_and_deletes_the_room() {
    let fake = Fake::default();
    let ctx = job(&serve(fake.clone()).await);
    let (session, text) = text_session(FakeLlm::new(vec![]), Agent::new("Hi.")).await;
    let mut events = session.events();
    ctx.hang_up(
        Some(&session),
        HangupOptions {
            goodbye: Some("Goodbye!".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(text.segments(), ["Goodbye!"]);
    assert!(!session.is_running());
    assert_eq!(close_reason(&mut events), Some(CloseReason::CallEnded));
    assert_eq!(ctx.wait_for_shutdown().await, "call ended by the agent");
    assert_eq!(methods(&fake), ["livekit.RoomService/DeleteRoom"]);
    let req = proto::DeleteRoomRequest::decode(fake.seen.lock()[0].body.clone()).unwrap();
    assert_eq!(req.room, "call-1");

    // Removing only the caller.
    let fake = Fake::default();
    let ctx = job(&serve(fake.clone()).await);
    ctx.hang_up(
        None,
        HangupOptions {
            target: HangupTarget::RemoveParticipant("caller".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(methods(&fake), ["livekit.RoomService/RemoveParticipant"]);
    let req = proto::RoomParticipantIdentity::decode(fake.seen.lock()[0].body.clone()).unwrap();
    assert_eq!(
        (req.room.as_str(), req.identity.as_str()),
        ("call-1", "caller")
    );
}

#[tokio::test]
async fn sip_participant_info_reads_the_attributes() {
    let fake = Fake::default();
    let ctx = job(&serve(fake.clone()).await);
    let info = ctx.sip_participant_info("caller").await.unwrap().unwrap();
    assert_eq!(info.call_id.as_deref(), Some("SCL_9"));
    assert_eq!(info.call_status, Some(SipCallStatus::Active));
    assert_eq!(info.phone_number.as_deref(), Some("+15105550111"));
    assert_eq!(info.trunk_id.as_deref(), Some("ST_in"));
    let req = proto::RoomParticipantIdentity::decode(fake.seen.lock()[0].body.clone()).unwrap();
    assert_eq!(
        (req.room.as_str(), req.identity.as_str()),
        ("call-1", "caller")
    );
}

// ---------- tools ----------

#[tokio::test]
async fn end_call_tool_lets_the_goodbye_play_then_deletes_the_room() {
    let fake = Fake::default();
    let ctx = job(&serve(fake.clone()).await);
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("end_call", "{}", ms(1)),
        FakeLlmResponse::text("Goodbye, have a nice day!", ms(1)),
    ]);
    let agent = Agent::builder()
        .instructions("Answer the phone.")
        .tool(EndCallTool::new(Some(ctx.clone())).build())
        .build();
    let (session, text) = text_session(llm.clone(), agent).await;
    let mut events = session.events();
    let _ = session.generate_reply(ReplyOptions::default().with_user_input("That's all, bye."));
    tokio::time::timeout(Duration::from_secs(10), session.wait_closed())
        .await
        .unwrap();
    assert_eq!(close_reason(&mut events), Some(CloseReason::CallEnded));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), ctx.wait_for_shutdown())
            .await
            .unwrap(),
        "the agent ended the call"
    );
    assert_eq!(text.segments(), ["Goodbye, have a nice day!"]);
    // The model saw the reference's instructions as the tool output.
    let last = llm.requests().pop().unwrap();
    let ctx_text = format!("{:?}", last.chat_ctx);
    assert!(ctx_text.contains("say goodbye to the user"), "{ctx_text}");
    assert_eq!(methods(&fake), ["livekit.RoomService/DeleteRoom"]);
}

#[tokio::test(start_paused = true)]
async fn end_call_without_a_job_closes_the_session_after_the_reply() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("end_call", "{}", ms(50)),
        FakeLlmResponse::text("Bye!", ms(50)),
    ]);
    let tool = EndCallTool::new(None).build();
    assert!(tool
        .definition()
        .description
        .starts_with("Ends the current call"));
    let agent = Agent::builder().instructions("Hi.").tool(tool).build();
    let (session, text) = text_session(llm, agent).await;
    let mut events = session.events();
    let result = session.run("bye").await.unwrap();
    result.expect().contains_function_call("end_call");
    session.wait_closed().await;
    assert_eq!(text.segments(), ["Bye!"]);
    assert_eq!(close_reason(&mut events), Some(CloseReason::CallEnded));
}

/// A `hang_up` tool built on `hang_up_from_tool`; records when its call returned.
fn hang_up_tool(
    job: JobContext,
    goodbye: Option<&str>,
    returned: Arc<Mutex<Vec<Vec<String>>>>,
    text: MemoryTextOutput,
) -> livekit_agents::llm::FunctionTool {
    let goodbye = goodbye.map(str::to_owned);
    livekit_agents::llm::FunctionTool::new(
        "hang_up",
        "Hang up.",
        move |ctx: livekit_agents::llm::RunContext, _: ()| {
            let (job, goodbye, returned, text) =
                (job.clone(), goodbye.clone(), returned.clone(), text.clone());
            async move {
                job.hang_up_from_tool(
                    &ctx,
                    HangupOptions {
                        goodbye,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| livekit_agents::llm::ToolError::new(e.to_string()))?;
                returned.lock().push(text.segments());
                Ok::<_, livekit_agents::llm::ToolError>(())
            }
        },
    )
}

#[tokio::test(start_paused = true)]
async fn hang_up_from_a_tool_lets_the_goodbye_of_its_step_play_first() {
    // The model says goodbye and calls the tool in the same step.
    let llm = FakeLlm::new(vec![FakeLlmResponse {
        text: "Goodbye, take care!".into(),
        tool_calls: vec![("hang_up".into(), "{}".into())],
        ttft: ms(100),
        duration: Duration::from_secs(1),
        error: None,
    }]);
    let job = console_job();
    let returned = Arc::new(Mutex::new(Vec::new()));
    let text = MemoryTextOutput::new();
    let agent = Agent::builder()
        .instructions("Answer the phone.")
        .tool(hang_up_tool(
            job.clone(),
            None,
            returned.clone(),
            text.clone(),
        ))
        .build();
    let session = AgentSession::builder().llm(Arc::new(llm)).build();
    session
        .start(
            agent,
            SessionIo {
                text_output: Some(Arc::new(text.clone())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut events = session.events();
    let _ = session.generate_reply(ReplyOptions::default().with_user_input("Thanks, bye."));
    session.wait_closed().await;
    assert_eq!(close_reason(&mut events), Some(CloseReason::CallEnded));
    assert_eq!(job.wait_for_shutdown().await, "call ended by the agent");
    // When the tool's hang-up returned, the goodbye had played.
    assert_eq!(*returned.lock(), [vec!["Goodbye, take care!".to_string()]]);
}

#[tokio::test(start_paused = true)]
async fn hang_up_from_a_tool_with_a_goodbye_ends_after_it_played() {
    let llm = FakeLlm::new(vec![FakeLlmResponse::tool_call("hang_up", "{}", ms(100))]);
    let job = console_job();
    let returned = Arc::new(Mutex::new(Vec::new()));
    let text = MemoryTextOutput::new();
    let agent = Agent::builder()
        .instructions("Answer the phone.")
        .tool(hang_up_tool(
            job.clone(),
            Some("Thanks for calling, goodbye!"),
            returned.clone(),
            text.clone(),
        ))
        .build();
    let session = AgentSession::builder().llm(Arc::new(llm)).build();
    session
        .start(
            agent,
            SessionIo {
                text_output: Some(Arc::new(text.clone())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut events = session.events();
    let _ = session.generate_reply(ReplyOptions::default().with_user_input("Thanks, bye."));
    session.wait_closed().await;
    // The tool returned before the goodbye (it plays after the tool's speech), the session
    // closed once it had played.
    assert_eq!(*returned.lock(), [Vec::<String>::new()]);
    assert_eq!(text.segments(), ["Thanks for calling, goodbye!"]);
    assert_eq!(close_reason(&mut events), Some(CloseReason::CallEnded));
    assert_eq!(job.wait_for_shutdown().await, "call ended by the agent");
}

#[tokio::test(start_paused = true)]
async fn send_dtmf_events_presses_keys_apart() {
    let sender = MemoryDtmfSender::new();
    let tool = send_dtmf_events_tool(Arc::new(sender.clone()));
    let call = livekit_agents::llm::FunctionCall::new(
        "c1",
        "send_dtmf_events",
        r##"{"events": ["1", "2", "#"]}"##,
    );
    let start = tokio::time::Instant::now();
    let out = tool
        .call(
            livekit_agents::llm::RunContext::detached(call.clone()),
            &call.arguments,
        )
        .await
        .unwrap();
    assert_eq!(start.elapsed(), 2 * DTMF_PUBLISH_DELAY);
    assert!(
        matches!(&out, livekit_agents::llm::ToolOutput::Value(v) if v == "Successfully sent DTMF events: 1, 2, #"),
        "{out:?}"
    );
    assert_eq!(
        sender.sent(),
        [DtmfEvent::One, DtmfEvent::Two, DtmfEvent::Pound]
    );
    // Garbage keys are a tool error the model sees; too many keys too.
    let ctx = livekit_agents::llm::RunContext::detached(call);
    assert!(tool
        .call(ctx.clone(), r#"{"events": ["x"]}"#)
        .await
        .is_err());
    let many = format!(r#"{{"events": [{}]}}"#, vec!["\"1\""; 100].join(","));
    assert!(tool.call(ctx, &many).await.is_err());
    assert_eq!(sender.sent().len(), 3);
}

#[tokio::test]
async fn voicemail_tool_leaves_the_message_then_hangs_up() {
    let fake = Fake::default();
    let ctx = job(&serve(fake.clone()).await);
    let llm = FakeLlm::new(vec![FakeLlmResponse::tool_call(
        "detected_answering_machine",
        "{}",
        ms(1),
    )]);
    let agent = Agent::builder()
        .instructions("Call the customer.")
        .tool(
            VoicemailTool::new(
                Some(ctx.clone()),
                VoicemailMessage::Text("Hi, this is Acme. We'll call back later.".into()),
            )
            .build(),
        )
        .build();
    let (session, text) = text_session(llm, agent).await;
    let _ = session.generate_reply(
        ReplyOptions::default()
            .with_user_input("You've reached Sam, leave a message after the beep."),
    );
    tokio::time::timeout(Duration::from_secs(10), session.wait_closed())
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), ctx.wait_for_shutdown())
            .await
            .unwrap(),
        "voicemail left"
    );
    assert_eq!(
        text.segments(),
        ["Hi, this is Acme. We'll call back later."]
    );
    assert_eq!(methods(&fake), ["livekit.RoomService/DeleteRoom"]);
}

// ---------- GetDtmfTask ----------

type Slot = Arc<Mutex<Option<Result<GetDtmfResult, TaskError>>>>;

struct AsksPin {
    task: Mutex<Option<GetDtmfTask>>,
    result: Slot,
}

#[async_trait::async_trait]
impl AgentBehavior for AsksPin {
    async fn on_enter(&self, ctx: AgentContext) {
        let task = self.task.lock().take().unwrap();
        let r = task.run(&ctx.session).await;
        *self.result.lock() = Some(r);
    }
}

async fn pin_session(task: GetDtmfTask, llm: FakeLlm) -> (AgentSession, MemoryTextOutput, Slot) {
    let result: Slot = Arc::default();
    let agent = Agent::builder()
        .id("parent")
        .behavior(AsksPin {
            task: Mutex::new(Some(task)),
            result: result.clone(),
        })
        .build();
    let (session, text) = text_session(llm, agent).await;
    tokio::task::yield_now().await;
    (session, text, result)
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn get_dtmf_collects_keys_after_the_quiet_time() {
    let llm = FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::text(
        "Please enter your four digit PIN.",
        ms(50),
    ));
    let (session, text, result) = pin_session(GetDtmfTask::new(4), llm.clone()).await;
    assert_eq!(session.current_agent().unwrap().id(), "get_dtmf_task");
    tokio::time::sleep(ms(500)).await;
    assert_eq!(text.segments(), ["Please enter your four digit PIN."]);
    // The greeting is asked without tools.
    assert_eq!(
        llm.requests()[0].tool_choice,
        Some(livekit_agents::llm::ToolChoice::None)
    );
    for (i, (code, digit)) in [(1, "1"), (2, "2"), (3, ""), (4, "4")]
        .into_iter()
        .enumerate()
    {
        session.push_sip_dtmf(code, digit, Some("caller".into()));
        settle().await;
        tokio::time::sleep(ms(500 * (i as u64 + 1))).await;
        assert!(result.lock().is_none(), "still within the quiet time");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    settle().await;
    let r = result.lock().take().unwrap().unwrap();
    assert_eq!(r.user_input, "1 2 3 4");
    assert_eq!(session.current_agent().unwrap().id(), "parent");
}

#[tokio::test(start_paused = true)]
async fn get_dtmf_pound_ends_input_and_short_input_fails() {
    let llm = FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::text("Enter it.", ms(10)));
    let (session, _text, result) = pin_session(GetDtmfTask::new(4), llm).await;
    tokio::time::sleep(ms(100)).await;
    session.push_sip_dtmf(9, "9", None);
    session.push_sip_dtmf(11, "#", None);
    settle().await;
    tokio::time::sleep(ms(10)).await;
    let r = result.lock().take().unwrap();
    assert_eq!(
        r,
        Err(TaskError::Failed {
            reason: "Digits input not fully received. Expect 4 digits, got 1".into()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn get_dtmf_confirms_then_records_the_confirmed_digits() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::text("Please type your account number.", ms(10)),
        FakeLlmResponse::text("I got one two. Is that right?", ms(10)),
        FakeLlmResponse::tool_call("confirm_inputs", r#"{"inputs": ["1", "2"]}"#, ms(10)),
    ])
    .with_fallback(FakeLlmResponse::text("Thanks.", ms(10)));
    let task = GetDtmfTask::new(2).ask_for_confirmation(true);
    let (session, text, result) = pin_session(task, llm.clone()).await;
    tokio::time::sleep(ms(100)).await;
    session.push_sip_dtmf(1, "1", None);
    session.push_sip_dtmf(2, "2", None);
    settle().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(result.lock().is_none(), "waits for the confirmation");
    assert_eq!(
        text.segments(),
        [
            "Please type your account number.",
            "I got one two. Is that right?"
        ]
    );
    let confirm_request = format!("{:?}", llm.requests()[1].chat_ctx);
    assert!(
        confirm_request.contains("<dtmf_inputs>1 2</dtmf_inputs>"),
        "{confirm_request}"
    );
    let _ = session.run("Yes, correct.").await.unwrap();
    settle().await;
    let r = result.lock().take().unwrap().unwrap();
    assert_eq!(r.keys, [DtmfEvent::One, DtmfEvent::Two]);
}

#[tokio::test(start_paused = true)]
async fn dtmf_events_reach_session_subscribers() {
    let (session, _text) = text_session(FakeLlm::new(vec![]), Agent::new("Hi.")).await;
    let mut events = session.events();
    session.push_sip_dtmf(10, "*", Some("caller".into()));
    loop {
        let ev = events.recv().await.unwrap().unwrap();
        if let SessionEvent::SipDtmfReceived {
            code,
            digit,
            participant_identity,
        } = ev
        {
            assert_eq!((code, digit.as_str()), (10, "*"));
            assert_eq!(participant_identity.as_deref(), Some("caller"));
            assert_eq!(
                SessionEvent::SipDtmfReceived {
                    code,
                    digit,
                    participant_identity
                }
                .name(),
                "sip_dtmf_received"
            );
            break;
        }
    }
}

// ---------- IVR ----------

#[tokio::test(start_paused = true)]
async fn ivr_detection_adds_the_dtmf_tool_and_replies_after_silence() {
    let llm = FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::text(
        "I'd like to speak to billing.",
        ms(10),
    ));
    let (session, text) = text_session(llm, Agent::new("Navigate the phone menu.")).await;
    let sender = MemoryDtmfSender::new();
    let ivr = IvrDetection::start(&session, Arc::new(sender), IvrOptions::default(), None);
    let mut events = ivr.events();
    let names: Vec<String> = session
        .current_agent()
        .unwrap()
        .tools()
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    assert_eq!(names, ["send_dtmf_events"]);
    // One navigation per session: it can be found, and starting again returns it.
    assert!(IvrDetection::of(&session).is_some());
    let again = IvrDetection::start(
        &session,
        Arc::new(MemoryDtmfSender::new()),
        IvrOptions::default(),
        None,
    );
    let mut again_events = again.events();
    assert_eq!(session.current_agent().unwrap().tools().len(), 1);
    let start = tokio::time::Instant::now();
    assert_eq!(
        events.recv().await.unwrap().unwrap(),
        IvrEvent::SilenceDetected
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    tokio::time::sleep(ms(100)).await;
    assert_eq!(text.segments(), ["I'd like to speak to billing."]);
    assert_eq!(
        again_events.recv().await.unwrap().unwrap(),
        IvrEvent::SilenceDetected
    );
    // After the reply the line is silent again: one more nudge 5 s later.
    assert_eq!(
        events.recv().await.unwrap().unwrap(),
        IvrEvent::SilenceDetected
    );
    ivr.stop();
    assert!(!again.is_running());
    assert!(IvrDetection::of(&session).is_none());
}

// ---------- warm transfer ----------

struct FakeConsultation {
    dial_result: Mutex<Option<Result<(), TelephonyError>>>,
    closed: tokio_util::sync::CancellationToken,
    moved: Mutex<bool>,
    left: Mutex<bool>,
    human_text: MemoryTextOutput,
}

impl FakeConsultation {
    fn new(dial_result: Result<(), TelephonyError>) -> Arc<Self> {
        Arc::new(Self {
            dial_result: Mutex::new(Some(dial_result)),
            closed: Default::default(),
            moved: Mutex::new(false),
            left: Mutex::new(false),
            human_text: MemoryTextOutput::new(),
        })
    }
}

#[async_trait::async_trait]
impl Consultation for FakeConsultation {
    async fn join(&self) -> Result<SessionIo, TelephonyError> {
        Ok(SessionIo {
            text_output: Some(Arc::new(self.human_text.clone())),
            ..Default::default()
        })
    }
    async fn dial(&self) -> Result<(), TelephonyError> {
        tokio::time::sleep(Duration::from_secs(3)).await; // ringing
        self.dial_result.lock().take().unwrap()
    }
    async fn move_to_caller(&self) -> Result<(), TelephonyError> {
        *self.moved.lock() = true;
        Ok(())
    }
    async fn closed(&self) -> String {
        self.closed.cancelled().await;
        "the human agent hung up".into()
    }
    async fn leave(&self) {
        *self.left.lock() = true;
    }
}

fn transfer_tool(task: Arc<Mutex<Option<WarmTransferTask>>>) -> livekit_agents::llm::FunctionTool {
    livekit_agents::llm::FunctionTool::raw(
        "transfer_to_human",
        "Transfer the caller to a human.",
        serde_json::json!({"type": "object", "properties": {}}),
        move |ctx: livekit_agents::llm::RunContext, _a: serde_json::Value| {
            let task = task.lock().take();
            async move {
                let session = ctx.session().cloned().unwrap();
                match task.unwrap().run(&session).await {
                    Ok(r) => Ok(format!("transferred to {}", r.human_agent_identity)),
                    Err(e) => Err(livekit_agents::llm::ToolError::new(e.to_string())),
                }
            }
        },
    )
}

async fn caller_with_transfer(
    consultation: Arc<FakeConsultation>,
    human_llm: FakeLlm,
    caller_llm: FakeLlm,
) -> (AgentSession, MemoryTextOutput, WarmTransferHandle) {
    let slot: Arc<Mutex<Option<WarmTransferTask>>> = Arc::default();
    let agent = Agent::builder()
        .instructions("Help the caller.")
        .tool(transfer_tool(slot.clone()))
        .build();
    let (session, text) = text_session(caller_llm, agent).await;
    let mut history = livekit_agents::llm::ChatContext::new();
    history.push(livekit_agents::llm::ChatMessage::new(
        livekit_agents::llm::ChatRole::User,
        "My invoice is wrong, I want a person.",
    ));
    let task =
        WarmTransferTask::new(consultation, &history, "human-agent-sip").llm(Arc::new(human_llm));
    assert!(task
        .instructions()
        .contains("Caller: My invoice is wrong, I want a person."));
    let handle = task.handle();
    *slot.lock() = Some(task);
    (session, text, handle)
}

#[tokio::test(start_paused = true)]
async fn warm_transfer_summarises_for_the_human_then_merges() {
    let consultation = FakeConsultation::new(Ok(()));
    let human_llm = FakeLlm::new(vec![
        FakeLlmResponse::text("Hi Sam, the caller says their invoice is wrong.", ms(10)),
        FakeLlmResponse::tool_call("connect_to_caller", "{}", ms(10)),
    ]);
    let caller_llm = FakeLlm::new(vec![FakeLlmResponse::tool_call(
        "transfer_to_human",
        "{}",
        ms(10),
    )])
    .with_fallback(FakeLlmResponse::text("You're now connected.", ms(10)));
    let (session, _text, handle) =
        caller_with_transfer(consultation.clone(), human_llm, caller_llm).await;
    let _ = session.generate_reply(ReplyOptions::default().with_user_input("Get me a person."));
    tokio::time::sleep(ms(500)).await;
    // On hold while the human's phone rings.
    assert_eq!(handle.state().caller, CallerState::Escalated);
    assert_eq!(handle.state().human, HumanState::Dialing);
    assert!(!session.audio_input_enabled() && !session.audio_output_enabled());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(handle.state().human, HumanState::Summarizing);
    let human = handle.human_session().unwrap();
    let _ = human.run("Hello, this is Sam from billing.").await.unwrap();
    assert_eq!(
        consultation.human_text.segments(),
        ["Hi Sam, the caller says their invoice is wrong."]
    );
    let _ = human.generate_reply(ReplyOptions::default().with_user_input("OK, put them through."));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(*consultation.moved.lock());
    assert!(*consultation.left.lock());
    assert_eq!(
        handle.state(),
        TransferState {
            caller: CallerState::Inactive,
            human: HumanState::Merged
        }
    );
    assert!(!human.is_running());
    let outputs: Vec<String> = session
        .history()
        .items()
        .iter()
        .filter_map(|i| match i {
            livekit_agents::llm::ChatItem::FunctionCallOutput(o) => Some(o.output.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(outputs, ["transferred to human-agent-sip"]);
}

#[tokio::test(start_paused = true)]
async fn a_busy_human_returns_the_caller_with_the_reason() {
    let busy = TelephonyError::Sip(SipError::Call {
        call: "CreateSIPParticipant",
        status_code: 486,
        status: "Busy Here".into(),
        failure: SipFailure::Busy,
        twirp_code: "resource_exhausted".into(),
    });
    let consultation = FakeConsultation::new(Err(busy));
    let caller_llm = FakeLlm::new(vec![FakeLlmResponse::tool_call(
        "transfer_to_human",
        "{}",
        ms(10),
    )])
    .with_fallback(FakeLlmResponse::text(
        "Sorry, everyone is busy. Can I help you myself?",
        ms(10),
    ));
    let (session, text, handle) =
        caller_with_transfer(consultation.clone(), FakeLlm::new(vec![]), caller_llm).await;
    let _ = session.generate_reply(ReplyOptions::default().with_user_input("Get me a person."));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(handle.state().human, HumanState::Failed);
    assert_eq!(handle.state().caller, CallerState::Active);
    assert!(session.audio_input_enabled() && session.audio_output_enabled());
    assert!(!*consultation.moved.lock());
    let output = session
        .history()
        .items()
        .iter()
        .find_map(|i| match i {
            livekit_agents::llm::ChatItem::FunctionCallOutput(o) => Some(o.clone()),
            _ => None,
        })
        .unwrap();
    assert!(output.is_error);
    assert!(
        output
            .output
            .contains("could not reach the human agent: the line is busy"),
        "{}",
        output.output
    );
    assert_eq!(
        text.segments(),
        ["Sorry, everyone is busy. Can I help you myself?"]
    );
}

#[tokio::test(start_paused = true)]
async fn the_human_hanging_up_returns_the_caller() {
    let consultation = FakeConsultation::new(Ok(()));
    let caller_llm = FakeLlm::new(vec![FakeLlmResponse::tool_call(
        "transfer_to_human",
        "{}",
        ms(10),
    )])
    .with_fallback(FakeLlmResponse::text("The agent had to leave.", ms(10)));
    let human_llm = FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::text("Hi.", ms(10)));
    let (session, _text, handle) =
        caller_with_transfer(consultation.clone(), human_llm, caller_llm).await;
    let _ = session.generate_reply(ReplyOptions::default().with_user_input("Get me a person."));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(handle.state().human, HumanState::Summarizing);
    consultation.closed.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(handle.state().human, HumanState::Failed);
    let output = session
        .history()
        .items()
        .iter()
        .find_map(|i| match i {
            livekit_agents::llm::ChatItem::FunctionCallOutput(o) => Some(o.output.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        output.contains("room closed: the human agent hung up"),
        "{output}"
    );
}

#[tokio::test]
async fn sip_consultation_dials_into_its_room_and_moves_the_human() {
    let fake = Fake::default();
    let ctx = job(&serve(fake.clone()).await);
    let mut call = OutboundCall::new("+15105550123", "ST_out");
    call.participant_identity = "human-agent-sip".into();
    call.wait_until_answered = false;
    let consultation = SipConsultation::new(ctx, call);
    assert_eq!(consultation.room_name(), "call-1-human-agent");
    consultation.dial().await.unwrap();
    consultation.move_to_caller().await.unwrap();
    assert_eq!(
        methods(&fake),
        [
            "livekit.SIP/CreateSIPParticipant",
            "livekit.RoomService/MoveParticipant"
        ]
    );
    let seen = fake.seen.lock();
    let req = proto::CreateSipParticipantRequest::decode(seen[0].body.clone()).unwrap();
    assert_eq!(req.room_name, "call-1-human-agent");
    assert_eq!(req.sip_call_to, "+15105550123");
    assert_eq!(req.participant_identity, "human-agent-sip");
    assert!(req.wait_until_answered, "always waits for the answer");
    let req = proto::MoveParticipantRequest::decode(seen[1].body.clone()).unwrap();
    assert_eq!(req.room, "call-1-human-agent");
    assert_eq!(req.identity, "human-agent-sip");
    assert_eq!(req.destination_room, "call-1");
}

// ---------- the ivr_detection session option, through console mode ----------

/// A display that drops what the console prints (the report keeps the lines).
struct Discard;

impl std::io::Write for Discard {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_ivr_detection_option_gives_the_agent_the_keypad() {
    use livekit_agents::cli::{run_console, ConsoleOptions};
    use livekit_agents::worker::WorkerOptions;

    let llm = FakeLlm::new(vec![FakeLlmResponse::tool_call(
        "send_dtmf_events",
        r#"{"events": ["2"]}"#,
        ms(100),
    )])
    .with_fallback(FakeLlmResponse::text("", ms(100)));
    let found: Arc<Mutex<Option<IvrDetection>>> = Arc::default();
    let worker = {
        let (llm, found) = (llm.clone(), found.clone());
        WorkerOptions::new(move |ctx: JobContext| {
            let (llm, found) = (llm.clone(), found.clone());
            async move {
                let session = AgentSession::builder()
                    .llm(Arc::new(llm))
                    .ivr_detection(true)
                    .build();
                let io = ctx.session_io(&session).await?;
                session.start(Agent::new("Reach billing."), io).await?;
                tokio::time::sleep(ms(10)).await;
                *found.lock() = IvrDetection::of(&session);
                Ok(())
            }
        })
    };
    // The menu speaks a moment after the call connected (the navigation starts once the
    // session runs, as the reference's, which starts it with the session).
    let (mut menu, input) = tokio::io::duplex(256);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = menu
            .write_all(b"Thanks for calling Acme. For billing, press 2.\n")
            .await;
    });
    let report = run_console(
        worker,
        ConsoleOptions::default()
            .with_text(true)
            .with_text_input(Box::new(tokio::io::BufReader::new(input)))
            .with_display(Box::new(Discard)),
    )
    .await
    .unwrap();
    let ivr = found
        .lock()
        .clone()
        .expect("IVR navigation started by the option");
    assert!(!ivr.is_running(), "it ends with the session");
    let tools: Vec<String> = llm.requests()[0]
        .tools
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(tools, ["send_dtmf_events"]);
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.starts_with("[tool] send_dtmf_events")
                && l.contains("Successfully sent DTMF events: 2")),
        "{:#?}",
        report.lines
    );
}

#[tokio::test(start_paused = true)]
async fn with_the_ivr_option_the_first_reply_already_has_the_keypad() {
    use livekit_agents::cli::{run_console, ConsoleOptions};
    use livekit_agents::worker::WorkerOptions;

    let llm = FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::text("", ms(100)));
    let worker = {
        let llm = llm.clone();
        WorkerOptions::new(move |ctx: JobContext| {
            let llm = llm.clone();
            async move {
                let session = AgentSession::builder()
                    .llm(Arc::new(llm))
                    .ivr_detection(true)
                    .build();
                let io = ctx.session_io(&session).await?;
                session.start(Agent::new("Reach billing."), io).await?;
                // A turn at the very instant the session starts.
                let _ = session.generate_reply(
                    ReplyOptions::default().with_user_input("For billing, press 2."),
                );
                Ok(())
            }
        })
    };
    let (_menu, input) = tokio::io::duplex(64);
    let run = run_console(
        worker,
        ConsoleOptions::default()
            .with_text(true)
            .with_text_input(Box::new(tokio::io::BufReader::new(input)))
            .with_display(Box::new(Discard)),
    );
    // The console ends with its input: stop once the reply was asked for.
    tokio::select! {
        _ = run => {}
        _ = async {
            while llm.requests().is_empty() {
                tokio::time::sleep(ms(10)).await;
            }
        } => {}
    }
    let tools: Vec<String> = llm.requests()[0]
        .tools
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(tools, ["send_dtmf_events"]);
}

// ---------- answering-machine detection on a session ----------

/// A session hearing `speech` on its audio input (fake VAD and STT), replying with `llm`,
/// showing what the agent says on the returned text output.
async fn amd_session(
    speech: Vec<livekit_agents::testing::UserSpeech>,
    llm: FakeLlm,
) -> (
    AgentSession,
    MemoryTextOutput,
    livekit_agents::io::memory::AudioInputSender,
) {
    use livekit_agents::testing::{FakeStt, FakeVad};
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speech.clone())))
        .stt(Arc::new(FakeStt::new(speech)))
        .llm(Arc::new(llm))
        .build();
    let (audio, input) = livekit_agents::io::memory::audio_input_channel();
    let text = MemoryTextOutput::new();
    session
        .start(
            Agent::new("Call the customer."),
            SessionIo {
                audio_input: Some(input),
                text_output: Some(Arc::new(text.clone())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (session, text, audio)
}

/// [`amd_session`] replying "Hi, this is Acme Dental." to everything.
async fn listening_session(
    speech: Vec<livekit_agents::testing::UserSpeech>,
) -> (AgentSession, livekit_agents::io::memory::AudioInputSender) {
    let llm = FakeLlm::new(vec![])
        .with_fallback(FakeLlmResponse::text("Hi, this is Acme Dental.", ms(100)));
    let (session, _text, audio) = amd_session(speech, llm).await;
    (session, audio)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::test(start_paused = true)]
async fn amd_holds_the_agent_until_a_person_answers_then_the_held_speech_plays() {
    use livekit_agents::testing::UserSpeech;
    // "Hello?" from 0.5 s to 1.2 s; no transcript before the short-greeting silence ran out.
    let (session, text, _audio) = amd_session(
        vec![UserSpeech::new(0.5, 1.2, "Hello?").stt_delay(3.0)],
        FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::text("Fine, thanks.", ms(100))),
    )
    .await;
    let amd = Amd::start(
        &session,
        Some(Arc::new(FakeLlm::new(vec![]))),
        AmdOptions::default(),
        None,
    )
    .unwrap();
    assert!(amd.is_holding_speech());
    // The agent greets at once: held while AMD listens (the verdict comes at 1.7 s).
    let greeting = session
        .say("Hi, this is Acme Dental.", SayOptions::default())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(amd.result().is_none() && amd.is_holding_speech());
    assert!(
        text.segments().is_empty(),
        "nothing plays before the verdict: {:?}",
        text.segments()
    );
    assert!(!greeting.done());
    let verdict = amd.execute().await.unwrap();
    assert_eq!(
        (verdict.category, verdict.reason),
        (AmdCategory::Human, AmdReason::ShortGreeting)
    );
    assert!(!amd.is_holding_speech());
    // The VAD's silence counts: the greeting ended at 1.2 s (its end of speech came 0.3 s
    // later), so it lasted 0.7 s and the verdict came 0.5 s after its end.
    assert!(
        (secs(verdict.speech_duration) - 0.7).abs() < 0.01,
        "{verdict:?}"
    );
    assert!((secs(verdict.delay) - 0.5).abs() < 0.01, "{verdict:?}");
    // Then the held greeting plays.
    greeting.wait_for_playout().await;
    assert_eq!(text.segments()[0], "Hi, this is Acme Dental.");
    session.close().await;
}

#[tokio::test(start_paused = true)]
async fn amd_on_a_voicemail_drops_the_held_reply_takes_the_machine_turns_and_leaves_a_message() {
    use livekit_agents::testing::UserSpeech;
    let greeting = "Hi, you've reached Sam.";
    let beep = "Please leave a message after the tone.";
    let message = "Hi Sam, this is Acme Dental: call us back at 555-0100.";
    let reply = FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::text("Hello Sam!", ms(100)));
    let (session, text, _audio) = amd_session(
        vec![
            UserSpeech::new(0.5, 6.5, greeting),
            UserSpeech::new(9.0, 11.0, beep),
        ],
        reply.clone(),
    )
    .await;
    let mut events = session.events();
    let amd = Amd::start(
        &session,
        Some(Arc::new(FakeLlm::new(vec![FakeLlmResponse::tool_call(
            "save_prediction",
            r#"{"label": "machine-vm"}"#,
            ms(200),
        )]))),
        AmdOptions::default(),
        None,
    )
    .unwrap();
    let verdict = amd.execute().await.unwrap();
    assert_eq!(verdict.category, AmdCategory::MachineVm);
    // The greeting's turn ended before the verdict: its reply was generated, held, and
    // interrupted by the verdict.
    assert_eq!(reply.requests().len(), 1);
    // The rest of the greeting (until after the tone) is a machine's turn: no reply (its
    // preemptive generation, if any, is dropped), though speech is not held any more.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!amd.is_holding_speech());
    assert!(text.segments().is_empty(), "{:?}", text.segments());
    let said: Vec<(ChatRole, String)> = session
        .history()
        .messages()
        .map(|m| (m.role, m.text_content().unwrap_or_default()))
        .collect();
    assert_eq!(
        said,
        [
            (ChatRole::User, greeting.to_owned()),
            (ChatRole::User, beep.to_owned())
        ]
    );
    // The voicemail flow: the message, then the call ends.
    leave_voicemail(&session, None, &VoicemailMessage::Text(message.into()))
        .await
        .unwrap();
    assert_eq!(text.segments(), [message]);
    assert_eq!(close_reason(&mut events), Some(CloseReason::CallEnded));
    drop(amd);
}

#[tokio::test(start_paused = true)]
async fn dropping_amd_releases_the_held_speech() {
    let (session, text, _audio) = amd_session(vec![], FakeLlm::new(vec![])).await;
    let amd = Amd::start(
        &session,
        Some(Arc::new(FakeLlm::new(vec![]))),
        AmdOptions::default(),
        None,
    )
    .unwrap();
    let hello = session.say("Hello?", SayOptions::default()).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(text.segments().is_empty());
    drop(amd);
    hello.wait_for_playout().await;
    assert_eq!(text.segments(), ["Hello?"]);
    session.close().await;
}

#[tokio::test(start_paused = true)]
async fn amd_hears_a_voicemail_greeting_and_waits_for_its_end() {
    use livekit_agents::testing::UserSpeech;
    let greeting = "Hi, you've reached Sam. Leave a message after the beep.";
    let (session, _audio) = listening_session(vec![UserSpeech::new(0.5, 6.5, greeting)]).await;
    let classifier = FakeLlm::new(vec![FakeLlmResponse::tool_call(
        "save_prediction",
        r#"{"label": "machine-vm"}"#,
        ms(200),
    )]);
    let amd = Amd::start(
        &session,
        Some(Arc::new(classifier.clone())),
        AmdOptions::default(),
        None,
    )
    .unwrap();
    let t0 = tokio::time::Instant::now();
    let verdict = amd.execute().await.unwrap();
    assert_eq!(verdict.category, AmdCategory::MachineVm);
    assert_eq!(verdict.reason, AmdReason::Llm);
    assert_eq!(verdict.transcript, greeting);
    // Not before the greeting ended (6.5 s) and the line stayed silent (1.5 s).
    assert!(
        t0.elapsed() >= Duration::from_millis(7900),
        "{:?}",
        t0.elapsed()
    );
    let request = &classifier.requests()[0];
    assert_eq!(
        request.tool_choice,
        Some(livekit_agents::llm::ToolChoice::Required)
    );
    let tools: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["save_prediction", "postpone_termination"]);
    session.close().await;
}

#[tokio::test(start_paused = true)]
async fn amd_calls_a_short_hello_a_person_and_a_menu_starts_navigation() {
    use livekit_agents::testing::UserSpeech;
    // "Hello?" with no transcript yet when the short-greeting silence ran out.
    let (session, _audio) =
        listening_session(vec![UserSpeech::new(0.5, 1.2, "Hello?").stt_delay(3.0)]).await;
    let amd = Amd::start(
        &session,
        Some(Arc::new(FakeLlm::new(vec![]))),
        AmdOptions::default(),
        None,
    )
    .unwrap();
    let verdict = amd.execute().await.unwrap();
    assert_eq!(
        (verdict.category, verdict.reason),
        (AmdCategory::Human, AmdReason::ShortGreeting)
    );
    session.close().await;

    let menu = "Thanks for calling Acme. For billing press 1. For support press 2.";
    let (session, _audio) = listening_session(vec![UserSpeech::new(0.5, 5.0, menu)]).await;
    let classifier = FakeLlm::new(vec![FakeLlmResponse::tool_call(
        "save_prediction",
        r#"{"label": "machine-ivr"}"#,
        ms(200),
    )]);
    let sender = MemoryDtmfSender::new();
    let amd = Amd::start(
        &session,
        Some(Arc::new(classifier)),
        AmdOptions::default(),
        Some(Arc::new(sender)),
    )
    .unwrap();
    let verdict = amd.execute().await.unwrap();
    assert_eq!(verdict.category, AmdCategory::MachineIvr);
    let ivr = IvrDetection::of(&session).expect("navigation started on the menu");
    assert!(session
        .current_agent()
        .unwrap()
        .tools()
        .iter()
        .any(|t| t.name() == "send_dtmf_events"));
    session.close().await;
    tokio::time::sleep(ms(10)).await;
    assert!(!ivr.is_running());
}

#[tokio::test(start_paused = true)]
async fn hold_music_loops_on_the_background_player_while_on_hold() {
    use livekit_agents::audio::AudioMixer;
    use livekit_agents::background_audio::BackgroundAudioPlayer;
    let mixer = AudioMixer::new(48_000, 1);
    let player = BackgroundAudioPlayer::new();
    player.start(mixer.clone(), None).await.unwrap();
    let hold = PlayerHoldAudio::hold_music(player.clone());
    assert!(!mixer.is_active());
    hold.start().await;
    // The clip is decoded off the runtime, then fed in chunks: take 10 ms blocks at pace.
    let mut played = 0;
    for _ in 0..1500 {
        tokio::time::sleep(ms(10)).await;
        if mixer.next_block(480).is_some() {
            played += 1;
        }
    }
    // Longer than the 12.8 s clip: it loops and still plays.
    assert!(played > 1300, "{played}");
    assert!(mixer.is_active());
    hold.stop().await;
    for _ in 0..100 {
        tokio::time::sleep(ms(10)).await;
        mixer.next_block(480);
    }
    assert!(!mixer.is_active(), "the caller is back: the music stopped");
    player.close().await;
}
