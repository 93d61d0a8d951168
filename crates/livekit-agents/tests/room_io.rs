//! RoomIO against the in-memory room (`testing::MemoryRoom`), on tokio's paused clock: which
//! participant is linked and relinked, the agent track and its subscription gate, `lk.chat`,
//! `lk.transcription` streams and their attributes, `lk.agent.state`, pre-connect audio and
//! its timeouts, close_on_disconnect, delete_room_on_close, DTMF.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use livekit_agents::audio::AudioFrame;
use livekit_agents::llm::{ChatItem, ChatRole};
use livekit_agents::room_logic::{
    LeaveReason, ParticipantInfo, ParticipantKind, RoomBackend, RoomEvent, RoomInputEvent,
    RoomInputEvents, RoomIo, RoomOptions, TrackInfo, ATTR_AGENT_STATE, ATTR_PUBLISH_ON_BEHALF,
    ATTR_SEGMENT_ID, ATTR_TRANSCRIBED_TRACK_ID, ATTR_TRANSCRIPTION_FINAL, TOPIC_CHAT,
    TOPIC_PRE_CONNECT_AUDIO, TOPIC_TRANSCRIPTION,
};
use livekit_agents::testing::{
    FakeLlm, FakeLlmResponse, FakeStt, FakeTts, FakeVad, MemoryRoom, UserSpeech,
};
use livekit_agents::voice::{Agent, AgentSession, CloseReason, SessionEvent};

type Frames = Pin<Box<dyn Stream<Item = AudioFrame> + Send>>;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

async fn settle() {
    tokio::time::sleep(ms(20)).await;
}

/// A participant with a microphone track `TR_<identity>`.
fn with_mic(identity: &str, kind: ParticipantKind) -> ParticipantInfo {
    let mut p = ParticipantInfo::new(identity, kind);
    p.tracks
        .push(TrackInfo::microphone(format!("TR_{identity}")));
    p
}

/// `len` ms of 24 kHz mono audio, every sample `value`.
fn tone(len: u64, value: i16) -> AudioFrame {
    AudioFrame::new(vec![value; 24 * len as usize], 24_000, 1).unwrap()
}

async fn start(
    room: &MemoryRoom,
    options: RoomOptions,
) -> (RoomIo, Option<Frames>, RoomInputEvents) {
    let (io, ports) = RoomIo::start(Arc::new(room.clone()), options)
        .await
        .unwrap();
    (io, ports.audio_input.map(|a| a.into_stream()), ports.events)
}

/// The events sent so far.
fn drain(events: &mut RoomInputEvents) -> Vec<RoomInputEvent> {
    let mut out = Vec::new();
    while let Some(Some(ev)) = events.next().now_or_never() {
        out.push(ev);
    }
    out
}

