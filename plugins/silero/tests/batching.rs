//! Cross-stream batching with the real model: several streams of the test speech run through
//! the batch scheduler give the events that unbatched inference gives on the same audio. They
//! need `cargo xtask download-files` (CI runs it first); when the files are absent they print a
//! SKIP line and pass, like `tests/reference.rs`.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use livekit_agents::audio::AudioFrame;
use livekit_agents::vad::{Vad, VadEvent, VadEventType, VadStream};
use livekit_agents_onnx::OnnxError;
use livekit_plugins_silero::{
    BatchOptions, LoadedModel, ModelSampleRate, SileroError, SileroVad, SpeechProbability,
    VadOptions,
};

fn load(batching: BatchOptions) -> Option<SileroVad> {
    match SileroVad::load(VadOptions {
        batching,
        ..VadOptions::default()
    }) {
        Ok(vad) => Some(vad),
        Err(SileroError::MissingModel(err)) => {
            eprintln!("SKIP: Silero model not downloaded: {err}");
            None
        }
        Err(SileroError::Onnx(err @ OnnxError::RuntimeNotFound { .. })) => {
            eprintln!("SKIP: ONNX Runtime not downloaded: {err}");
            None
        }
        Err(err) => panic!("cannot load the VAD: {err}"),
    }
}

fn speech_16k() -> Vec<i16> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/speech_16k.wav");
    livekit_agents::audio::wav::read_wav_file(path)
        .unwrap()
        .data
}

/// Stream `s`'s input: the test speech after `s * 70` ms of silence, cut to a length that
/// differs per stream, in 20 ms frames; so the streams' windows and utterances do not line up.
fn input(speech: &[i16], s: usize) -> Vec<AudioFrame> {
    let mut samples = vec![0i16; s * 70 * 16];
    samples.extend_from_slice(speech);
    samples.truncate(samples.len() - s * 3_000);
    samples
        .chunks(320)
        .map(|c| AudioFrame::new(c.to_vec(), 16_000, 1).unwrap())
        .collect()
}

/// Every field but the inference time (which measures waiting).
fn comparable(events: Vec<VadEvent>) -> Vec<VadEvent> {
    events
        .into_iter()
        .map(|mut e| {
            e.inference_duration = 0.0;
            e
        })
        .collect()
}

