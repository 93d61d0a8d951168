//! The built-in clips, synthesised by this code when first used (no audio file ships with the
//! crate).
//!
//! The reference ships recordings (`office-ambience.ogg`, `keyboard-typing.ogg`, ...) under
//! their own licence. These are our own: generated procedurally from a fixed seed, so every
//! build and every process plays the same samples, and covered by this crate's licence
//! (Apache-2.0) like the rest of its code.

use std::sync::{Arc, OnceLock};

/// The rate the clips are synthesised at.
pub const BUILTIN_SAMPLE_RATE: u32 = 48_000;

/// A built-in sound (the reference's `BuiltinAudioClip`), synthesised at 48 kHz mono.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinAudioClip {
    /// A quiet office: ventilation hum and room noise, with an occasional distant keystroke
    /// (8 s, loops seamlessly). Meant as an ambient sound.
    OfficeAmbience,
    /// Typing on a keyboard: bursts of keystrokes with pauses (4 s). Meant as a thinking sound.
    KeyboardTyping,
    /// A shorter, faster burst of typing (1.5 s). Meant as a thinking sound.
    KeyboardTyping2,
    /// Gentle hold music: a four-chord progression, arpeggiated (12.8 s, loops seamlessly).
    HoldMusic,
}

impl BuiltinAudioClip {
    /// Every built-in clip.
    pub const ALL: &'static [BuiltinAudioClip] = &[
        Self::OfficeAmbience,
        Self::KeyboardTyping,
        Self::KeyboardTyping2,
        Self::HoldMusic,
    ];

    /// The reference's name for the clip (its file stem): `"office-ambience"`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::OfficeAmbience => "office-ambience",
            Self::KeyboardTyping => "keyboard-typing",
            Self::KeyboardTyping2 => "keyboard-typing2",
            Self::HoldMusic => "hold_music",
        }
    }

    /// The clip's samples: 48 kHz mono, synthesised on first use and shared afterwards.
    pub fn samples(self) -> Arc<[i16]> {
        static CLIPS: [OnceLock<Arc<[i16]>>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        let (slot, make): (usize, fn() -> Vec<i16>) = match self {
            Self::OfficeAmbience => (0, office_ambience),
            Self::KeyboardTyping => (1, || typing(4.0, 0x6b65_7973, 1.0)),
            Self::KeyboardTyping2 => (2, || typing(1.5, 0x7479_7065, 0.7)),
            Self::HoldMusic => (3, hold_music),
        };
        CLIPS[slot].get_or_init(|| make().into()).clone()
    }

    /// The clip's length.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.samples().len() as f64 / BUILTIN_SAMPLE_RATE as f64)
    }
}

/// A small deterministic generator (xorshift64*), so the clips never change.
struct Noise(u64);

