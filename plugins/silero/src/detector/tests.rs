//! State-machine tests with scripted probabilities (no model needed).

use std::collections::VecDeque;

use livekit_agents::vad::VadEventType::{EndOfSpeech, InferenceDone, StartOfSpeech};

use super::*;

/// Returns scripted probabilities, one per window, then `tail` forever.
struct Scripted {
    values: VecDeque<f32>,
    tail: f32,
    windows_seen: Vec<Vec<f32>>,
    resets: usize,
}

impl Scripted {
    fn new(values: &[f32], tail: f32) -> Self {
        Self {
            values: values.iter().copied().collect(),
            tail,
            windows_seen: Vec::new(),
            resets: 0,
        }
    }
}

impl SpeechProbability for Scripted {
    fn probability(&mut self, window: &[f32]) -> Result<f32, SileroError> {
        self.windows_seen.push(window.to_vec());
        Ok(self.values.pop_front().unwrap_or(self.tail))
    }

    fn reset(&mut self) {
        self.resets += 1;
    }
}

/// Probability 1 when the window is loud, 0 when quiet: lets audio content drive the events.
struct Loudness;

impl SpeechProbability for Loudness {
    fn probability(&mut self, window: &[f32]) -> Result<f32, SileroError> {
        let rms = (window.iter().map(|s| s * s).sum::<f32>() / window.len() as f32).sqrt();
        Ok(if rms > 0.05 { 1.0 } else { 0.0 })
    }

    fn reset(&mut self) {}
}

fn windows(n: usize, p: f32) -> Vec<f32> {
    vec![p; n]
}

/// Mono 16 kHz audio whose sample value encodes its index (to check which audio an event
/// carries).
fn ramp(len: usize) -> Vec<i16> {
    (0..len).map(|i| (i % 30_000) as i16).collect()
}

fn frame(data: Vec<i16>, rate: u32, channels: u16) -> AudioFrame {
    AudioFrame::new(data, rate, channels).unwrap()
}

fn run<P: SpeechProbability>(
    det: &mut Detector<P>,
    audio: &[i16],
    rate: u32,
    chunk: usize,
) -> Vec<VadEvent> {
    let mut events = Vec::new();
    for piece in audio.chunks(chunk) {
        det.push_frame(&frame(piece.to_vec(), rate, 1), &mut events)
            .unwrap();
    }
    events
}

fn speech_events(events: &[VadEvent]) -> Vec<(VadEventType, u64, usize)> {
    events
        .iter()
        .filter(|e| e.kind != InferenceDone)
        .map(|e| {
            (
                e.kind,
                e.samples_index,
                e.frames.iter().map(|f| f.samples_per_channel).sum(),
            )
        })
        .collect()
}

#[test]
fn exp_filter_matches_the_reference() {
    let mut f = ExpFilter::default();
    assert_eq!(f.apply(0.8), 0.8, "the first sample initialises the filter");
    let expected = 0.35 * 0.8 + 0.65 * 0.2;
    assert!((f.apply(0.2) - expected).abs() < 1e-15);
}

#[test]
fn speech_starts_after_min_speech_and_carries_prefix_padding() {
    // 40 silent windows (1.28 s), then speech.
    let mut probs = windows(40, 0.0);
    probs.extend(windows(20, 1.0));
    let mut det = Detector::new(Scripted::new(&probs, 1.0), VadOptions::default());
    let events = run(&mut det, &ramp(60 * 512), 16_000, 320);

    assert_eq!(
        events.iter().filter(|e| e.kind == InferenceDone).count(),
        60
    );
    let start = events.iter().find(|e| e.kind == StartOfSpeech).unwrap();
    // Window 41 smooths to 0.65 (speech, 0.032 s < 0.05), window 42 reaches 0.064 s: start.
    assert_eq!(start.samples_index, 42 * 512);
    assert!((start.timestamp - 42.0 * 0.032).abs() < 1e-9);
    assert!((start.speech_duration - 0.064).abs() < 1e-9);
    assert_eq!(start.silence_duration, 0.0);
    assert!(start.speaking);
    // 0.5 s of prefix padding (8000 samples) plus the two speech windows.
    let carried = &start.frames[0];
    assert_eq!(carried.samples_per_channel, 8000 + 1024);
    assert_eq!(carried.sample_rate, 16_000);
    let first = 42 * 512 - 9024;
    assert_eq!(carried.data[0], (first % 30_000) as i16);
    assert_eq!(
        *carried.data.last().unwrap(),
        (42 * 512 - 1) as i16 // below 30 000: the ramp has not wrapped
    );
}