/// The distinct sample values `input` delivers (in order, consecutive repeats merged) up to
/// and including the first frame holding `last`.
async fn values_until(input: &mut Frames, last: i16) -> Vec<i16> {
    let mut values: Vec<i16> = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), input.next())
            .await
            .expect("audio input stalled")
            .expect("audio input ended");
        for s in &frame.data {
            if values.last() != Some(s) {
                values.push(*s);
            }
        }
        if frame.data.contains(&last) {
            return values;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn memory_room_reports_events_in_the_livekit_order() {
    let room = MemoryRoom::new("r", "agent");
    let mut events = room.subscribe();
    room.join(with_mic("alice", ParticipantKind::Standard));
    room.leave("alice", LeaveReason::ClientInitiated);
    let mut names = Vec::new();
    while let Some(Some(ev)) = events.recv().now_or_never() {
        names.push(match ev {
            RoomEvent::ParticipantConnected(_) => "connected",
            RoomEvent::TrackPublished { .. } => "published",
            RoomEvent::TrackSubscribed { .. } => "subscribed",
            RoomEvent::TrackUnsubscribed { .. } => "unsubscribed",
            RoomEvent::TrackUnpublished { .. } => "unpublished",
            RoomEvent::ParticipantDisconnected { .. } => "disconnected",
            _ => "other",
        });
    }
    assert_eq!(
        names,
        [
            "connected",
            "published",
            "subscribed",
            "unsubscribed",
            "unpublished",
            "disconnected"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn links_the_first_participant_of_an_accepted_kind() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("other-agent", ParticipantKind::Agent));
    let mut avatar = with_mic("avatar", ParticipantKind::Standard);
    avatar
        .attributes
        .insert(ATTR_PUBLISH_ON_BEHALF.into(), "agent".into());
    room.join(avatar);
    room.join(with_mic("alice", ParticipantKind::Standard));
    let (io, input, mut events) = start(&room, RoomOptions::default()).await;
    let mut input = input.unwrap();
    assert_eq!(io.linked_participant().as_deref(), Some("alice"));
    assert_eq!(
        drain(&mut events),
        [RoomInputEvent::LinkedParticipantChanged(Some(
            "alice".into()
        ))]
    );

    // Alice's microphone is the session's input, in 50 ms frames.
    room.push_audio("avatar", "TR_avatar", tone(100, 9));
    room.push_audio("alice", "TR_alice", tone(100, 5));
    let frame = tokio::time::timeout(Duration::from_secs(5), input.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((frame.sample_rate, frame.num_channels), (24_000, 1));
    assert_eq!(frame.samples_per_channel, 1_200);
    assert!(frame.data.iter().all(|s| *s == 5));

    // The first one stays linked.
    room.join(with_mic("bob", ParticipantKind::Standard));
    settle().await;
    assert_eq!(io.linked_participant().as_deref(), Some("alice"));
    assert!(drain(&mut events).is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_explicit_identity_links_only_that_participant() {
    let room = MemoryRoom::new("r", "agent");
    let options = RoomOptions {
        participant_identity: Some("caller".into()),
        ..Default::default()
    };
    let (io, _input, _events) = start(&room, options).await;
    room.join(with_mic("alice", ParticipantKind::Standard));
    settle().await;
    assert_eq!(io.linked_participant(), None);
    room.join(with_mic("caller", ParticipantKind::Sip));
    settle().await;
    assert_eq!(io.linked_participant().as_deref(), Some("caller"));
}

#[tokio::test(start_paused = true)]
async fn a_participant_that_left_is_relinked_only_when_it_comes_back() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    let (io, input, mut events) = start(&room, RoomOptions::default()).await;
    let mut input = input.unwrap();
    drain(&mut events);

    // A network loss is not final: the session stays, input is unlinked.
    room.leave("alice", LeaveReason::Other);
    settle().await;
    assert_eq!(io.linked_participant(), None);
    assert_eq!(
        drain(&mut events),
        [RoomInputEvent::LinkedParticipantChanged(None)]
    );

    // Someone else joining is not linked (the reference keeps the identity).
    room.join(with_mic("bob", ParticipantKind::Standard));
    settle().await;
    assert_eq!(io.linked_participant(), None);

    // Alice back, with a new track: linked again, her new track is the input.
    let mut alice = ParticipantInfo::new("alice", ParticipantKind::Standard);
    alice.tracks.push(TrackInfo::microphone("TR_alice_2"));
    room.join(alice);
    settle().await;
    assert_eq!(io.linked_participant().as_deref(), Some("alice"));
    assert_eq!(
        drain(&mut events),
        [RoomInputEvent::LinkedParticipantChanged(Some(
            "alice".into()
        ))]
    );
    room.push_audio("bob", "TR_bob", tone(100, 9));
    room.push_audio("alice", "TR_alice_2", tone(100, 3));
    // Perhaps the old track's end-of-track silence, then alice's new audio; never bob's.
    let values = values_until(&mut input, 3).await;
    assert!(!values.contains(&9), "{values:?}");
}

#[tokio::test(start_paused = true)]
async fn set_participant_switches_the_linked_participant() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    room.join(with_mic("bob", ParticipantKind::Standard));
    let (io, input, _events) = start(&room, RoomOptions::default()).await;
    let mut input = input.unwrap();
    assert_eq!(io.linked_participant().as_deref(), Some("alice"));

    io.set_participant(Some("bob".into()));
    assert_eq!(io.linked_participant().as_deref(), Some("bob"));
    room.push_audio("alice", "TR_alice", tone(100, 1));
    room.push_audio("bob", "TR_bob", tone(100, 2));
    assert_eq!(values_until(&mut input, 2).await, [2]);

    // Someone not here yet: linked when they join.
    io.set_participant(Some("carol".into()));
    assert_eq!(io.linked_participant(), None);
    room.join(with_mic("carol", ParticipantKind::Sip));
    settle().await;
    assert_eq!(io.linked_participant().as_deref(), Some("carol"));
}

#[tokio::test(start_paused = true)]
async fn without_auto_subscribe_the_linked_microphone_is_subscribed() {
    let room = MemoryRoom::new("r", "agent").without_auto_subscribe();
    room.join(with_mic("alice", ParticipantKind::Standard));
    room.join(with_mic("bob", ParticipantKind::Standard));
    let (_io, input, _events) = start(&room, RoomOptions::default()).await;
    settle().await;
    assert_eq!(
        room.subscription_requests(),
        [("alice".to_string(), "TR_alice".to_string(), true)]
    );
    room.push_audio("alice", "TR_alice", tone(50, 4));
    assert_eq!(values_until(&mut input.unwrap(), 4).await, [4]);
}

#[tokio::test(start_paused = true)]
async fn agent_audio_waits_for_the_first_subscriber() {
    let room = MemoryRoom::new("r", "agent");
    room.join_without_listening(with_mic("alice", ParticipantKind::Standard));
    let (io, ports) = RoomIo::start(Arc::new(room.clone()), RoomOptions::default())
        .await
        .unwrap();
    let tracks = room.local_tracks();
    assert_eq!(tracks.len(), 1);
    assert_eq!(tracks[0].name, "roomio_audio");
    assert_eq!((tracks[0].sample_rate, tracks[0].num_channels), (24_000, 1));
    let sid = tracks[0].sid.clone();

    let output = ports.audio_output.unwrap();
    let _keep = output.clone(); // the session keeps its output
    let writer = tokio::spawn(async move {
        for _ in 0..10 {
            output.capture_frame(tone(20, 500)).await;
        }
        output.flush();
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(room.captured_audio(&sid).is_empty(), "played into nobody");
    assert!(!io.audio_subscription().is_open());

    let subscribed_at = tokio::time::Instant::now();
    room.listen("alice");
    writer.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(io.audio_subscription().is_open());
    let captured = room.captured_audio(&sid);
    let total: Duration = captured.iter().map(|(_, f)| f.duration()).sum();
    assert_eq!(total, ms(200));
    assert!(captured.iter().all(|(at, _)| *at >= subscribed_at));
}

/// A text session started through RoomIO on `room`.
async fn text_session(
    room: &MemoryRoom,
    options: RoomOptions,
    llm: FakeLlm,
) -> (AgentSession, RoomIo) {
    let session = AgentSession::builder().llm(Arc::new(llm)).build();
    let (io, ports) = RoomIo::start_for_session(Arc::new(room.clone()), options, &session)
        .await
        .unwrap();
    session.start(Agent::new("Be brief."), ports).await.unwrap();
    (session, io)
}

fn messages(session: &AgentSession) -> Vec<(ChatRole, String)> {
    session
        .history()
        .items()
        .iter()
        .filter_map(|i| match i {
            ChatItem::Message(m) => Some((m.role, m.text_content().unwrap_or_default())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn chat_text_from_the_linked_participant_is_answered_with_a_transcription() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    room.join(with_mic("bob", ParticipantKind::Standard));
    let llm = FakeLlm::new(vec![FakeLlmResponse::text("Hello there.", ms(100))]);
    let (session, _io) = text_session(&room, RoomOptions::default(), llm.clone()).await;

    room.send_text_from("bob", TOPIC_CHAT, "I am not linked");
    room.send_text_from("alice", TOPIC_CHAT, "Hi");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(llm.request_count(), 1);
    assert_eq!(
        messages(&session),
        [
            (ChatRole::User, "Hi".to_string()),
            (ChatRole::Assistant, "Hello there.".to_string())
        ]
    );

    let agent_track = room.local_tracks()[0].sid.clone();
    let streams = room.text_streams_on(TOPIC_TRANSCRIPTION);
    assert_eq!(streams.len(), 1, "{streams:?}");
    let s = &streams[0];
    assert_eq!(s.sender_identity, "agent");
    assert_eq!(s.text, "Hello there.");
    assert!(s.attributes[ATTR_SEGMENT_ID].starts_with("SG_"));
    assert_eq!(s.attributes[ATTR_TRANSCRIPTION_FINAL], "false");
    assert_eq!(s.attributes[ATTR_TRANSCRIBED_TRACK_ID], agent_track);
    assert!(s.closed);
    assert_eq!(s.trailer[ATTR_TRANSCRIPTION_FINAL], "true");
    assert_eq!(s.trailer[ATTR_TRANSCRIBED_TRACK_ID], agent_track);
}

#[tokio::test(start_paused = true)]
async fn text_input_off_ignores_chat() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    let llm = FakeLlm::new(vec![FakeLlmResponse::text("Hello there.", ms(100))]);
    let options = RoomOptions {
        text_input: false,
        ..Default::default()
    };
    let (_session, _io) = text_session(&room, options, llm.clone()).await;
    room.send_text_from("alice", TOPIC_CHAT, "Hi");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(llm.request_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_agent_state_goes_to_lk_agent_state() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    let llm = FakeLlm::new(vec![FakeLlmResponse::text("Hello there.", ms(100))]);
    let (session, _io) = text_session(&room, RoomOptions::default(), llm).await;
    settle().await;
    assert_eq!(room.local_attributes()[ATTR_AGENT_STATE], "listening");
    room.send_text_from("alice", TOPIC_CHAT, "Hi");
    tokio::time::sleep(Duration::from_secs(2)).await;
    session.close().await;
    settle().await;
    let states = room.attribute_history(ATTR_AGENT_STATE);
    assert_eq!(states.first().map(String::as_str), Some("listening"));
    assert!(states.iter().any(|s| s == "thinking"), "{states:?}");
    assert_eq!(states.last().map(String::as_str), Some("initializing"));
    // Only changes are published.
    assert!(states.windows(2).all(|w| w[0] != w[1]), "{states:?}");
    let known = ["initializing", "idle", "listening", "thinking", "speaking"];
    assert!(states.iter().all(|s| known.contains(&s.as_str())));
}

async fn close_reason(mut rx: livekit_agents::types::EventStream<SessionEvent>) -> CloseReason {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(Ok(SessionEvent::Close { reason, .. }))) => return reason,
            Ok(Some(Ok(_))) => {}
            other => panic!("no close: {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_linked_participant_leaving_for_good_closes_the_session() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    room.join(with_mic("bob", ParticipantKind::Standard));
    let (session, io) = text_session(&room, RoomOptions::default(), FakeLlm::new(vec![])).await;
    let rx = session.events();
    // Someone else leaving changes nothing.
    room.leave("bob", LeaveReason::ClientInitiated);
    settle().await;
    assert!(session.is_running());
    room.leave("alice", LeaveReason::ClientInitiated);
    assert_eq!(close_reason(rx).await, CloseReason::ParticipantDisconnected);
    io.wait_closed().await;
    assert!(!room.is_deleted());
}

#[tokio::test(start_paused = true)]
async fn close_on_disconnect_off_keeps_the_session() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    let options = RoomOptions {
        close_on_disconnect: false,
        ..Default::default()
    };
    let (session, io) = text_session(&room, options, FakeLlm::new(vec![])).await;
    room.leave("alice", LeaveReason::ClientInitiated);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(session.is_running());
    assert_eq!(io.linked_participant(), None);
}

#[tokio::test(start_paused = true)]
async fn delete_room_on_close_deletes_the_room() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    let options = RoomOptions {
        delete_room_on_close: true,
        ..Default::default()
    };
    let (session, io) = text_session(&room, options, FakeLlm::new(vec![])).await;
    assert!(!room.is_deleted());
    session.close().await;
    io.wait_closed().await;
    assert!(room.is_deleted());
}

#[tokio::test(start_paused = true)]
async fn the_room_disconnecting_closes_the_session() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    let (session, io) = text_session(&room, RoomOptions::default(), FakeLlm::new(vec![])).await;
    let rx = session.events();
    room.drop_connection("signal lost");
    assert_eq!(close_reason(rx).await, CloseReason::UserInitiated);
    io.wait_closed().await;
}

#[tokio::test(start_paused = true)]
async fn dtmf_reaches_the_session() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("caller", ParticipantKind::Sip));
    let (session, _io) = text_session(&room, RoomOptions::default(), FakeLlm::new(vec![])).await;
    let mut rx = session.events();
    room.dtmf_from("caller", 11, "#");
    let (code, digit, participant_identity) = loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let SessionEvent::SipDtmfReceived {
            code,
            digit,
            participant_identity,
        } = ev
        {
            break (code, digit, participant_identity);
        }
    };
    assert_eq!((code, digit.as_str()), (11, "#"));
    assert_eq!(participant_identity.as_deref(), Some("caller"));
}

#[tokio::test(start_paused = true)]
async fn linked_participant_attribute_changes_are_reported() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("caller", ParticipantKind::Sip));
    room.join(with_mic("other", ParticipantKind::Standard));
    let (io, _input, mut events) = start(&room, RoomOptions::default()).await;
    drain(&mut events);
    let changed = HashMap::from([("sip.callStatus".to_string(), "active".to_string())]);
    room.set_participant_attributes("other", changed.clone());
    room.set_participant_attributes("caller", changed.clone());
    settle().await;
    assert_eq!(
        drain(&mut events),
        [RoomInputEvent::LinkedParticipantAttributesChanged { changed }]
    );
    let caller = io.linked_participant_info().unwrap();
    assert_eq!(caller.kind, ParticipantKind::Sip);
    assert_eq!(caller.attributes["sip.callStatus"], "active");
}

