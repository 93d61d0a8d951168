//! WAV files: read any integer PCM (8/16/24/32-bit) or 32-bit float WAV into 16-bit frames,
//! and write 16-bit PCM WAV.
//!
//! Reading uses a small validating parser of our own instead of `hound`'s reader, so that every
//! malformed input (empty, truncated header or data, zero channels, 0 Hz, compressed or odd
//! formats) gives a typed [`WavError`] instead of a panic or a misread. Writing uses `hound`.
//! A data chunk whose declared size is `0xFFFFFFFF` or `0` (streamed WAV, as some TTS APIs
//! send it) is read to the end of the input.
//!
//! ```
//! use livekit_agents::audio::{wav, AudioFrame};
//!
//! let frame = AudioFrame::sine(440.0, 0.5, 24_000, 1, 2_400);
//! let bytes = wav::encode_wav(&[frame.clone()]).unwrap();
//! assert_eq!(wav::decode_wav(&bytes).unwrap(), frame);
//! assert!(matches!(wav::decode_wav(&bytes[..30]), Err(wav::WavError::TruncatedHeader { .. })));
//! ```

use std::io::{Read, Seek, Write};
use std::path::Path;

use super::{combine_frames, f32_to_i16, AudioError, AudioFrame};

/// Why a WAV input could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// Reading or writing the file failed.
    #[error("WAV I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The input has no bytes.
    #[error("empty WAV input")]
    Empty,
    /// The input is not a RIFF/WAVE file.
    #[error("not a WAV file: {reason}")]
    NotWav {
        /// What was found instead.
        reason: String,
    },
    /// The header ends early (which part is named).
    #[error("truncated WAV header: {part}")]
    TruncatedHeader {
        /// The part of the header that is missing.
        part: String,
    },
    /// A required chunk (`fmt ` or `data`) is missing.
    #[error("WAV file has no {0:?} chunk")]
    MissingChunk(&'static str),
    /// The data chunk declares more bytes than the input holds.
    #[error("truncated WAV data: header declares {declared} bytes, {available} present")]
    TruncatedData {
        /// Size in the chunk header.
        declared: u64,
        /// Bytes actually present.
        available: u64,
    },
    /// The format chunk declares zero channels.
    #[error("WAV file declares zero channels")]
    ZeroChannels,
    /// The format chunk declares a 0 Hz sample rate.
    #[error("WAV file declares a 0 Hz sample rate")]
    ZeroSampleRate,
    /// The format chunk declares a rate outside
    /// [`SUPPORTED_SAMPLE_RATES`](crate::audio::SUPPORTED_SAMPLE_RATES).
    #[error("WAV file declares an unsupported sample rate: {0} Hz (supported: 8000 to 192000 Hz)")]
    UnsupportedSampleRate(u32),
    /// A compressed or otherwise unsupported encoding (e.g. 6 = A-law, 7 = µ-law, 2 = ADPCM).
    #[error("unsupported WAV format tag {format_tag:#06x} (only PCM and 32-bit float)")]
    UnsupportedFormat {
        /// The `wFormatTag` (or extensible sub-format) value.
        format_tag: u16,
    },
    /// A sample size that is not 8/16/24/32-bit integer or 32-bit float.
    #[error("unsupported WAV sample size: {bits} bits ({kind})")]
    UnsupportedBitDepth {
        /// Bits per sample.
        bits: u16,
        /// `"integer"` or `"float"`.
        kind: &'static str,
    },
    /// The header is internally inconsistent.
    #[error("malformed WAV file: {reason}")]
    Malformed {
        /// What is inconsistent.
        reason: String,
    },
    /// The frames to write are not usable (none, or mixed formats).
    #[error("cannot write WAV: {0}")]
    Audio(#[from] AudioError),
    /// The encoder failed.
    #[error("WAV encoding failed: {reason}")]
    Encode {
        /// The encoder's error.
        reason: String,
    },
}

/// Reads a WAV file into one frame of interleaved 16-bit samples.
pub fn read_wav_file(path: impl AsRef<Path>) -> Result<AudioFrame, WavError> {
    decode_wav(&std::fs::read(path)?)
}

/// Reads a WAV stream (to its end) into one frame of interleaved 16-bit samples.
pub fn read_wav(mut reader: impl Read) -> Result<AudioFrame, WavError> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    decode_wav(&bytes)
}

