//! Pre-connect audio through the public API, on a recording written by a real WebM muxer.
//!
//! `fixtures/pre_connect_tone_440hz.webm`: 0.5 s of a 440 Hz tone at half scale, 48 kHz mono,
//! encoded with libopus and muxed by libavformat (PyAV 18), which writes the elements browsers'
//! muxers may add (SeekHead, Void, Cues, Tags, sized clusters). The in-crate unit tests cover
//! `MediaRecorder`'s live layout (unknown-size Segment and Cluster).

#![cfg(feature = "pre-connect-opus")]
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use livekit_agents::room_logic::{PreConnectBuffer, PreConnectEncoding, PreConnectHeader};

const FIXTURE: &[u8] = include_bytes!("fixtures/pre_connect_tone_440hz.webm");

fn header(sample_rate: &str) -> PreConnectHeader {
    let attrs = HashMap::from([
        ("sampleRate".to_string(), sample_rate.to_string()),
        ("channels".to_string(), "1".to_string()),
        ("trackId".to_string(), "TR_mic".to_string()),
    ]);
    PreConnectHeader::parse(&attrs, "audio/webm;codecs=opus").unwrap()
}

#[test]
fn a_muxed_webm_opus_recording_decodes_to_the_tone() {
    let header = header("24000");
    assert_eq!(header.encoding, PreConnectEncoding::Opus);
    let mut buf = PreConnectBuffer::new(header);
    for chunk in FIXTURE.chunks(100) {
        buf.push(chunk);
    }
    let frames = buf.into_frames().unwrap();
    assert!(frames
        .iter()
        .all(|f| f.sample_rate == 24_000 && f.num_channels == 1));
    let samples: Vec<i16> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
    // Half a second (plus at most one 20 ms packet of encoder padding) after the pre-skip.
    let seconds = samples.len() as f64 / 24_000.0;
    assert!((0.49..0.53).contains(&seconds), "{seconds} s");
    let middle = &samples[samples.len() / 4..samples.len() * 3 / 4];
    let power = middle
        .iter()
        .map(|&x| (x as f64 / i16::MAX as f64).powi(2))
        .sum::<f64>()
        / middle.len() as f64;
    assert!((power - 0.125).abs() < 0.02, "power {power}");
    let crossings = middle
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count() as f64
        / (middle.len() as f64 / 24_000.0);
    assert!(
        (crossings - 880.0).abs() < 20.0,
        "{crossings} zero crossings/s"
    );
}

#[test]
fn a_truncated_recording_keeps_what_is_complete() {
    let mut buf = PreConnectBuffer::new(header("48000"));
    buf.push(&FIXTURE[..FIXTURE.len() / 2]);
    let frames = buf.into_frames().unwrap();
    let seconds: f64 = frames.iter().map(|f| f.duration_secs()).sum();
    assert!(seconds > 0.1 && seconds < 0.5, "{seconds} s");
}
