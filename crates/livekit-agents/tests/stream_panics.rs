//! Issue 15: a model stream built from channels (`from_channel(s)`: adapters, fallbacks, fakes,
//! plugins' own tasks) whose producing task panics ends with `ApiError::TaskPanicked`, never
//! cleanly; a producer that ends normally still ends the stream cleanly.

#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use livekit_agents::audio::AudioFrame;
use livekit_agents::llm::{ChatChunk, LlmStream};
use livekit_agents::stt::{SpeechEvent, SpeechEventType, SpeechStream};
use livekit_agents::tts::{ChunkedStream, SynthesizeStream, SynthesizedAudio};
use livekit_agents::types::ApiError;
use livekit_agents::vad::{VadEvent, VadEventType, VadStream};
use tokio::sync::mpsc;

fn audio() -> SynthesizedAudio {
    SynthesizedAudio {
        frame: AudioFrame::silence(24_000, 1, 240),
        request_id: "r".into(),
        segment_id: "s".into(),
        is_final: false,
        delta_text: String::new(),
        timed_words: Vec::new(),
    }
}

fn panicked(item: Option<Result<impl std::fmt::Debug, ApiError>>) -> bool {
    matches!(item, Some(Err(ApiError::TaskPanicked { message: ref m })) if m == "producer bug")
}

#[tokio::test]
async fn llm_stream_from_channel() {
    for panics in [true, false] {
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            tx.send(Ok(ChatChunk::text("id", "Hello"))).await.unwrap();
            assert!(!panics, "producer bug");
        });
        let mut stream = LlmStream::from_channel(rx, Some(task));
        assert!(stream.next_chunk().await.unwrap().is_ok());
        if panics {
            assert!(panicked(stream.next_chunk().await));
        }
        assert!(stream.next_chunk().await.is_none());
    }
    // `collect` sees the error too (it used to return Ok with the partial text).
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        tx.send(Ok(ChatChunk::text("id", "Hel"))).await.unwrap();
        panic!("producer bug");
    });
    let err = LlmStream::from_channel(rx, Some(task))
        .collect()
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::TaskPanicked { .. }), "{err:?}");
}

#[tokio::test]
async fn speech_stream_from_channels() {
    for panics in [true, false] {
        let (in_tx, _in_rx) = livekit_agents::model_input::channel();
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            tx.send(Ok(SpeechEvent::new(SpeechEventType::StartOfSpeech)))
                .await
                .unwrap();
            assert!(!panics, "producer bug");
        });
        let mut stream = SpeechStream::from_channels(in_tx, rx, Some(task));
        assert!(stream.next_event().await.unwrap().is_ok());
        if panics {
            // Through the `Stream` impl as well as `next_event`.
            assert!(panicked(stream.next().await));
        }
        assert!(stream.next_event().await.is_none());
    }
}

#[tokio::test]
async fn synthesize_and_chunked_streams_from_channels() {
    for panics in [true, false] {
        let (in_tx, _in_rx) = livekit_agents::model_input::channel();
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            tx.send(Ok(audio())).await.unwrap();
            assert!(!panics, "producer bug");
        });
        let mut stream = SynthesizeStream::from_channels(in_tx, rx, Some(task));
        assert!(stream.next_audio().await.unwrap().is_ok());
        if panics {
            assert!(panicked(stream.next_audio().await));
        }
        assert!(stream.next_audio().await.is_none());

        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            tx.send(Ok(audio())).await.unwrap();
            assert!(!panics, "producer bug");
        });
        let collected = ChunkedStream::from_channel(rx, Some(task)).collect().await;
        match collected {
            Err(ApiError::TaskPanicked { message: m }) => assert!(panics && m == "producer bug"),
            Ok(frame) => assert!(!panics && frame.samples_per_channel == 240),
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[tokio::test]
async fn vad_stream_reports_a_panicked_detector() {
    for panics in [true, false] {
        let (in_tx, _in_rx) = livekit_agents::model_input::channel();
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            tx.send(VadEvent::new(VadEventType::StartOfSpeech))
                .await
                .unwrap();
            assert!(!panics, "producer bug");
        });
        let mut stream = VadStream::from_channels(in_tx, rx, Some(task));
        assert!(stream.next_event().await.is_some());
        assert!(stream.next_event().await.is_none());
        match stream.failure() {
            Some(ApiError::TaskPanicked { message: m }) => assert!(panics && m == "producer bug"),
            None => assert!(!panics),
            Some(e) => panic!("{e:?}"),
        }
    }
}