impl Noise {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [-1, 1).
    fn white(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
}

const SR: f32 = BUILTIN_SAMPLE_RATE as f32;
const TAU: f32 = std::f32::consts::TAU;

fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|s| (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Makes `x` loop without a click: its last `fade` samples are cross-faded into its start and
/// dropped from the end.
fn make_loop(mut x: Vec<f32>, fade: usize) -> Vec<f32> {
    let fade = fade.min(x.len() / 2);
    let n = x.len() - fade;
    for i in 0..fade {
        let t = i as f32 / fade as f32;
        let tail = x[n + i];
        x[i] = x[i] * t.sqrt() + tail * (1.0 - t).sqrt();
    }
    x.truncate(n);
    x
}

/// One keystroke at `at` (seconds) into `out`: a short click of filtered noise and a low thud.
fn keystroke(out: &mut [f32], at: f32, level: f32, rng: &mut Noise) {
    let start = (at * SR) as usize;
    let click_len = (rng.range(0.004, 0.012) * SR) as usize;
    let thud_len = (0.035 * SR) as usize;
    let thud_hz = rng.range(140.0, 260.0);
    let mut prev = 0.0f32;
    for i in 0..thud_len.max(click_len) {
        let Some(slot) = out.get_mut(start + i) else {
            break;
        };
        let t = i as f32 / SR;
        let mut v = 0.0;
        if i < click_len {
            // High-passed noise (difference of successive values), fast decay.
            let w = rng.white();
            v += (w - prev) * 0.5 * (-t * 900.0).exp();
            prev = w;
        }
        v += 0.5 * (TAU * thud_hz * t).sin() * (-t * 120.0).exp();
        *slot += v * level;
    }
}

fn typing(seconds: f32, seed: u64, speed: f32) -> Vec<i16> {
    let mut rng = Noise(seed);
    let n = (seconds * SR) as usize;
    let mut out = vec![0.0f32; n];
    let mut t = 0.05;
    while t < seconds - 0.1 {
        // A word: a few keystrokes close together, then a pause (sometimes the space bar, lower).
        let keys = 3 + (rng.unit() * 5.0) as usize;
        for _ in 0..keys {
            if t >= seconds - 0.1 {
                break;
            }
            keystroke(&mut out, t, rng.range(0.35, 0.6), &mut rng);
            t += rng.range(0.07, 0.16) / speed;
        }
        keystroke(&mut out, t, 0.25, &mut rng);
        t += rng.range(0.18, 0.45) / speed;
    }
    // A touch of room noise so the pauses are not digital silence.
    for s in out.iter_mut() {
        *s += rng.white() * 0.002;
    }
    to_i16(&out)
}

fn office_ambience() -> Vec<i16> {
    let seconds = 8.5;
    let mut rng = Noise(0x6f66_6669_6365);
    let n = (seconds * SR) as usize;
    let mut out = vec![0.0f32; n];
    // Room noise: white noise through two one-pole low-pass filters (a dull rumble).
    let (mut a, mut b) = (0.0f32, 0.0f32);
    for (i, s) in out.iter_mut().enumerate() {
        a += 0.02 * (rng.white() - a);
        b += 0.05 * (a - b);
        let t = i as f32 / SR;
        // Ventilation: a slow swell, and a faint mains hum with harmonics.
        let swell = 1.0 + 0.25 * (TAU * 0.11 * t).sin();
        let hum = 0.004 * (TAU * 100.0 * t).sin() + 0.002 * (TAU * 200.0 * t).sin();
        *s = b * 0.35 * swell + hum + rng.white() * 0.0015;
    }
    // A distant keyboard now and then.
    let mut t = 0.7;
    while t < seconds - 1.0 {
        for _ in 0..(2 + (rng.unit() * 4.0) as usize) {
            keystroke(&mut out, t, 0.05, &mut rng);
            t += rng.range(0.08, 0.2);
        }
        t += rng.range(1.0, 2.5);
    }
    to_i16(&make_loop(out, (0.5 * SR) as usize))
}

fn hold_music() -> Vec<i16> {
    // C major, I-vi-IV-V, 2 bars of 4 beats at 75 bpm... played as eighth-note arpeggios.
    let beat = 0.8f32;
    let chords: [[f32; 4]; 4] = [
        [261.63, 329.63, 392.00, 523.25], // C
        [220.00, 261.63, 329.63, 440.00], // Am
        [174.61, 220.00, 261.63, 349.23], // F
        [196.00, 246.94, 293.66, 392.00], // G
    ];
    let bar = beat * 4.0;
    let seconds = bar * 4.0;
    let n = (seconds * SR) as usize;
    let mut out = vec![0.0f32; n + (2.0 * SR) as usize];
    let note = |out: &mut [f32], at: f32, hz: f32, len: f32, level: f32| {
        let start = (at * SR) as usize;
        let samples = (len * SR) as usize;
        for i in 0..samples {
            let Some(slot) = out.get_mut(start + i) else {
                break;
            };
            let t = i as f32 / SR;
            let attack = (t / 0.01).min(1.0);
            let env = attack * (-t * 2.5).exp();
            // A soft electric-piano-like tone: fundamental, a little octave and fifth.
            let v = (TAU * hz * t).sin()
                + 0.3 * (TAU * 2.0 * hz * t).sin()
                + 0.1 * (TAU * 3.0 * hz * t).sin();
            *slot += v * env * level;
        }
    };
    for (c, chord) in chords.iter().enumerate() {
        let bar_start = c as f32 * bar;
        // Bass: the root an octave down, on beats 1 and 3.
        for b in [0.0, 2.0] {
            note(
                &mut out,
                bar_start + b * beat,
                chord[0] / 2.0,
                beat * 2.0,
                0.16,
            );
        }
        // Arpeggio: up and down the chord in eighth notes.
        let pattern = [0usize, 1, 2, 3, 2, 1, 2, 1];
        for (k, &idx) in pattern.iter().enumerate() {
            note(
                &mut out,
                bar_start + k as f32 * beat / 2.0,
                chord[idx],
                beat * 1.5,
                0.09,
            );
        }
    }
    // Fold the tail that rings past the end back onto the start, so the loop is seamless.
    let tail: Vec<f32> = out.split_off(n);
    for (i, v) in tail.into_iter().enumerate() {
        if let Some(slot) = out.get_mut(i) {
            *slot += v;
        }
    }
    to_i16(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::AudioFrame;

    #[test]
    fn clips_are_deterministic_audible_and_unclipped() {
        for clip in BuiltinAudioClip::ALL {
            let samples = clip.samples();
            assert_eq!(samples, clip.samples(), "{clip:?} is generated once");
            let frame = AudioFrame::new(samples.to_vec(), BUILTIN_SAMPLE_RATE, 1).unwrap();
            let secs = frame.duration_secs();
            assert!((1.0..14.0).contains(&secs), "{clip:?}: {secs} s");
            let peak = frame.peak();
            assert!(peak > 0.02 && peak < 0.99, "{clip:?}: peak {peak}");
            let rms = frame.rms_dbfs();
            assert!(rms > -60.0 && rms < -10.0, "{clip:?}: rms {rms} dBFS");
            assert!(!clip.name().is_empty());
        }
        // A fingerprint of the first clip, so an accidental change to the synthesis shows.
        let office = BuiltinAudioClip::OfficeAmbience.samples();
        assert_eq!(office.len(), 384_000);
    }

    #[test]
    fn looping_clips_have_no_click_at_the_seam() {
        for clip in [
            BuiltinAudioClip::OfficeAmbience,
            BuiltinAudioClip::HoldMusic,
        ] {
            let s = clip.samples();
            let jump = (s[0] as i32 - s[s.len() - 1] as i32).abs();
            let typical = s
                .windows(2)
                .map(|w| (w[0] as i32 - w[1] as i32).abs())
                .max()
                .unwrap_or(0);
            assert!(
                jump <= typical,
                "{clip:?}: seam step {jump} > largest step {typical}"
            );
        }
    }
}
