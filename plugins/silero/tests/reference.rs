//! Golden tests against the Python `livekit-plugins-silero` 1.8.9 on the same audio, with the
//! real model and ONNX Runtime. They need `cargo xtask download-files` (CI runs it first); when
//! the files are absent they print a SKIP line and pass.
//!
//! `testdata/reference_events.json` was produced by `testdata/reference_vad.py` (see
//! `testdata/README.md`).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;

use futures::StreamExt;
use livekit_agents::audio::AudioFrame;
use livekit_agents::vad::{Vad, VadEvent, VadEventType};
use livekit_agents_onnx::OnnxError;
use livekit_plugins_silero::{
    ModelSampleRate, SileroError, SileroVad, VadOptions, VadOptionsUpdate,
};
use serde_json::Value;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// Loads the VAD, or `None` (after printing why) when the model or runtime is not downloaded.
fn load(options: VadOptions) -> Option<SileroVad> {
    match SileroVad::load(options) {
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
    let audio = livekit_agents::audio::wav::read_wav_file(testdata("speech_16k.wav")).unwrap();
    assert_eq!((audio.sample_rate, audio.num_channels), (16_000, 1));
    audio.data
}

fn reference(case: &str) -> Value {
    let text = std::fs::read_to_string(testdata("reference_events.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all["cases"][case].clone()
}

/// (kind, timestamp, samples_index, speech_duration, silence_duration, frame samples)
type Row = (String, f64, u64, f64, f64, u64);

fn reference_rows(case: &Value) -> Vec<Row> {
    case["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["timestamp"].as_f64().unwrap(),
                e["samples_index"].as_u64().unwrap(),
                e["speech_duration"].as_f64().unwrap(),
                e["silence_duration"].as_f64().unwrap(),
                e["frame_samples"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn rows(events: &[VadEvent]) -> Vec<Row> {
    events
        .iter()
        .filter(|e| e.kind != VadEventType::InferenceDone)
        .map(|e| {
            let kind = if e.kind == VadEventType::StartOfSpeech {
                "START"
            } else {
                "END"
            };
            (
                kind.to_owned(),
                (e.timestamp * 1e6).round() / 1e6,
                e.samples_index,
                (e.speech_duration * 1e6).round() / 1e6,
                (e.silence_duration * 1e6).round() / 1e6,
                e.frames.iter().map(|f| f.samples_per_channel as u64).sum(),
            )
        })
        .collect()
}

/// Pushes `samples` (interleaved) in frames of `frame_ms` and collects every event.
async fn run(
    vad: &SileroVad,
    samples: &[i16],
    rate: u32,
    channels: u16,
    frame_ms: usize,
) -> Vec<VadEvent> {
    let mut stream = vad.stream();
    let per_frame = rate as usize * frame_ms / 1000 * channels as usize;
    for chunk in samples.chunks(per_frame) {
        stream.push_frame(AudioFrame::new(chunk.to_vec(), rate, channels).unwrap());
    }
    stream.end_input();
    stream.collect().await
}

fn probabilities(events: &[VadEvent]) -> Vec<f64> {
    events
        .iter()
        .filter(|e| e.kind == VadEventType::InferenceDone)
        .map(|e| f64::from(e.probability))
        .collect()
}

fn assert_probabilities_match(events: &[VadEvent], case: &Value, tolerance: f64) {
    let ours = probabilities(events);
    let theirs: Vec<f64> = case["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert_eq!(ours.len(), theirs.len(), "one inference per window");
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst <= tolerance, "max probability difference {worst}");
}

/// Resamples with a simple linear interpolation (independent of the plugin's resampler).
fn linear_resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    let n = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    (0..n)
        .map(|i| {
            let pos = i as f64 * f64::from(from) / f64::from(to);
            let k = pos as usize;
            let t = pos - k as f64;
            let a = f64::from(input[k.min(input.len() - 1)]);
            let b = f64::from(input[(k + 1).min(input.len() - 1)]);
            (a + (b - a) * t).round() as i16
        })
        .collect()
}

/// Event kinds and times (seconds), for comparisons where resampling makes exact sample
/// counts differ.
fn times(rows: &[Row]) -> Vec<(String, f64)> {
    rows.iter().map(|r| (r.0.clone(), r.1)).collect()
}

fn assert_times_close(ours: &[Row], theirs: &[Row], windows: f64) {
    let (a, b) = (times(ours), times(theirs));
    assert_eq!(
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        b.iter().map(|x| &x.0).collect::<Vec<_>>(),
        "ours {a:?} reference {b:?}"
    );
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.1 - y.1).abs() <= windows * 0.032 + 1e-9,
            "ours {a:?} reference {b:?}"
        );
    }
}

#[tokio::test]
async fn events_match_the_python_plugin_on_16k_speech() {
    let Some(vad) = load(VadOptions::default()) else {
        return;
    };
    let audio = speech_16k();
    for (case, frame_ms) in [("default_16k", 20), ("default_16k_10ms", 10)] {
        let reference = reference(case);
        let events = run(&vad, &audio, 16_000, 1, frame_ms).await;
        assert_eq!(rows(&events), reference_rows(&reference), "{case}");
        assert_probabilities_match(&events, &reference, 2e-5);
    }
    // The notes' anchor, spelled out.
    let events = run(&vad, &audio, 16_000, 1, 20).await;
    let got: Vec<_> = times(&rows(&events));
    let expected = [
        ("START", 1.12),
        ("END", 5.184),
        ("START", 6.4),
        ("END", 10.848),
    ];
    assert_eq!(got.len(), 4);
    for ((kind, t), (ek, et)) in got.iter().zip(expected) {
        assert_eq!(kind, ek);
        assert!((t - et).abs() < 1e-9);
    }
}

#[tokio::test]
async fn odd_frame_sizes_give_the_same_events() {
    let Some(vad) = load(VadOptions::default()) else {
        return;
    };
    let audio = speech_16k();
    let expected = reference_rows(&reference("default_16k"));
    let mut stream = vad.stream();
    let mut offset = 0;
    for size in [1usize, 7, 333, 1000, 4097].iter().cycle() {
        if offset >= audio.len() {
            break;
        }
        let end = (offset + size).min(audio.len());
        stream.push_frame(AudioFrame::new(audio[offset..end].to_vec(), 16_000, 1).unwrap());
        offset = end;
    }
    stream.end_input();
    let events: Vec<VadEvent> = stream.collect().await;
    assert_eq!(rows(&events), expected);
}

#[tokio::test]
async fn resampled_input_matches_the_python_plugin() {
    let Some(vad) = load(VadOptions::default()) else {
        return;
    };
    let audio = speech_16k();
    for (case, rate) in [("input_48k", 48_000u32), ("input_8k", 8_000)] {
        let input = linear_resample(&audio, 16_000, rate);
        let events = run(&vad, &input, rate, 1, 20).await;
        let ours = rows(&events);
        // Python resamples with soxr, we with rubato: speech boundaries agree within a window.
        assert_times_close(&ours, &reference_rows(&reference(case)), 1.0);
        // Prefix padding and utterances are carried at the input rate.
        let start = &ours[0];
        let window_input = 512 * u64::from(rate) / 16_000;
        assert_eq!(start.5, u64::from(rate) / 2 + 2 * window_input, "{case}");
        assert_eq!(
            start.2,
            (start.1 / 0.032).round() as u64 * window_input,
            "{case}"
        );
    }
}

#[tokio::test]
async fn stereo_input_is_downmixed() {
    let Some(vad) = load(VadOptions::default()) else {
        return;
    };
    let mono = linear_resample(&speech_16k(), 16_000, 48_000);
    let mono_events = run(&vad, &mono, 48_000, 1, 20).await;
    // Speech on the left channel at full level, the right channel silent: the down-mix halves
    // the level, which Silero does not care about much; identical channels give identical
    // results.
    let same: Vec<i16> = mono.iter().flat_map(|&s| [s, s]).collect();
    let stereo_events = run(&vad, &same, 48_000, 2, 20).await;
    assert_eq!(rows(&stereo_events), rows(&mono_events));
    assert!(stereo_events
        .iter()
        .all(|e| e.frames.iter().all(|f| f.num_channels == 1)));
    let left_only: Vec<i16> = mono.iter().flat_map(|&s| [s, 0]).collect();
    let left_events = run(&vad, &left_only, 48_000, 2, 20).await;
    assert_times_close(&rows(&left_events), &rows(&mono_events), 3.0);
}

#[tokio::test]
async fn model_at_8k_matches_the_python_plugin() {
    let Some(vad) = load(VadOptions {
        sample_rate: ModelSampleRate::Hz8000,
        ..VadOptions::default()
    }) else {
        return;
    };
    let events = run(&vad, &speech_16k(), 16_000, 1, 20).await;
    let reference = reference("model_8k");
    assert_times_close(&rows(&events), &reference_rows(&reference), 1.0);
    assert_eq!(vad.capabilities().update_interval, 0.032);
}

#[tokio::test]
async fn option_updates_on_a_live_stream_match_the_python_plugin() {
    let Some(vad) = load(VadOptions::default()) else {
        return;
    };
    let audio = speech_16k();
    let (mut stream, mut handle) = vad.stream_with_handle();
    let split = 6 * 16_000;
    for chunk in audio[..split].chunks(320) {
        stream.push_frame(AudioFrame::new(chunk.to_vec(), 16_000, 1).unwrap());
    }
    // Wait until every complete window pushed so far is processed, as the reference script
    // does, then update.
    let mut events = Vec::new();
    while events
        .iter()
        .filter(|e: &&VadEvent| e.kind == VadEventType::InferenceDone)
        .count()
        < split / 512
    {
        events.push(stream.next().await.unwrap());
    }
    handle
        .update_options(VadOptionsUpdate {
            min_silence_duration: Some(0.1),
            prefix_padding_duration: Some(0.2),
            ..Default::default()
        })
        .unwrap();
    for chunk in audio[split..].chunks(320) {
        stream.push_frame(AudioFrame::new(chunk.to_vec(), 16_000, 1).unwrap());
    }
    stream.end_input();
    events.extend(stream.collect::<Vec<_>>().await);
    let reference = reference("update_at_6s");
    assert_eq!(rows(&events), reference_rows(&reference));
    assert_probabilities_match(&events, &reference, 2e-5);

    // Updating the VAD reaches streams that are already open, and new ones.
    let mut live = vad.stream();
    vad.update_options(VadOptionsUpdate {
        min_speech_duration: Some(10.0),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(vad.options().min_speech_duration, 10.0);
    for chunk in audio.chunks(320) {
        live.push_frame(AudioFrame::new(chunk.to_vec(), 16_000, 1).unwrap());
    }
    live.end_input();
    let events: Vec<VadEvent> = live.collect().await;
    assert!(rows(&events).is_empty(), "no 10 s utterance in the file");
}

#[tokio::test]
async fn many_streams_share_one_model_concurrently() {
    let Some(vad) = load(VadOptions::default()) else {
        return;
    };
    let audio = speech_16k();
    let expected = reference_rows(&reference("default_16k"));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let vad = vad.clone();
            let audio = audio.clone();
            tokio::spawn(async move { rows(&run(&vad, &audio, 16_000, 1, 20).await) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), expected);
    }
}

#[test]
fn a_wrong_model_file_is_rejected_clearly() {
    // Skip when the runtime is unavailable (the check needs it to parse the file).
    if livekit_agents_onnx::ensure_runtime().is_err() {
        eprintln!("SKIP: ONNX Runtime not downloaded");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bogus = tmp.path().join("not-a-model.onnx");
    std::fs::write(&bogus, b"definitely not onnx").unwrap();
    let err = SileroVad::load(VadOptions {
        model_path: Some(bogus.clone()),
        ..VadOptions::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, SileroError::Onnx(OnnxError::Model { .. })),
        "{err}"
    );
}