#[tokio::test(start_paused = true)]
async fn a_voice_turn_through_the_room() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    let speeches = vec![UserSpeech::new(0.5, 1.5, "hello agent")];
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speeches.clone())))
        .stt(Arc::new(FakeStt::new(speeches)))
        .llm(Arc::new(FakeLlm::new(vec![FakeLlmResponse::text(
            "Hi Alice.",
            ms(100),
        )])))
        .tts(Arc::new(FakeTts::new(ms(50), ms(800))))
        .build();
    let (_io, ports) =
        RoomIo::start_for_session(Arc::new(room.clone()), RoomOptions::default(), &session)
            .await
            .unwrap();
    session.start(Agent::new("Be brief."), ports).await.unwrap();
    // Alice's microphone: 6 s of audio in 20 ms frames, at real-time pace.
    let mic = room.clone();
    tokio::spawn(async move {
        for _ in 0..300 {
            mic.push_audio("alice", "TR_alice", tone(20, 100));
            tokio::time::sleep(ms(20)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(6)).await;

    // The user's transcript went out on behalf of alice, naming her track.
    let user: Vec<_> = room
        .text_streams_on(TOPIC_TRANSCRIPTION)
        .into_iter()
        .filter(|s| s.sender_identity == "alice")
        .collect();
    let last = user.last().expect("no user transcript");
    assert_eq!(last.text, "hello agent");
    assert_eq!(last.attributes[ATTR_TRANSCRIPTION_FINAL], "true");
    assert_eq!(last.attributes[ATTR_TRANSCRIBED_TRACK_ID], "TR_alice");
    // The reply was played into the room and transcribed.
    let agent_track = room.local_tracks()[0].sid.clone();
    let played: Duration = room
        .captured_audio(&agent_track)
        .iter()
        .map(|(_, f)| f.duration())
        .sum();
    assert!(played >= ms(800), "played {played:?}");
    let agent: Vec<_> = room
        .text_streams_on(TOPIC_TRANSCRIPTION)
        .into_iter()
        .filter(|s| s.sender_identity == "agent")
        .collect();
    assert_eq!(agent.len(), 1);
    assert_eq!(agent[0].text, "Hi Alice.");
    let states = room.attribute_history(ATTR_AGENT_STATE);
    assert!(states.iter().any(|s| s == "speaking"), "{states:?}");
}

fn pre_connect_attributes(track: &str) -> HashMap<String, String> {
    HashMap::from([
        ("sampleRate".to_string(), "24000".to_string()),
        ("channels".to_string(), "1".to_string()),
        ("trackId".to_string(), track.to_string()),
    ])
}

fn pcm(len_ms: u64, value: i16) -> Vec<u8> {
    (0..24 * len_ms).flat_map(|_| value.to_le_bytes()).collect()
}

fn with_pre_connect_mic(identity: &str) -> ParticipantInfo {
    let mut p = ParticipantInfo::new(identity, ParticipantKind::Standard);
    p.tracks
        .push(TrackInfo::microphone(format!("TR_{identity}")).with_pre_connect_buffer());
    p
}

#[tokio::test(start_paused = true)]
async fn pre_connect_audio_plays_before_the_live_audio() {
    let room = MemoryRoom::new("r", "agent");
    let (_io, input, _events) = start(&room, RoomOptions::default()).await;
    let mut input = input.unwrap();
    let stream = room.open_byte_stream_from(
        "alice",
        TOPIC_PRE_CONNECT_AUDIO,
        "audio/pcm",
        pre_connect_attributes("TR_alice"),
    );
    room.join(with_pre_connect_mic("alice"));
    settle().await;
    // Live audio arrives while the recording is still coming: it is held, not lost.
    assert_eq!(room.push_audio("alice", "TR_alice", tone(100, 100)), 1);
    stream.write(&pcm(150, 7));
    stream.write(&pcm(50, 7));
    stream.close();
    assert_eq!(values_until(&mut input, 100).await, [7, 100]);
}

#[tokio::test(start_paused = true)]
async fn pre_connect_audio_not_received_in_time_is_dropped() {
    let room = MemoryRoom::new("r", "agent");
    let (_io, input, _events) = start(&room, RoomOptions::default()).await;
    let mut input = input.unwrap();
    let stream = room.open_byte_stream_from(
        "alice",
        TOPIC_PRE_CONNECT_AUDIO,
        "audio/pcm",
        pre_connect_attributes("TR_alice"),
    );
    stream.write(&pcm(200, 7));
    room.join(with_pre_connect_mic("alice"));
    settle().await;
    assert_eq!(room.push_audio("alice", "TR_alice", tone(100, 100)), 1);
    // Never closed: after the 3 s timeout the held live audio flows, without the recording.
    assert_eq!(values_until(&mut input, 100).await, [100]);
    drop(stream);
}

#[tokio::test(start_paused = true)]
async fn a_pre_connect_recording_older_than_a_second_is_dropped() {
    let room = MemoryRoom::new("r", "agent");
    let (_io, input, _events) = start(&room, RoomOptions::default()).await;
    let mut input = input.unwrap();
    let stream = room.open_byte_stream_from(
        "alice",
        TOPIC_PRE_CONNECT_AUDIO,
        "audio/pcm",
        pre_connect_attributes("TR_alice"),
    );
    stream.write(&pcm(200, 7));
    stream.close();
    tokio::time::sleep(Duration::from_secs(2)).await;
    room.join(with_pre_connect_mic("alice"));
    settle().await;
    assert_eq!(room.push_audio("alice", "TR_alice", tone(100, 100)), 1);
    assert_eq!(values_until(&mut input, 100).await, [100]);
}

#[tokio::test(start_paused = true)]
async fn a_republished_agent_track_keeps_gate_and_transcripts_in_step() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    let llm = FakeLlm::new(vec![FakeLlmResponse::text("Hello there.", ms(100))]);
    let (_session, io) = text_session(&room, RoomOptions::default(), llm).await;
    settle().await;
    assert!(io.audio_subscription().is_open());
    let old = room.local_tracks()[0].sid.clone();
    let new = room.republish_local_track(&old).unwrap();
    settle().await;
    assert!(io.audio_subscription().is_open());
    room.send_text_from("alice", TOPIC_CHAT, "Hi");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let streams = room.text_streams_on(TOPIC_TRANSCRIPTION);
    assert_eq!(streams[0].attributes[ATTR_TRANSCRIBED_TRACK_ID], new);
}

#[tokio::test(start_paused = true)]
async fn chat_text_is_capped_and_only_taken_from_the_linked_participant() {
    let room = MemoryRoom::new("r", "agent");
    room.join(with_mic("alice", ParticipantKind::Standard));
    room.join(with_mic("bob", ParticipantKind::Standard));
    let (_io, _input, mut events) = start(&room, RoomOptions::default()).await;
    drain(&mut events);
    room.send_text_from("bob", TOPIC_CHAT, "not linked");
    room.send_text_from("alice", "some.other.topic", "not chat");
    // 100,000 bytes of two-byte characters: cut at 64 KiB, on a character boundary.
    room.send_text_from("alice", TOPIC_CHAT, &"é".repeat(50_000));
    settle().await;
    let events = drain(&mut events);
    let [RoomInputEvent::UserText {
        text,
        participant_identity,
    }] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(participant_identity, "alice");
    assert_eq!(text.len(), 64 * 1024);
    assert!(text.chars().all(|c| c == 'é'));
}

#[tokio::test(start_paused = true)]
async fn video_input_follows_the_linked_participants_latest_camera() {
    use livekit_agents::room_logic::video::VideoFrame;
    let frame = |v: u8| VideoFrame::Rgb8 {
        width: 2,
        height: 2,
        data: vec![v; 12],
    };
    let room = MemoryRoom::new("r", "agent");
    let mut alice = with_mic("alice", ParticipantKind::Standard);
    alice.tracks.push(TrackInfo::camera("TR_alice_cam"));
    room.join(alice);
    let mut bob = with_mic("bob", ParticipantKind::Standard);
    bob.tracks.push(TrackInfo::camera("TR_bob_cam"));
    room.join(bob);
    let options = RoomOptions {
        video_input: true,
        ..Default::default()
    };
    let (_io, ports) = RoomIo::start(Arc::new(room.clone()), options)
        .await
        .unwrap();
    let mut video = ports.video_input.unwrap();
    settle().await;
    assert_eq!(room.push_video("bob", "TR_bob_cam", frame(9)), 0);
    assert_eq!(room.push_video("alice", "TR_alice_cam", frame(1)), 1);
    assert_eq!(video.next().await, Some(frame(1)));

    // A newer camera (or screen share) of the linked participant replaces the first.
    room.publish_track("alice", TrackInfo::camera("TR_alice_cam_2"));
    settle().await;
    assert_eq!(room.push_video("alice", "TR_alice_cam", frame(2)), 0);
    assert_eq!(room.push_video("alice", "TR_alice_cam_2", frame(3)), 1);
    assert_eq!(video.next().await, Some(frame(3)));

    // It goes away: the remaining camera is taken again.
    room.unpublish_track("alice", "TR_alice_cam_2");
    settle().await;
    assert_eq!(room.push_video("alice", "TR_alice_cam", frame(4)), 1);
    assert_eq!(video.next().await, Some(frame(4)));
}