/// Decodes WAV bytes into one frame of interleaved 16-bit samples.
///
/// 8-bit samples are scaled up, 24/32-bit integers keep their top 16 bits and floats are
/// clamped to `[-1, 1]`. Use [`AudioFrame::chunks`] or [`super::AudioByteStream`] to split the
/// result into fixed-size frames.
pub fn decode_wav(bytes: &[u8]) -> Result<AudioFrame, WavError> {
    let layout = parse_layout(bytes)?;
    let data = &bytes[layout.data_start..layout.data_start + layout.data_len];
    let samples: Vec<i16> = match (layout.float, layout.bits) {
        (false, 8) => data.iter().map(|&b| ((b as i16) - 128) << 8).collect(),
        (false, 16) => data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
        (false, 24) => data
            .chunks_exact(3)
            .map(|b| (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 16) as i16)
            .collect(),
        (false, 32) => data
            .chunks_exact(4)
            .map(|b| (i32::from_le_bytes([b[0], b[1], b[2], b[3]]) >> 16) as i16)
            .collect(),
        (true, 32) => data
            .chunks_exact(4)
            .map(|b| f32_to_i16(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        (float, bits) => {
            return Err(WavError::UnsupportedBitDepth {
                bits,
                kind: if float { "float" } else { "integer" },
            })
        }
    };
    Ok(AudioFrame::new(
        samples,
        layout.sample_rate,
        layout.channels,
    )?)
}

/// Writes frames (same rate and channel count) as a 16-bit PCM WAV file.
pub fn write_wav_file(path: impl AsRef<Path>, frames: &[AudioFrame]) -> Result<(), WavError> {
    let bytes = encode_wav(frames)?;
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Writes frames (same rate and channel count) as 16-bit PCM WAV to a seekable writer.
pub fn write_wav<W: Write + Seek>(writer: W, frames: &[AudioFrame]) -> Result<(), WavError> {
    let all = combine_frames(frames)?;
    // The RIFF data size is a u32 byte count.
    if all.data.len() > (u32::MAX / 2) as usize {
        return Err(WavError::Encode {
            reason: format!("{} samples do not fit in a WAV file", all.data.len()),
        });
    }
    let spec = hound::WavSpec {
        channels: all.num_channels,
        sample_rate: all.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let encode = |e: hound::Error| WavError::Encode {
        reason: e.to_string(),
    };
    let mut w = hound::WavWriter::new(writer, spec).map_err(encode)?;
    {
        let mut samples = w.get_i16_writer(all.data.len() as u32);
        for &s in &all.data {
            samples.write_sample(s);
        }
        samples.flush().map_err(encode)?;
    }
    w.finalize().map_err(encode)
}

/// Encodes frames (same rate and channel count) as 16-bit PCM WAV bytes (e.g. for an STT
/// upload).
pub fn encode_wav(frames: &[AudioFrame]) -> Result<Vec<u8>, WavError> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    write_wav(&mut cursor, frames)?;
    Ok(cursor.into_inner())
}

/// Where the samples are and how they are encoded.
struct Layout {
    float: bool,
    bits: u16,
    channels: u16,
    sample_rate: u32,
    data_start: usize,
    data_len: usize,
}

struct Fmt {
    format_tag: u16,
    channels: u16,
    sample_rate: u32,
    block_align: u16,
    bits: u16,
}

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn parse_layout(bytes: &[u8]) -> Result<Layout, WavError> {
    if bytes.is_empty() {
        return Err(WavError::Empty);
    }
    if bytes.len() < 12 {
        return Err(WavError::TruncatedHeader {
            part: format!("{} bytes, the RIFF header needs 12", bytes.len()),
        });
    }
    if &bytes[0..4] != b"RIFF" {
        return Err(WavError::NotWav {
            reason: format!(
                "starts with {:?}, not \"RIFF\"",
                String::from_utf8_lossy(&bytes[0..4])
            ),
        });
    }
    if &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav {
            reason: "RIFF type is not \"WAVE\"".into(),
        });
    }
    let mut fmt: Option<Fmt> = None;
    let mut pos = 12usize;
    loop {
        if bytes.len() - pos < 8 {
            let what = if fmt.is_none() { "fmt " } else { "data" };
            return if pos == bytes.len() {
                Err(WavError::MissingChunk(what))
            } else {
                Err(WavError::TruncatedHeader {
                    part: format!("chunk header at byte {pos} is cut off"),
                })
            };
        }
        let id = &bytes[pos..pos + 4];
        let size = u32_at(bytes, pos + 4);
        let body = pos + 8;
        let available = bytes.len() - body;
        if id == b"fmt " {
            fmt = Some(parse_fmt(&bytes[body..], size as usize)?);
        } else if id == b"data" {
            let fmt = fmt.ok_or(WavError::MissingChunk("fmt "))?;
            let data_len = if size == u32::MAX || (size == 0 && available > 0) {
                // Streamed WAV: the size was unknown when the header was written.
                available - available % fmt.block_align.max(1) as usize
            } else if size as usize > available {
                return Err(WavError::TruncatedData {
                    declared: size as u64,
                    available: available as u64,
                });
            } else {
                size as usize
            };
            return finish_layout(fmt, body, data_len);
        }
        // Chunks are padded to an even size.
        let skip = size as u64 + (size as u64 & 1);
        if skip > available as u64 {
            let what = if fmt.is_none() { "fmt " } else { "data" };
            return Err(WavError::MissingChunk(what));
        }
        pos = body + skip as usize;
    }
}

fn parse_fmt(body: &[u8], size: usize) -> Result<Fmt, WavError> {
    if size < 16 || body.len() < 16 {
        return Err(WavError::TruncatedHeader {
            part: format!("fmt chunk has {} bytes, needs 16", size.min(body.len())),
        });
    }
    let mut format_tag = u16_at(body, 0);
    if format_tag == WAVE_FORMAT_EXTENSIBLE {
        if size < 40 || body.len() < 40 {
            return Err(WavError::TruncatedHeader {
                part: "WAVE_FORMAT_EXTENSIBLE fmt chunk needs 40 bytes".into(),
            });
        }
        // The first two bytes of the sub-format GUID are the actual format tag.
        format_tag = u16_at(body, 24);
    }
    Ok(Fmt {
        format_tag,
        channels: u16_at(body, 2),
        sample_rate: u32_at(body, 4),
        block_align: u16_at(body, 12),
        bits: u16_at(body, 14),
    })
}

fn finish_layout(fmt: Fmt, data_start: usize, data_len: usize) -> Result<Layout, WavError> {
    if fmt.channels == 0 {
        return Err(WavError::ZeroChannels);
    }
    if fmt.sample_rate == 0 {
        return Err(WavError::ZeroSampleRate);
    }
    if crate::audio::check_sample_rate(fmt.sample_rate).is_err() {
        return Err(WavError::UnsupportedSampleRate(fmt.sample_rate));
    }
    let float = match fmt.format_tag {
        WAVE_FORMAT_PCM => false,
        WAVE_FORMAT_IEEE_FLOAT => true,
        other => return Err(WavError::UnsupportedFormat { format_tag: other }),
    };
    let supported = if float {
        fmt.bits == 32
    } else {
        matches!(fmt.bits, 8 | 16 | 24 | 32)
    };
    if !supported {
        return Err(WavError::UnsupportedBitDepth {
            bits: fmt.bits,
            kind: if float { "float" } else { "integer" },
        });
    }
    let frame_bytes = fmt.channels as usize * (fmt.bits as usize / 8);
    if fmt.block_align as usize != frame_bytes {
        return Err(WavError::Malformed {
            reason: format!(
                "block align {} does not match {} channels x {} bits",
                fmt.block_align, fmt.channels, fmt.bits
            ),
        });
    }
    if !data_len.is_multiple_of(frame_bytes) {
        return Err(WavError::TruncatedData {
            declared: data_len as u64,
            available: (data_len - data_len % frame_bytes) as u64,
        });
    }
    Ok(Layout {
        float,
        bits: fmt.bits,
        channels: fmt.channels,
        sample_rate: fmt.sample_rate,
        data_start,
        data_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made WAV: `fmt_body` is the fmt chunk body, `data` the data chunk body, and
    /// `data_size` overrides the declared data size.
    fn wav_bytes(fmt_body: &[u8], data: &[u8], data_size: Option<u32>) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&0u32.to_le_bytes()); // RIFF size is not checked
        b.extend_from_slice(b"WAVE");
        b.extend_from_slice(b"fmt ");
        b.extend_from_slice(&(fmt_body.len() as u32).to_le_bytes());
        b.extend_from_slice(fmt_body);
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_size.unwrap_or(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    fn fmt(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let align = channels * bits / 8;
        let mut f = Vec::new();
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&channels.to_le_bytes());
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&rate.wrapping_mul(align as u32).to_le_bytes());
        f.extend_from_slice(&align.to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f
    }

    #[test]
    fn roundtrip_through_hound_writer() {
        let frame = AudioFrame::sine(440.0, 0.7, 16_000, 2, 1_000);
        let bytes = encode_wav(&frame.chunks(300)).unwrap();
        assert_eq!(decode_wav(&bytes).unwrap(), frame);
        assert_eq!(read_wav(&bytes[..]).unwrap(), frame);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        write_wav_file(&path, std::slice::from_ref(&frame)).unwrap();
        assert_eq!(read_wav_file(&path).unwrap(), frame);
        assert!(matches!(
            read_wav_file("/nonexistent/x.wav"),
            Err(WavError::Io(_))
        ));
    }

    #[test]
    fn write_rejects_bad_frame_lists() {
        assert!(matches!(
            encode_wav(&[]),
            Err(WavError::Audio(AudioError::NoFrames))
        ));
        let a = AudioFrame::silence(16_000, 1, 10);
        let b = AudioFrame::silence(8_000, 1, 10);
        assert!(matches!(
            encode_wav(&[a, b]),
            Err(WavError::Audio(AudioError::FormatMismatch { .. }))
        ));
    }

    #[test]
    fn reads_every_supported_sample_format() {
        // 8-bit unsigned: 0 -> -32768, 128 -> 0, 255 -> 32512.
        let f = decode_wav(&wav_bytes(&fmt(1, 1, 8_000, 8), &[0, 128, 255], None)).unwrap();
        assert_eq!(f.data, [-32768, 0, 32512]);
        // 24-bit: 0x7FFFFF -> 32767, 0x800000 -> -32768, 0x000100 -> 1.
        let data = [0xFF, 0xFF, 0x7F, 0x00, 0x00, 0x80, 0x00, 0x01, 0x00];
        let f = decode_wav(&wav_bytes(&fmt(1, 1, 48_000, 24), &data, None)).unwrap();
        assert_eq!(f.data, [32767, -32768, 1]);
        assert_eq!(f.sample_rate, 48_000);
        // 32-bit integer, stereo.
        let data: Vec<u8> = [i32::MAX, i32::MIN, 1 << 16, -(1 << 16)]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f = decode_wav(&wav_bytes(&fmt(1, 2, 44_100, 32), &data, None)).unwrap();
        assert_eq!((f.num_channels, f.samples_per_channel), (2, 2));
        assert_eq!(f.data, [32767, -32768, 1, -1]);
        // 32-bit float, clamped.
        let data: Vec<u8> = [0.5f32, -1.0, 2.0, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f = decode_wav(&wav_bytes(&fmt(3, 1, 24_000, 32), &data, None)).unwrap();
        assert_eq!(f.data, [16384, -32768, 32767, 0]);
        // WAVE_FORMAT_EXTENSIBLE wrapping float.
        let mut ext = fmt(0xFFFE, 1, 24_000, 32);
        ext.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        ext.extend_from_slice(&32u16.to_le_bytes()); // valid bits
        ext.extend_from_slice(&4u32.to_le_bytes()); // channel mask
        ext.extend_from_slice(&3u16.to_le_bytes()); // sub-format: float
        ext.extend_from_slice(&[0; 14]);
        let f = decode_wav(&wav_bytes(&ext, &0.25f32.to_le_bytes(), None)).unwrap();
        assert_eq!(f.data, [8192]);
    }

    #[test]
    fn skips_other_chunks_and_reads_streamed_sizes() {
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF\0\0\0\0WAVE");
        b.extend_from_slice(b"LIST");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&[1, 2, 3, 0]); // odd size + pad byte
        b.extend_from_slice(b"fmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&fmt(1, 1, 16_000, 16));
        b.extend_from_slice(b"data");
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&[1, 0, 2, 0, 3]); // trailing odd byte ignored
        assert_eq!(decode_wav(&b).unwrap().data, [1, 2]);
        let f = decode_wav(&wav_bytes(&fmt(1, 1, 16_000, 16), &[5, 0], Some(0))).unwrap();
        assert_eq!(f.data, [5]);
        // A truly empty data chunk is a valid empty file.
        let f = decode_wav(&wav_bytes(&fmt(1, 1, 16_000, 16), &[], None)).unwrap();
        assert!(f.is_empty());
    }

    #[test]
    fn malformed_inputs_give_typed_errors() {
        let good = wav_bytes(&fmt(1, 1, 16_000, 16), &[1, 0, 2, 0], None);
        assert!(matches!(decode_wav(&[]), Err(WavError::Empty)));
        for cut in [1, 4, 11] {
            assert!(
                matches!(
                    decode_wav(&good[..cut]),
                    Err(WavError::TruncatedHeader { .. })
                ),
                "cut {cut}"
            );
        }
        assert!(matches!(
            decode_wav(&good[..12]),
            Err(WavError::MissingChunk("fmt "))
        ));
        for cut in [15, 20, 30, 38, 42] {
            assert!(
                matches!(
                    decode_wav(&good[..cut]),
                    Err(WavError::TruncatedHeader { .. })
                ),
                "cut {cut}: {:?}",
                decode_wav(&good[..cut])
            );
        }
        assert!(matches!(
            decode_wav(&good[..36]),
            Err(WavError::MissingChunk("data"))
        ));
        assert!(matches!(
            decode_wav(&good[..46]),
            Err(WavError::TruncatedData {
                declared: 4,
                available: 2
            })
        ));
        assert!(matches!(
            decode_wav(&wav_bytes(&fmt(1, 1, 16_000, 16), &[1, 0, 2], None)),
            Err(WavError::TruncatedData { .. })
        ));
        assert!(matches!(
            decode_wav(&wav_bytes(&fmt(1, 0, 16_000, 16), &[], None)),
            Err(WavError::ZeroChannels)
        ));
        assert!(matches!(
            decode_wav(&wav_bytes(&fmt(1, 1, 0, 16), &[], None)),
            Err(WavError::ZeroSampleRate)
        ));
        // Issue 15 item 2: a 46-byte WAV declaring 4 GHz is refused before anything is sized
        // from it (it used to abort the process in the resampler).
        for rate in [u32::MAX, 4_000_000_000, 192_001, 7_999, 1] {
            let bytes = wav_bytes(&fmt(1, 1, rate, 16), &[0, 0], None);
            assert_eq!(bytes.len(), 46);
            assert!(matches!(
                decode_wav(&bytes),
                Err(WavError::UnsupportedSampleRate(r)) if r == rate
            ));
            assert!(matches!(
                read_wav(&bytes[..]),
                Err(WavError::UnsupportedSampleRate(r)) if r == rate
            ));
        }
        for tag in [2u16, 6, 7, 0x55] {
            assert!(matches!(
                decode_wav(&wav_bytes(&fmt(tag, 1, 8_000, 8), &[0], None)),
                Err(WavError::UnsupportedFormat { format_tag }) if format_tag == tag
            ));
        }
        assert!(matches!(
            decode_wav(&wav_bytes(&fmt(1, 1, 16_000, 12), &[0, 0], None)),
            Err(WavError::UnsupportedBitDepth { bits: 12, .. })
        ));
        assert!(matches!(
            decode_wav(&wav_bytes(&fmt(3, 1, 16_000, 64), &[0; 8], None)),
            Err(WavError::UnsupportedBitDepth {
                bits: 64,
                kind: "float"
            })
        ));
        let mut bad_align = fmt(1, 2, 16_000, 16);
        bad_align[12] = 3;
        assert!(matches!(
            decode_wav(&wav_bytes(&bad_align, &[0; 6], None)),
            Err(WavError::Malformed { .. })
        ));
        assert!(matches!(
            decode_wav(b"RIFX\0\0\0\0WAVE"),
            Err(WavError::NotWav { .. })
        ));
        assert!(matches!(
            decode_wav(b"RIFF\0\0\0\0AVI "),
            Err(WavError::NotWav { .. })
        ));
        let mut short_fmt = wav_bytes(&fmt(1, 1, 16_000, 16)[..14], &[], None);
        assert!(matches!(
            decode_wav(&short_fmt),
            Err(WavError::TruncatedHeader { .. })
        ));
        // Data before fmt.
        short_fmt.clear();
        short_fmt.extend_from_slice(b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\x01\0");
        assert!(matches!(
            decode_wav(&short_fmt),
            Err(WavError::MissingChunk("fmt "))
        ));
        // A huge declared chunk size never panics.
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_wav(&huge).is_err());
    }
}