#[test]
fn prefix_padding_is_limited_by_the_audio_before_speech() {
    let mut probs = windows(3, 0.0);
    probs.extend(windows(10, 1.0));
    let mut det = Detector::new(Scripted::new(&probs, 1.0), VadOptions::default());
    let events = run(&mut det, &ramp(13 * 512), 16_000, 512);
    assert_eq!(
        speech_events(&events),
        vec![(StartOfSpeech, 5 * 512, 5 * 512)]
    );
}

#[test]
fn hysteresis_keeps_speech_between_thresholds_and_ends_after_min_silence() {
    // Speech, then 0.4 (between deactivation 0.35 and activation 0.5): still speech.
    let mut probs = windows(10, 0.0);
    probs.extend(windows(10, 1.0));
    probs.extend(windows(30, 0.4));
    probs.extend(windows(30, 0.0));
    let mut det = Detector::new(Scripted::new(&probs, 0.0), VadOptions::default());
    let events = run(&mut det, &ramp(80 * 512), 16_000, 480);
    let kinds: Vec<_> = speech_events(&events)
        .iter()
        .map(|e| (e.0, e.1 / 512))
        .collect();
    // Smoothed probability after the 0.4 run drops below 0.35 at window 51 (0.0 input):
    // 0.35*0.4 = 0.14. Silence then accumulates from window 51: 18 windows = 0.576 >= 0.55.
    assert_eq!(kinds, vec![(StartOfSpeech, 12), (EndOfSpeech, 68)]);
    let end = events.iter().find(|e| e.kind == EndOfSpeech).unwrap();
    assert!((end.silence_duration - 18.0 * 0.032).abs() < 1e-9);
    assert!(!end.speaking);
    // speech_duration = (speech windows since start + silence) - silence
    assert!((end.speech_duration - (68.0 - 12.0 + 2.0 - 18.0) * 0.032).abs() < 1e-9);
    let carried = end.frames[0].samples_per_channel;
    // Less than 0.5 s came before speech, so the utterance holds everything from the start.
    assert_eq!(carried, 68 * 512);
}

#[test]
fn short_blips_do_not_start_speech() {
    let options = VadOptions {
        min_speech_duration: 0.1, // 4 windows
        ..VadOptions::default()
    };
    let mut probs = Vec::new();
    for _ in 0..5 {
        probs.extend(windows(3, 1.0));
        probs.extend(windows(6, 0.0));
    }
    let mut det = Detector::new(Scripted::new(&probs, 0.0), options);
    let events = run(&mut det, &ramp(45 * 512), 16_000, 512);
    assert!(
        speech_events(&events).is_empty(),
        "{:?}",
        speech_events(&events)
    );
}

#[test]
fn max_buffered_speech_caps_the_utterance() {
    let options = VadOptions {
        max_buffered_speech: 1.0,
        prefix_padding_duration: 0.0,
        ..VadOptions::default()
    };
    let mut probs = windows(100, 1.0); // 3.2 s of speech
    probs.extend(windows(30, 0.0));
    let mut det = Detector::new(Scripted::new(&probs, 0.0), options);
    let events = run(&mut det, &ramp(130 * 512), 16_000, 512);
    let end = events.iter().find(|e| e.kind == EndOfSpeech).unwrap();
    assert_eq!(end.frames[0].samples_per_channel, 16_000);
}

#[test]
fn odd_frame_sizes_give_the_same_events() {
    let mut probs = windows(20, 0.0);
    probs.extend(windows(40, 0.9));
    probs.extend(windows(40, 0.0));
    let audio = ramp(100 * 512 + 100);
    let reference = {
        let mut det = Detector::new(Scripted::new(&probs, 0.0), VadOptions::default());
        run(&mut det, &audio, 16_000, 512)
    };
    for chunk in [1, 7, 333, 1000, 4096] {
        let mut det = Detector::new(Scripted::new(&probs, 0.0), VadOptions::default());
        let events = run(&mut det, &audio, 16_000, chunk);
        assert_eq!(events.len(), reference.len(), "chunk {chunk}");
        for (a, b) in events.iter().zip(&reference) {
            assert_eq!(
                (a.kind, a.samples_index),
                (b.kind, b.samples_index),
                "chunk {chunk}"
            );
            assert_eq!(a.frames, b.frames, "chunk {chunk}");
        }
    }
}

