//! Live video in a session: sampled frames reach the next user turn as image content (once),
//! and the sampler option is honoured. Frames are synthetic; no WebRTC.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use livekit_agents::llm::{ChatContent, ChatItem, ChatRole, ImageSource};
use livekit_agents::room_logic::video::{VideoFrame, VideoSampler};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
use livekit_agents::voice::{Agent, AgentSession, SessionIo};

fn frame(w: u32, h: u32) -> VideoFrame {
    VideoFrame::Rgb8 {
        width: w,
        height: h,
        data: vec![200; (w * h * 3) as usize],
    }
}

fn images_in_last_user_message(llm: &FakeLlm, request: usize) -> Vec<(u32, u32)> {
    let req = &llm.requests()[request];
    let msg = req
        .chat_ctx
        .items()
        .iter()
        .rev()
        .find_map(|i| match i {
            ChatItem::Message(m) if m.role == ChatRole::User => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    msg.content
        .iter()
        .filter_map(|c| match c {
            ChatContent::Image(img) => match &img.image {
                ImageSource::Bytes { data, mime_type } => {
                    assert_eq!(mime_type, "image/jpeg");
                    let decoded = image::load_from_memory(data).unwrap();
                    Some((decoded.width(), decoded.height()))
                }
                ImageSource::Url { .. } => None,
            },
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_latest_sampled_frame_goes_with_the_next_turn() {
    let llm = FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::text(
        "I see a grey picture.",
        Duration::from_millis(10),
    ));
    let session = AgentSession::builder().llm(Arc::new(llm.clone())).build();
    session
        .start(Agent::new("Describe what you see."), SessionIo::default())
        .await
        .unwrap();
    // The default sampler keeps the first frame, then one per ~3.3 s while the user is silent.
    assert!(session.push_video_frame(frame(1920, 1080)).await.unwrap());
    assert!(!session.push_video_frame(frame(1920, 1080)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(3400)).await;
    assert!(session.push_video_frame(frame(640, 480)).await.unwrap());

    session.run("What do you see?").await.unwrap();
    // Only the latest frame, fitted into 1024x1024 (a small one is not enlarged).
    assert_eq!(images_in_last_user_message(&llm, 0), vec![(640, 480)]);
    // Attached once: the next turn without a new frame has no image.
    session.run("And now?").await.unwrap();
    assert!(images_in_last_user_message(&llm, 1).is_empty());

    session.close().await;
}

struct EveryOther(bool);

impl VideoSampler for EveryOther {
    fn should_sample(&mut self, _now: tokio::time::Instant, _speaking: bool) -> bool {
        self.0 = !self.0;
        self.0
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_sampler_and_bad_frames() {
    let llm =
        FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::text("ok", Duration::from_millis(10)));
    let session = AgentSession::builder()
        .llm(Arc::new(llm.clone()))
        .video_sampler(EveryOther(false))
        .build();
    session
        .start(Agent::new("Describe."), SessionIo::default())
        .await
        .unwrap();
    let kept: Vec<bool> =
        futures::future::join_all((0..4).map(|_| session.push_video_frame(frame(64, 64))))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    assert_eq!(kept.iter().filter(|k| **k).count(), 2);
    // A frame whose data does not match its size is an error, not a panic.
    let bad = VideoFrame::Rgb8 {
        width: 64,
        height: 64,
        data: vec![0; 10],
    };
    assert!(session.push_video_frame(bad).await.is_err());
    // forward_video takes a stream and stops with the session.
    let handle = session.forward_video(futures::stream::iter(vec![frame(32, 32), frame(32, 32)]));
    handle.await.unwrap();
    session.run("Look").await.unwrap();
    assert_eq!(images_in_last_user_message(&llm, 0), vec![(32, 32)]);
    session.close().await;
}
