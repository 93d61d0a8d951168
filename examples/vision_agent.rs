//! An agent that sees: live video from the user's camera or screen share goes with each turn.
//!
//! With `RoomOptions { video_input: true, .. }` the room's latest camera or screen-share track of
//! the linked participant is sampled (about 1 frame/s while the user speaks, one every ~3 s
//! otherwise), each kept frame is fitted into 1024x1024 and JPEG-encoded, and the latest one is
//! attached to the user's next turn as an image for the LLM (a vision model: gpt-4o-mini here).
//! The session is text-only (chat in, text out) to keep the example small; add STT/TTS as in
//! `basic_agent` for voice.
//!
//! In `console` mode there is no camera: set `VISION_IMAGE` to a JPEG file and it is offered
//! to the session as a camera frame every second (the sampler still decides which are kept).
//!
//! Environment: `OPENAI_API_KEY`; optional `VISION_IMAGE` (console); for `dev`, `start` and
//! `connect` also `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (and the `room`
//! feature).
//!
//! ```text
//! VISION_IMAGE=photo.jpg cargo run --example vision_agent -- console --text
//! cargo run --example vision_agent --features room -- dev
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use livekit_agents::cli;
use livekit_agents::room_logic::video::VideoFrame;
use livekit_agents::room_logic::RoomOptions;
use livekit_agents::voice::{Agent, AgentSession};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_openai as openai;

/// `VISION_IMAGE` decoded as an RGB frame, if set.
fn console_image() -> anyhow::Result<Option<VideoFrame>> {
    let Ok(path) = std::env::var("VISION_IMAGE") else {
        return Ok(None);
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    let rgb = image::load_from_memory(&bytes)
        .with_context(|| format!("{path} is not a JPEG image"))?
        .to_rgb8();
    Ok(Some(VideoFrame::Rgb8 {
        width: rgb.width(),
        height: rgb.height(),
        data: rgb.into_raw(),
    }))
}

async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    let llm = openai::Llm::new(openai::LlmOptions {
        model: "gpt-4o-mini".into(),
        ..Default::default()
    })?;
    let session = AgentSession::builder().llm(Arc::new(llm)).build();
    let io = ctx
        .session_io_with(
            &session,
            RoomOptions {
                audio_input: false,
                audio_output: false,
                video_input: true,
                ..Default::default()
            },
        )
        .await?;
    let agent = Agent::new(
        "You are a helpful assistant that can see the user's camera or screen. When the user's \
         message has an image, use it to answer; say so when you cannot see anything.",
    );
    session.start(agent, io).await?;

    // Console: a still image stands in for the camera.
    if let Some(frame) = console_image()? {
        let frames = futures::stream::unfold(frame, |frame| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((frame.clone(), frame))
        });
        session.forward_video(frames);
    }
    Ok(())
}

fn main() -> ExitCode {
    cli::run_app(WorkerOptions::new(entrypoint))
}