#[test]
fn windows_are_scaled_by_i16_max() {
    let mut det = Detector::new(Scripted::new(&[], 0.0), VadOptions::default());
    let mut audio = vec![0i16; 512];
    audio[0] = 32767;
    audio[1] = -32767;
    let _ = run(&mut det, &audio, 16_000, 512);
    let seen = &det.source.windows_seen[0];
    assert_eq!(seen[0], 1.0);
    assert_eq!(seen[1], -1.0);
}

#[test]
fn stereo_is_downmixed() {
    let mut mono = vec![0i16; 20 * 512];
    for s in &mut mono[5 * 512..15 * 512] {
        *s = 8000;
    }
    let mono_events = {
        let mut det = Detector::new(Loudness, VadOptions::default());
        run(&mut det, &mono, 16_000, 320)
    };
    let stereo: Vec<i16> = mono.iter().flat_map(|&s| [s, s]).collect();
    let mut det = Detector::new(Loudness, VadOptions::default());
    let mut events = Vec::new();
    for piece in stereo.chunks(640) {
        det.push_frame(&frame(piece.to_vec(), 16_000, 2), &mut events)
            .unwrap();
    }
    assert_eq!(speech_events(&events), speech_events(&mono_events));
    assert!(!speech_events(&events).is_empty());
    assert!(events
        .iter()
        .all(|e| e.frames.iter().all(|f| f.num_channels == 1)));
}

#[test]
fn other_input_rates_are_resampled_and_counted_in_input_samples() {
    // 1 s silence, 2 s loud, 1.5 s silence at 48 kHz.
    let rate = 48_000;
    let mut audio = vec![0i16; rate];
    // A 200 Hz tone (well inside the 8 kHz band the model sees).
    audio.extend((0..2 * rate).map(|i| {
        let t = i as f64 / rate as f64;
        ((2.0 * std::f64::consts::PI * 200.0 * t).sin() * 8000.0) as i16
    }));
    audio.extend(vec![0i16; rate * 3 / 2]);
    let mut det = Detector::new(Loudness, VadOptions::default());
    let events = run(&mut det, &audio, rate as u32, 480);
    let done: Vec<_> = events.iter().filter(|e| e.kind == InferenceDone).collect();
    assert_eq!(
        done.len(),
        4 * 16_000 * 45 / 10 / 4 / 512,
        "one inference per 32 ms"
    );
    assert_eq!(done[0].samples_index, 1536, "counted in 48 kHz samples");
    assert_eq!(done[0].frames[0].samples_per_channel, 1536);
    let speech = speech_events(&events);
    assert_eq!(speech.len(), 2, "{speech:?}");
    let start_s = speech[0].1 as f64 / 48_000.0;
    assert!((start_s - 1.064).abs() < 0.04, "start at {start_s}");
    assert_eq!(
        speech[0].2,
        24_000 + 2 * 1536,
        "prefix padding at the input rate"
    );
}

/// Issue 15 item 1: a rate change (pre-connect audio at 48 kHz, then the live track at
/// 24 kHz) is followed: speech at the new rate is still detected (it used to be dropped for
/// the rest of the stream).
#[test]
fn the_detector_follows_a_sample_rate_change() {
    let mut det = Detector::new(Loudness, VadOptions::default());
    let loud = |rate: usize, secs: f64| -> Vec<i16> {
        (0..(rate as f64 * secs) as usize)
            .map(|i| {
                let t = i as f64 / rate as f64;
                ((2.0 * std::f64::consts::PI * 300.0 * t).sin() * 16_000.0) as i16
            })
            .collect()
    };
    // One second of silence at 48 kHz, then 24 kHz: silence, speech, silence.
    let mut events = run(&mut det, &vec![0i16; 48_000], 48_000, 480);
    assert!(speech_events(&events).is_empty());
    let mut audio = vec![0i16; 12_000];
    audio.extend(loud(24_000, 1.0));
    audio.extend(vec![0i16; 36_000]);
    events.extend(run(&mut det, &audio, 24_000, 240));
    let speech = speech_events(&events);
    assert_eq!(
        speech.iter().map(|e| e.0).collect::<Vec<_>>(),
        [StartOfSpeech, EndOfSpeech],
        "{speech:?}"
    );
    let end = events.iter().find(|e| e.kind == EndOfSpeech).unwrap();
    assert!(end.frames.iter().all(|f| f.sample_rate == 24_000));
    // An absurd rate is dropped, not followed.
    let before = det.model_pending.len();
    det.ingest(&frame(vec![0; 512], 4_000_000, 1));
    assert_eq!(det.model_pending.len(), before);
    assert_eq!(det.input_rate, Some(24_000));
}

