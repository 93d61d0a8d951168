//! Decoding audio files for background audio: WAV, MP3, FLAC, Ogg/Vorbis and AAC (ADTS or in
//! MP4/M4A) with the pure-Rust `symphonia` (feature `audio-decode`, on by default), and Ogg Opus
//! with the crate's Opus decoder (feature `pre-connect-opus`, on by default). Without
//! `audio-decode` only WAV is read (with `hound`).
//!
//! Files come from users and the network, so everything here is hostile input: a corrupt,
//! truncated-in-the-header or unsupported file is a [`DecodeError`] naming the file, never a
//! panic; a file cut short in the middle of its audio gives the audio before the cut (with a
//! warning), as media players do. Sizes are bounded ([`MAX_FILE_BYTES`],
//! [`MAX_DECODED_SECONDS`], [`MAX_DECODED_SAMPLES`]; Ogg Opus shares the pre-connect decoder's
//! cap of 10 MiB of PCM, about 54 s of 48 kHz stereo) and sample rates outside 1-384 kHz are
//! refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::resample::resample_frame;
use super::AudioFrame;

/// The largest file read: 64 MiB.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The longest audio decoded from one file: 10 minutes (longer files are refused rather than
/// held in memory; stream them as frames instead).
pub const MAX_DECODED_SECONDS: u64 = 600;
/// The most samples decoded from one file whatever its header claims: 10 minutes of 48 kHz
/// stereo (a small compressed file can expand to much more).
pub const MAX_DECODED_SAMPLES: u64 = MAX_DECODED_SECONDS * 48_000 * 2;
/// Sample rates accepted from a file's header.
const RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// Why a file could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The file could not be read.
    #[error("cannot read: {reason}")]
    Io {
        /// The OS error.
        reason: String,
    },
    /// The format or codec is not one this build decodes.
    #[error("unsupported format: {format}")]
    Unsupported {
        /// The format or codec.
        format: String,
    },
    /// The data is invalid.
    #[error("corrupt data: {reason}")]
    Malformed {
        /// What is wrong with the data.
        reason: String,
    },
    /// The file holds no audio track, or no packet of it could be decoded.
    #[error("no audio")]
    NoAudio,
    /// The file or its decoded audio exceeds the limits.
    #[error("too large: {limit}")]
    TooLarge {
        /// Which limit was exceeded.
        limit: String,
    },
}

/// An audio file that could not be decoded, with the file's path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot decode audio file {}: {kind}", path.display())]
#[non_exhaustive]
pub struct DecodeError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

/// Reads and decodes a whole audio file at its own sample rate and channel count.
pub fn decode_file(path: impl AsRef<Path>) -> Result<AudioFrame, DecodeError> {
    let path = path.as_ref();
    let err = |kind| DecodeError {
        path: path.to_owned(),
        kind,
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        err(DecodeErrorKind::Io {
            reason: e.to_string(),
        })
    })?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(err(DecodeErrorKind::TooLarge {
            limit: format!("{} bytes (at most {MAX_FILE_BYTES})", meta.len()),
        }));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        err(DecodeErrorKind::Io {
            reason: e.to_string(),
        })
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    decode_bytes(&bytes, ext.as_deref()).map_err(err)
}

/// Decodes a file and converts it to `sample_rate` / `num_channels` (mono is copied to every
/// channel, more channels are averaged), ready for a mixer.
pub fn decode_file_to(
    path: impl AsRef<Path>,
    sample_rate: u32,
    num_channels: u16,
) -> Result<Arc<[i16]>, DecodeError> {
    let path = path.as_ref();
    let frame = decode_file(path)?;
    convert_clip(&frame, sample_rate, num_channels).map_err(|kind| DecodeError {
        path: path.to_owned(),
        kind,
    })
}

pub(crate) fn convert_clip(
    frame: &AudioFrame,
    sample_rate: u32,
    num_channels: u16,
) -> Result<Arc<[i16]>, DecodeErrorKind> {
    let resampled = resample_frame(frame, sample_rate).map_err(|e| DecodeErrorKind::Malformed {
        reason: e.to_string(),
    })?;
    Ok(super::mixer::remap_channels(&resampled.data, resampled.num_channels, num_channels).into())
}