/// Feeds every stream one frame per tick (all in the same tick, like a burst of network audio)
/// and collects each stream's events.
async fn run_paced(vad: &SileroVad, inputs: &[Vec<AudioFrame>]) -> Vec<Vec<VadEvent>> {
    let mut streams: Vec<VadStream> = inputs.iter().map(|_| vad.stream()).collect();
    let mut events = vec![Vec::new(); inputs.len()];
    let ticks = inputs.iter().map(Vec::len).max().unwrap_or(0);
    for tick in 0..ticks {
        for (stream, input) in streams.iter_mut().zip(inputs) {
            if let Some(frame) = input.get(tick) {
                stream.push_frame(frame.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (stream, out) in streams.iter_mut().zip(&mut events) {
            while let Some(Some(event)) = stream.next().now_or_never() {
                out.push(event);
            }
        }
    }
    for (mut stream, out) in streams.into_iter().zip(&mut events) {
        stream.end_input();
        out.extend(stream.collect::<Vec<_>>().await);
    }
    events.into_iter().map(comparable).collect()
}

/// One stream at a time, no batching.
async fn run_alone(vad: &SileroVad, input: &[AudioFrame]) -> Vec<VadEvent> {
    let mut stream = vad.stream();
    for frame in input {
        stream.push_frame(frame.clone());
    }
    stream.end_input();
    comparable(stream.collect().await)
}

fn speech_events(events: &[VadEvent]) -> usize {
    events
        .iter()
        .filter(|e| e.kind != VadEventType::InferenceDone)
        .count()
}

#[tokio::test(start_paused = true)]
async fn batched_streams_give_the_events_of_unbatched_inference() {
    let (Some(batched), Some(unbatched)) = (
        load(BatchOptions::default()),
        load(BatchOptions::disabled()),
    ) else {
        return;
    };
    let speech = speech_16k();
    let inputs: Vec<Vec<AudioFrame>> = (0..6).map(|s| input(&speech, s)).collect();
    let got = run_paced(&batched, &inputs).await;
    for (s, (events, input)) in got.iter().zip(&inputs).enumerate() {
        let expected = run_alone(&unbatched, input).await;
        // Two utterances (the shortest inputs cut the last end of speech off).
        assert!(speech_events(&expected) >= 3, "stream {s}");
        assert_eq!(events, &expected, "stream {s}");
    }
    let stats = batched.batch_stats().unwrap();
    assert!(stats.largest_batch > 1, "{stats:?}");
    assert!(unbatched.batch_stats().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_streams_on_a_multi_thread_runtime_give_the_same_events() {
    // Whole inputs pushed at once on two worker threads: batch composition varies from run to
    // run; the events must not.
    let (Some(batched), Some(unbatched)) = (
        load(BatchOptions::default()),
        load(BatchOptions::disabled()),
    ) else {
        return;
    };
    let speech = speech_16k();
    let inputs: Vec<Vec<AudioFrame>> = (0..8).map(|s| input(&speech, s)).collect();
    let tasks: Vec<_> = inputs
        .iter()
        .map(|input| {
            let vad = batched.clone();
            let input = input.clone();
            tokio::spawn(async move { run_alone(&vad, &input).await })
        })
        .collect();
    for (task, input) in tasks.into_iter().zip(&inputs) {
        assert_eq!(task.await.unwrap(), run_alone(&unbatched, input).await);
    }
}

#[test]
fn a_batch_row_equals_the_same_window_inferred_alone() {
    // The primitive: rows of different streams with different states, batched, against each
    // row run alone (bit for bit).
    let model = match LoadedModel::load(None, 1) {
        Ok(model) => model,
        Err(err) => {
            eprintln!("SKIP: {err}");
            return;
        }
    };
    let rate = ModelSampleRate::Hz16000;
    let speech = speech_16k();
    let window = |at: usize| -> Vec<f32> {
        speech[at..at + 512]
            .iter()
            .map(|&s| f32::from(s) / 32767.0)
            .collect()
    };
    for batch in [2usize, 5, 16] {
        // Each stream: its own runner, advanced over a different stretch of audio.
        let mut runners: Vec<_> = (0..batch).map(|_| model.runner(rate)).collect();
        let mut inputs = Vec::new();
        let mut states = vec![0.0f32; 2 * batch * 128];
        let mut alone = Vec::new();
        // Reproduce each runner's state through the batch primitive: run the same windows.
        let mut rows: Vec<(Vec<f32>, Vec<f32>)> = (0..batch)
            .map(|_| (vec![0.0f32; 576], vec![0.0f32; 256]))
            .collect();
        for (i, (runner, (row_input, row_state))) in runners.iter_mut().zip(&mut rows).enumerate() {
            for k in 0..(3 + i) {
                let w = window(16_000 + (i * 7 + k) * 512);
                alone.push(runner.probability(&w).unwrap());
                row_input.copy_within(512.., 0);
                row_input[64..].copy_from_slice(&w);
                let mut p = [0.0f32];
                model
                    .infer_batch(rate, 1, row_input, row_state, &mut p)
                    .unwrap();
                assert_eq!(p[0], *alone.last().unwrap(), "batch of one = the runner");
            }
        }
        // Now one more window per stream, all in one batch.
        let mut expected = Vec::new();
        for (i, (runner, (row_input, row_state))) in runners.iter_mut().zip(&rows).enumerate() {
            let w = window(64_000 + i * 512);
            expected.push(runner.probability(&w).unwrap());
            let mut next = row_input.clone();
            next.copy_within(512.., 0);
            next[64..].copy_from_slice(&w);
            inputs.extend_from_slice(&next);
            states[i * 128..(i + 1) * 128].copy_from_slice(&row_state[..128]);
            states[(batch + i) * 128..(batch + i + 1) * 128].copy_from_slice(&row_state[128..]);
        }
        let mut got = vec![0.0f32; batch];
        model
            .infer_batch(rate, batch, &inputs, &mut states, &mut got)
            .unwrap();
        assert_eq!(got, expected, "batch of {batch}");
    }
}

#[test]
fn invalid_batch_options_are_rejected() {
    for batching in [
        BatchOptions {
            max_batch: 0,
            ..BatchOptions::default()
        },
        BatchOptions {
            max_wait: Duration::from_secs(1),
            ..BatchOptions::default()
        },
    ] {
        let err = SileroVad::load(VadOptions {
            batching,
            ..VadOptions::default()
        })
        .unwrap_err();
        assert!(matches!(err, SileroError::InvalidOption(_)), "{err}");
    }
    assert!(VadOptions::default().batching.enabled, "on by default");
}