#[test]
fn update_options_changes_thresholds_and_buffer_mid_stream() {
    let mut probs = windows(20, 0.0);
    probs.extend(windows(20, 1.0));
    probs.extend(windows(10, 0.0)); // 0.32 s of silence: not enough for 0.55 s
    probs.extend(windows(20, 1.0));
    let mut det = Detector::new(Scripted::new(&probs, 0.0), VadOptions::default());
    let first = run(&mut det, &ramp(30 * 512), 16_000, 512);
    assert_eq!(speech_events(&first).len(), 1, "speech started");

    det.update_options(&VadOptionsUpdate {
        min_silence_duration: Some(0.2),
        activation_threshold: Some(0.6),
        ..Default::default()
    })
    .unwrap();
    // Deactivation stays where it was (0.35): updating activation does not move it.
    assert_eq!(det.deactivation, 0.35);
    assert_eq!(det.options().min_silence_duration, 0.2);
    let rest = run(&mut det, &ramp(40 * 512), 16_000, 512);
    let kinds: Vec<_> = speech_events(&rest).iter().map(|e| e.0).collect();
    assert_eq!(
        kinds,
        vec![EndOfSpeech, StartOfSpeech],
        "the 0.32 s pause now ends speech"
    );

    let err = det.update_options(&VadOptionsUpdate {
        activation_threshold: Some(2.0),
        ..Default::default()
    });
    assert!(err.is_err());
    assert_eq!(det.activation, 0.6, "a rejected update changes nothing");
}

#[test]
fn shrinking_the_buffer_keeps_what_fits() {
    let mut det = Detector::new(Scripted::new(&[], 1.0), VadOptions::default());
    let _ = run(&mut det, &ramp(100 * 512), 16_000, 512);
    assert_eq!(det.speech_buffer.len(), 100 * 512);
    det.update_options(&VadOptionsUpdate {
        max_buffered_speech: Some(1.0),
        prefix_padding_duration: Some(0.0),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(det.speech_buffer.len(), 16_000);
}

#[test]
fn flush_resets_the_state() {
    let mut det = Detector::new(Scripted::new(&[], 1.0), VadOptions::default());
    let events = run(&mut det, &ramp(10 * 512), 16_000, 512);
    assert!(speech_events(&events).iter().any(|e| e.0 == StartOfSpeech));
    det.flush();
    assert_eq!(det.source.resets, 1);
    let events = run(&mut det, &ramp(10 * 512), 16_000, 512);
    let start = events.iter().find(|e| e.kind == StartOfSpeech).unwrap();
    assert_eq!(start.samples_index, 2 * 512, "positions restart at zero");
}

#[test]
fn inference_done_reports_the_window_and_state() {
    let mut det = Detector::new(Scripted::new(&[0.2, 0.9, 0.9], 0.9), VadOptions::default());
    let events = run(&mut det, &ramp(3 * 512), 16_000, 512);
    let done: Vec<_> = events.iter().filter(|e| e.kind == InferenceDone).collect();
    assert_eq!(done.len(), 3);
    assert!((done[0].probability - 0.2).abs() < 1e-6);
    assert!((done[1].probability - (0.35 * 0.2 + 0.65 * 0.9) as f32).abs() < 1e-6);
    assert_eq!(done[1].samples_index, 1024);
    assert_eq!(done[1].frames[0].data, ramp(1024)[512..].to_vec());
    assert!(
        !done[2].speaking,
        "speaking is the state before this window's decision"
    );
    assert!((done[2].raw_accumulated_speech - 0.032).abs() < 1e-9);
}