/// Decodes an in-memory file; `extension` (lower case, e.g. `"mp3"`) is a hint for the
/// container probe.
pub fn decode_bytes(bytes: &[u8], extension: Option<&str>) -> Result<AudioFrame, DecodeErrorKind> {
    if bytes.is_empty() {
        return Err(DecodeErrorKind::NoAudio);
    }
    if is_ogg_opus(bytes) {
        return decode_opus(bytes);
    }
    // The decoders are large ports of C code: a malformed file must not take the job down.
    std::panic::catch_unwind(|| decode_any(bytes, extension)).unwrap_or_else(|_| {
        Err(DecodeErrorKind::Malformed {
            reason: "the decoder failed on this data".into(),
        })
    })
}

/// Ogg with an `OpusHead` in its first page.
fn is_ogg_opus(bytes: &[u8]) -> bool {
    bytes.starts_with(b"OggS")
        && bytes
            .get(..bytes.len().min(512))
            .is_some_and(|head| head.windows(8).any(|w| w == b"OpusHead"))
}

#[cfg(feature = "pre-connect-opus")]
fn decode_opus(bytes: &[u8]) -> Result<AudioFrame, DecodeErrorKind> {
    let audio = crate::room_logic::decode_opus(bytes, 48_000, 2).map_err(|e| {
        DecodeErrorKind::Malformed {
            reason: e.to_string(),
        }
    })?;
    if audio.samples.is_empty() {
        return Err(DecodeErrorKind::NoAudio);
    }
    AudioFrame::new(audio.samples, audio.sample_rate, audio.num_channels).map_err(|e| {
        DecodeErrorKind::Malformed {
            reason: e.to_string(),
        }
    })
}

#[cfg(not(feature = "pre-connect-opus"))]
fn decode_opus(_bytes: &[u8]) -> Result<AudioFrame, DecodeErrorKind> {
    Err(DecodeErrorKind::Unsupported {
        format: "Ogg Opus needs the `pre-connect-opus` feature".into(),
    })
}

#[cfg(not(feature = "audio-decode"))]
fn decode_any(bytes: &[u8], _extension: Option<&str>) -> Result<AudioFrame, DecodeErrorKind> {
    if !bytes.starts_with(b"RIFF") {
        return Err(DecodeErrorKind::Unsupported {
            format: "only WAV without the `audio-decode` feature".into(),
        });
    }
    let frame = super::wav::decode_wav(bytes).map_err(|e| DecodeErrorKind::Malformed {
        reason: e.to_string(),
    })?;
    if !RATES.contains(&frame.sample_rate) {
        return Err(DecodeErrorKind::Unsupported {
            format: format!("{} Hz", frame.sample_rate),
        });
    }
    Ok(frame)
}

#[cfg(feature = "audio-decode")]
fn decode_any(bytes: &[u8], extension: Option<&str>) -> Result<AudioFrame, DecodeErrorKind> {
    use symphonia::core::audio::SampleBuffer;
    use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
    use symphonia::core::errors::Error;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    let source = std::io::Cursor::new(bytes.to_vec());
    let stream = MediaSourceStream::new(Box::new(source), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| match e {
            Error::Unsupported(what) => DecodeErrorKind::Unsupported {
                format: what.to_owned(),
            },
            other => DecodeErrorKind::Malformed {
                reason: other.to_string(),
            },
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(DecodeErrorKind::NoAudio)?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| match e {
            Error::Unsupported(what) => DecodeErrorKind::Unsupported {
                format: what.to_owned(),
            },
            other => DecodeErrorKind::Malformed {
                reason: other.to_string(),
            },
        })?;

    let mut samples: Vec<i16> = Vec::new();
    let mut spec: Option<(u32, u16)> = None;
    let mut bad_packets = 0usize;
    let mut truncated = false;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(Error::ResetRequired) => break,
            Err(e) => {
                // A broken container after some audio: keep what was decoded.
                if samples.is_empty() {
                    return Err(DecodeErrorKind::Malformed {
                        reason: e.to_string(),
                    });
                }
                truncated = true;
                break;
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let s = *buf.spec();
                let channels = s.channels.count() as u16;
                match spec {
                    None => {
                        if !RATES.contains(&s.rate) || channels == 0 {
                            return Err(DecodeErrorKind::Unsupported {
                                format: format!("{} Hz, {channels} channels", s.rate),
                            });
                        }
                        spec = Some((s.rate, channels));
                    }
                    Some(prev) if prev != (s.rate, channels) => {
                        return Err(DecodeErrorKind::Unsupported {
                            format: "the format changes in the middle of the file".into(),
                        });
                    }
                    Some(_) => {}
                }
                let limit = (MAX_DECODED_SECONDS * s.rate as u64 * channels as u64)
                    .min(MAX_DECODED_SAMPLES);
                if samples.len() as u64 + (buf.frames() * channels as usize) as u64 > limit {
                    return Err(DecodeErrorKind::TooLarge {
                        limit: format!("more than {MAX_DECODED_SECONDS} s of audio"),
                    });
                }
                let mut out = SampleBuffer::<i16>::new(buf.capacity() as u64, s);
                out.copy_interleaved_ref(buf);
                samples.extend_from_slice(out.samples());
            }
            Err(Error::DecodeError(_)) => bad_packets += 1,
            Err(Error::IoError(_)) => {
                truncated = true;
                break;
            }
            Err(e) => {
                return Err(DecodeErrorKind::Malformed {
                    reason: e.to_string(),
                })
            }
        }
    }
    let Some((rate, channels)) = spec else {
        return Err(if bad_packets > 0 {
            DecodeErrorKind::Malformed {
                reason: format!("none of {bad_packets} packets could be decoded"),
            }
        } else {
            DecodeErrorKind::NoAudio
        });
    };
    if samples.is_empty() {
        return Err(DecodeErrorKind::NoAudio);
    }
    if bad_packets > 0 || truncated {
        tracing::warn!(
            bad_packets,
            truncated,
            "audio file partly decoded (the rest is corrupt or missing)"
        );
    }
    let usable = samples.len() - samples.len() % channels as usize;
    samples.truncate(usable);
    AudioFrame::new(samples, rate, channels).map_err(|e| DecodeErrorKind::Malformed {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/audio")
            .join(name)
    }

    /// Every format decodes to about one second of a 440 Hz tone (the fixtures' content).
    #[test]
    fn every_format_decodes() {
        let mut names = vec!["tone.wav"];
        if cfg!(feature = "audio-decode") {
            names.extend(["tone.mp3", "tone.flac", "tone.ogg", "tone.m4a", "tone.aac"]);
        }
        if cfg!(feature = "pre-connect-opus") {
            names.push("tone.opus");
        }
        for name in names {
            let frame = decode_file(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let secs = frame.duration_secs();
            assert!((0.9..1.2).contains(&secs), "{name}: {secs} s");
            let mono = frame.downmix_to_mono();
            let rms = mono.rms();
            // ffmpeg's sine source is at 1/8 scale, halved: 0.0625 peak, 0.044 RMS.
            assert!(rms > 0.03 && rms < 0.06, "{name}: rms {rms}");
            let clip = decode_file_to(fixture(name), 48_000, 1).unwrap();
            let n = clip.len() as f64 / 48_000.0;
            assert!((0.9..1.2).contains(&n), "{name}: {n} s at 48 kHz");
        }
    }

    #[test]
    fn broken_files_are_errors_naming_the_file_never_panics() {
        for name in [
            "corrupt.mp3",
            "corrupt.ogg",
            "corrupt.flac",
            "corrupt.wav",
            "not-audio.txt",
            "empty.wav",
            "header-only.flac",
        ] {
            let path = fixture(name);
            let err = decode_file(&path).expect_err(name);
            assert_eq!(err.path, path);
            assert!(err.to_string().contains(name), "{err}");
        }
        let missing = decode_file(fixture("missing.wav")).unwrap_err();
        assert!(matches!(missing.kind, DecodeErrorKind::Io { .. }));
    }

    #[test]
    fn truncated_files_give_the_audio_before_the_cut_or_an_error() {
        for name in [
            "truncated.wav",
            "truncated.mp3",
            "truncated.flac",
            "truncated.ogg",
            "truncated.m4a",
            "truncated.opus",
        ] {
            match decode_file(fixture(name)) {
                Ok(frame) => assert!(frame.duration_secs() < 0.9, "{name}"),
                Err(e) => assert!(e.to_string().contains(name), "{e}"),
            }
        }
    }

    #[test]
    fn absurd_sample_rates_are_refused() {
        // A valid WAV header claiming 10 Hz: resampling it to 48 kHz would blow up memory.
        let frame = AudioFrame::new(vec![0; 100], 10, 1).unwrap();
        let bytes = crate::audio::wav::encode_wav(&[frame]).unwrap();
        assert!(matches!(
            decode_bytes(&bytes, Some("wav")),
            Err(DecodeErrorKind::Unsupported { .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in [1usize, 4, 12, 44, 100, 1000, 5000] {
            for prefix in [&b""[..], b"RIFF", b"OggS", b"fLaC", b"ID3", b"\xff\xfb"] {
                let mut bytes = prefix.to_vec();
                for _ in 0..len {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    bytes.push(seed as u8);
                }
                let _ = decode_bytes(&bytes, None);
            }
        }
    }
}
