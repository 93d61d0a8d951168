//! The session tape's file format (see [`SessionTape::write_to`]).
//!
//! The file mirrors the model event types (`SpeechEvent`, `ChatChunk`, `SynthesizedAudio`,
//! `ApiError`, the capabilities) in local records instead of putting serde on the core types:
//! the format is a contract with files written by older builds, and must not change when an
//! in-memory type gains a field. The small types that already have a serde form used in session
//! reports (`TimedString`, `FunctionToolCall`, `CompletionUsage`, `ChatRole`) are written in it.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::replay::{ModelInfo, SessionTape, Timed};
use crate::audio::AudioFrame;
use crate::llm::{ChatChunk, ChatRole, ChoiceDelta, CompletionUsage, FunctionToolCall};
use crate::stt::{
    AlignedTranscript, RecognitionUsage, SpeechData, SpeechEvent, SpeechEventType, SttCapabilities,
};
use crate::tts::{SynthesizedAudio, TtsCapabilities};
use crate::types::{ApiError, TimedString};

/// The first bytes of a tape file.
pub const TAPE_MAGIC: &[u8; 6] = b"LKTAPE";

/// The format version this build writes and reads.
pub const TAPE_FORMAT_VERSION: u16 = 1;

/// Why a tape could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TapeError {
    /// Reading or writing failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (and the file, when known).
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The data does not start with [`TAPE_MAGIC`].
    #[error("not a session tape (no LKTAPE header)")]
    NotATape,
    /// The file was written by a format this build does not read.
    #[error("unsupported session tape version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The file's version.
        found: u16,
        /// [`TAPE_FORMAT_VERSION`].
        supported: u16,
    },
    /// The data ends before the tape's end record.
    #[error("truncated session tape: {0}")]
    Truncated(String),
    /// A record or the whole tape is larger than the [`TapeLimits`] allow.
    #[error("session tape too large: {what} of {size} bytes (limit {limit})")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A record cannot be understood.
    #[error("corrupt session tape, record {record}: {reason}")]
    Corrupt {
        /// The record's position (0 is the header record).
        record: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Bounds on what reading a tape allocates (a tape file is untrusted input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapeLimits {
    /// Largest JSON part of one record (default 1 MiB).
    pub max_record_json: u32,
    /// Largest audio part of one record (default 16 MiB: 87 s of 48 kHz stereo).
    pub max_record_audio: u32,
    /// Largest whole tape (default 1 GiB).
    pub max_total_bytes: u64,
}

impl Default for TapeLimits {
    fn default() -> Self {
        Self {
            max_record_json: 1024 * 1024,
            max_record_audio: 16 * 1024 * 1024,
            max_total_bytes: 1024 * 1024 * 1024,
        }
    }
}

// ---- records ----

/// One record's JSON part. Records with audio are followed by its PCM.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Record {
    /// The first record.
    Header {
        /// The crate version that wrote the tape (informational).
        writer: String,
        duration_ns: u64,
        truncated: bool,
        stt: Option<ModelRec<SttCapsRec>>,
        llm: Option<ModelRec<()>>,
        tts: Option<ModelRec<TtsInfoRec>>,
    },
    /// A frame of the user's audio (PCM follows).
    UserAudio {
        at_ns: u64,
        #[serde(flatten)]
        format: AudioFormat,
    },
    /// A new STT stream: the next `stt` records belong to it.
    SttTake,
    /// A new LLM request.
    LlmTake,
    /// A new TTS request.
    TtsTake,
    /// One STT event of the current STT take.
    Stt {
        at_ns: u64,
        event: Outcome<SpeechEventRec>,
    },
    /// One LLM chunk of the current LLM take.
    Llm {
        at_ns: u64,
        chunk: Outcome<ChunkRec>,
    },
    /// One TTS frame of the current TTS take (PCM follows when it is `ok`).
    Tts {
        at_ns: u64,
        audio: Outcome<SynthRec>,
    },
    /// The last record: how many came before it (the header included).
    End { records: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome<T> {
    Ok(T),
    Err(ErrorRec),
}

#[derive(Debug, Serialize, Deserialize)]
struct ModelRec<C> {
    label: String,
    model: String,
    provider: String,
    extra: C,
}

#[derive(Debug, Serialize, Deserialize)]
struct SttCapsRec {
    streaming: bool,
    interim_results: bool,
    diarization: bool,
    /// `word`, `chunk` or absent.
    aligned_transcript: Option<String>,
    offline_recognize: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct TtsInfoRec {
    streaming: bool,
    aligned_transcript: bool,
    sample_rate: u32,
    num_channels: u16,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct AudioFormat {
    sample_rate: u32,
    num_channels: u16,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ErrorRec {
    Status {
        status: u16,
        message: String,
        request_id: Option<String>,
        retryable: bool,
    },
    Connection {
        message: String,
        retryable: bool,
    },
    Timeout {
        ns: u64,
    },
    Protocol {
        message: String,
    },
    Other {
        message: String,
    },
    TaskPanicked {
        message: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct SpeechEventRec {
    /// `start_of_speech`, `interim_transcript`, `preflight_transcript`, `final_transcript`,
    /// `end_of_speech` or `recognition_usage`.
    kind: String,
    request_id: String,
    alternatives: Vec<SpeechDataRec>,
    usage: Option<UsageRec>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SpeechDataRec {
    language: String,
    text: String,
    confidence: f32,
    start_time: f64,
    end_time: f64,
    words: Vec<TimedString>,
    speaker_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UsageRec {
    audio_duration: f64,
    request_duration: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChunkRec {
    id: String,
    delta: Option<DeltaRec>,
    usage: Option<CompletionUsage>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DeltaRec {
    role: Option<ChatRole>,
    content: Option<String>,
    tool_calls: Vec<FunctionToolCall>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SynthRec {
    #[serde(flatten)]
    format: AudioFormat,
    request_id: String,
    segment_id: String,
    is_final: bool,
    delta_text: String,
    timed_words: Vec<TimedString>,
}

// ---- conversions ----

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// `ApiError` is non-exhaustive: a kind added later is kept as text.
#[allow(unreachable_patterns)]
fn error_rec(e: &ApiError) -> ErrorRec {
    match e {
        ApiError::Status {
            status,
            message,
            request_id,
            retryable,
        } => ErrorRec::Status {
            status: *status,
            message: message.clone(),
            request_id: request_id.clone(),
            retryable: *retryable,
        },
        ApiError::Connection { message, retryable } => ErrorRec::Connection {
            message: message.clone(),
            retryable: *retryable,
        },
        ApiError::Timeout(d) => ErrorRec::Timeout { ns: ns(*d) },
        ApiError::Protocol { message } => ErrorRec::Protocol {
            message: message.clone(),
        },
        ApiError::Other { message } => ErrorRec::Other {
            message: message.clone(),
        },
        ApiError::TaskPanicked { message } => ErrorRec::TaskPanicked {
            message: message.clone(),
        },
        other => ErrorRec::Other {
            message: other.to_string(),
        },
    }
}

fn api_error(e: ErrorRec) -> ApiError {
    match e {
        ErrorRec::Status {
            status,
            message,
            request_id,
            retryable,
        } => ApiError::Status {
            status,
            message,
            request_id,
            retryable,
        },
        ErrorRec::Connection { message, retryable } => ApiError::Connection { message, retryable },
        ErrorRec::Timeout { ns } => ApiError::Timeout(Duration::from_nanos(ns)),
        ErrorRec::Protocol { message } => ApiError::Protocol { message },
        ErrorRec::Other { message } => ApiError::Other { message },
        ErrorRec::TaskPanicked { message } => ApiError::TaskPanicked { message },
    }
}

fn outcome<T, R>(item: &Result<T, ApiError>, to_rec: impl FnOnce(&T) -> R) -> Outcome<R> {
    match item {
        Ok(v) => Outcome::Ok(to_rec(v)),
        Err(e) => Outcome::Err(error_rec(e)),
    }
}

// `SpeechEventType` is non-exhaustive: a kind added later reads back as an error.
#[allow(unreachable_patterns)]
fn event_kind_name(kind: SpeechEventType) -> &'static str {
    match kind {
        SpeechEventType::StartOfSpeech => "start_of_speech",
        SpeechEventType::InterimTranscript => "interim_transcript",
        SpeechEventType::PreflightTranscript => "preflight_transcript",
        SpeechEventType::FinalTranscript => "final_transcript",
        SpeechEventType::EndOfSpeech => "end_of_speech",
        SpeechEventType::RecognitionUsage => "recognition_usage",
        _ => "unknown",
    }
}

fn event_kind(name: &str) -> Option<SpeechEventType> {
    Some(match name {
        "start_of_speech" => SpeechEventType::StartOfSpeech,
        "interim_transcript" => SpeechEventType::InterimTranscript,
        "preflight_transcript" => SpeechEventType::PreflightTranscript,
        "final_transcript" => SpeechEventType::FinalTranscript,
        "end_of_speech" => SpeechEventType::EndOfSpeech,
        "recognition_usage" => SpeechEventType::RecognitionUsage,
        _ => return None,
    })
}

fn speech_event_rec(e: &SpeechEvent) -> SpeechEventRec {
    SpeechEventRec {
        kind: event_kind_name(e.kind).to_owned(),
        request_id: e.request_id.clone(),
        alternatives: e
            .alternatives
            .iter()
            .map(|a| SpeechDataRec {
                language: a.language.clone(),
                text: a.text.clone(),
                confidence: a.confidence,
                start_time: a.start_time,
                end_time: a.end_time,
                words: a.words.clone(),
                speaker_id: a.speaker_id.clone(),
            })
            .collect(),
        usage: e.recognition_usage.map(|u| UsageRec {
            audio_duration: u.audio_duration,
            request_duration: u.request_duration,
        }),
    }
}

fn speech_event(r: SpeechEventRec) -> Result<SpeechEvent, String> {
    let kind = event_kind(&r.kind).ok_or_else(|| format!("unknown STT event kind {:?}", r.kind))?;
    let mut event = SpeechEvent::new(kind);
    event.request_id = r.request_id;
    event.alternatives = r
        .alternatives
        .into_iter()
        .map(|a| SpeechData {
            language: a.language,
            text: a.text,
            confidence: a.confidence,
            start_time: a.start_time,
            end_time: a.end_time,
            words: a.words,
            speaker_id: a.speaker_id,
        })
        .collect();
    event.recognition_usage = r.usage.map(|u| RecognitionUsage {
        audio_duration: u.audio_duration,
        request_duration: u.request_duration,
    });
    Ok(event)
}

fn chunk_rec(c: &ChatChunk) -> ChunkRec {
    ChunkRec {
        id: c.id.clone(),
        delta: c.delta.as_ref().map(|d| DeltaRec {
            role: d.role,
            content: d.content.clone(),
            tool_calls: d.tool_calls.clone(),
        }),
        usage: c.usage,
    }
}

fn chunk(r: ChunkRec) -> ChatChunk {
    ChatChunk {
        id: r.id,
        delta: r.delta.map(|d| ChoiceDelta {
            role: d.role,
            content: d.content,
            tool_calls: d.tool_calls,
        }),
        usage: r.usage,
    }
}

fn format_of(frame: &AudioFrame) -> AudioFormat {
    AudioFormat {
        sample_rate: frame.sample_rate,
        num_channels: frame.num_channels,
    }
}

fn synth_rec(a: &SynthesizedAudio) -> SynthRec {
    SynthRec {
        format: format_of(&a.frame),
        request_id: a.request_id.clone(),
        segment_id: a.segment_id.clone(),
        is_final: a.is_final,
        delta_text: a.delta_text.clone(),
        timed_words: a.timed_words.clone(),
    }
}

fn aligned_name(a: Option<AlignedTranscript>) -> Option<String> {
    a.map(|a| {
        match a {
            AlignedTranscript::Word => "word",
            AlignedTranscript::Chunk => "chunk",
        }
        .to_owned()
    })
}

fn aligned(name: Option<&str>) -> Result<Option<AlignedTranscript>, String> {
    match name {
        None => Ok(None),
        Some("word") => Ok(Some(AlignedTranscript::Word)),
        Some("chunk") => Ok(Some(AlignedTranscript::Chunk)),
        Some(other) => Err(format!("unknown transcript alignment {other:?}")),
    }
}

// ---- writing ----

struct Writer<W: Write> {
    out: W,
    records: u64,
}

fn write_error(e: std::io::Error) -> TapeError {
    TapeError::Io {
        context: "cannot write the session tape".into(),
        source: e,
    }
}

impl<W: Write> Writer<W> {
    fn record(&mut self, record: &Record, pcm: Option<&[i16]>) -> Result<(), TapeError> {
        let json = serde_json::to_vec(record).map_err(|e| TapeError::Corrupt {
            record: self.records,
            reason: format!("cannot encode: {e}"),
        })?;
        let json_len = u32::try_from(json.len()).map_err(|_| TapeError::TooLarge {
            what: "record",
            size: json.len() as u64,
            limit: u64::from(u32::MAX),
        })?;
        let samples = pcm.unwrap_or(&[]);
        let pcm_len = samples
            .len()
            .checked_mul(2)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(TapeError::TooLarge {
                what: "audio record",
                size: (samples.len() as u64).saturating_mul(2),
                limit: u64::from(u32::MAX),
            })?;
        self.out
            .write_all(&json_len.to_le_bytes())
            .map_err(write_error)?;
        self.out.write_all(&json).map_err(write_error)?;
        self.out
            .write_all(&pcm_len.to_le_bytes())
            .map_err(write_error)?;
        let mut bytes = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        self.out.write_all(&bytes).map_err(write_error)?;
        self.records += 1;
        Ok(())
    }
}

impl SessionTape {
    /// Writes the tape in the session tape format, version [`TAPE_FORMAT_VERSION`]:
    ///
    /// - the 6 bytes `LKTAPE` ([`TAPE_MAGIC`]), then the version as a little-endian `u16`;
    /// - records, each: a little-endian `u32` length and that many bytes of JSON (an object
    ///   whose `type` says what it is), then a little-endian `u32` length and that many bytes of
    ///   16-bit little-endian interleaved PCM (empty for records without audio);
    /// - first a `header` record (models, duration, truncation), then `user_audio` records, then
    ///   for each STT stream, LLM request and TTS request a `stt_take` / `llm_take` /
    ///   `tts_take` record followed by its `stt` / `llm` / `tts` items (offsets in nanoseconds
    ///   from the take's start, provider errors as typed records), and last an `end` record
    ///   counting the records before it, so a cut file is detected.
    pub fn write_to(&self, out: impl Write) -> Result<(), TapeError> {
        let mut w = Writer { out, records: 0 };
        w.out.write_all(TAPE_MAGIC).map_err(write_error)?;
        w.out
            .write_all(&TAPE_FORMAT_VERSION.to_le_bytes())
            .map_err(write_error)?;
        w.record(
            &Record::Header {
                writer: format!("livekit-agents {}", env!("CARGO_PKG_VERSION")),
                duration_ns: ns(self.duration),
                truncated: self.truncated,
                stt: self.stt_info.as_ref().map(|i| ModelRec {
                    label: i.label.clone(),
                    model: i.model.clone(),
                    provider: i.provider.clone(),
                    extra: SttCapsRec {
                        streaming: i.extra.streaming,
                        interim_results: i.extra.interim_results,
                        diarization: i.extra.diarization,
                        aligned_transcript: aligned_name(i.extra.aligned_transcript),
                        offline_recognize: i.extra.offline_recognize,
                    },
                }),
                llm: self.llm_info.as_ref().map(|i| ModelRec {
                    label: i.label.clone(),
                    model: i.model.clone(),
                    provider: i.provider.clone(),
                    extra: (),
                }),
                tts: self.tts_info.as_ref().map(|i| ModelRec {
                    label: i.label.clone(),
                    model: i.model.clone(),
                    provider: i.provider.clone(),
                    extra: TtsInfoRec {
                        streaming: i.extra.0.streaming,
                        aligned_transcript: i.extra.0.aligned_transcript,
                        sample_rate: i.extra.1,
                        num_channels: i.extra.2,
                    },
                }),
            },
            None,
        )?;
        for (at, frame) in &self.user_audio {
            w.record(
                &Record::UserAudio {
                    at_ns: ns(*at),
                    format: format_of(frame),
                },
                Some(&frame.data),
            )?;
        }
        for take in &self.stt {
            w.record(&Record::SttTake, None)?;
            for (at, ev) in take {
                w.record(
                    &Record::Stt {
                        at_ns: ns(*at),
                        event: outcome(ev, speech_event_rec),
                    },
                    None,
                )?;
            }
        }
        for take in &self.llm {
            w.record(&Record::LlmTake, None)?;
            for (at, c) in take {
                w.record(
                    &Record::Llm {
                        at_ns: ns(*at),
                        chunk: outcome(c, chunk_rec),
                    },
                    None,
                )?;
            }
        }
        for take in &self.tts {
            w.record(&Record::TtsTake, None)?;
            for (at, a) in take {
                let pcm = a.as_ref().ok().map(|a| a.frame.data.as_slice());
                w.record(
                    &Record::Tts {
                        at_ns: ns(*at),
                        audio: outcome(a, synth_rec),
                    },
                    pcm,
                )?;
            }
        }
        let records = w.records;
        w.record(&Record::End { records }, None)?;
        w.out.flush().map_err(write_error)
    }

    /// Writes the tape to `path` (see [`write_to`](Self::write_to)), replacing the file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), TapeError> {
        let path = path.as_ref();
        let context = |what: &str| format!("cannot {what} the session tape {}", path.display());
        let file = std::fs::File::create(path).map_err(|source| TapeError::Io {
            context: context("create"),
            source,
        })?;
        let mut out = std::io::BufWriter::new(file);
        self.write_to(&mut out).map_err(|e| match e {
            TapeError::Io { source, .. } => TapeError::Io {
                context: context("write"),
                source,
            },
            other => other,
        })?;
        let file = out.into_inner().map_err(|e| TapeError::Io {
            context: context("write"),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(|source| TapeError::Io {
            context: context("write"),
            source,
        })
    }

    /// Reads a tape written by [`write_to`](Self::write_to), within the default
    /// [`TapeLimits`].
    pub fn read_from(input: impl Read) -> Result<SessionTape, TapeError> {
        Self::read_with_limits(input, TapeLimits::default())
    }

    /// Reads a tape within `limits`: a cut, corrupt or oversized input is an error, never a
    /// panic or an unbounded allocation.
    pub fn read_with_limits(
        input: impl Read,
        limits: TapeLimits,
    ) -> Result<SessionTape, TapeError> {
        Reader {
            input,
            limits,
            total: 0,
            records: 0,
        }
        .read()
    }

    /// Reads the tape file at `path` within the default [`TapeLimits`].
    pub fn load(path: impl AsRef<Path>) -> Result<SessionTape, TapeError> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| TapeError::Io {
            context: format!("cannot open the session tape {}", path.display()),
            source,
        })?;
        Self::read_from(std::io::BufReader::new(file))
    }
}

// ---- reading ----

struct Reader<R: Read> {
    input: R,
    limits: TapeLimits,
    total: u64,
    records: u64,
}

impl<R: Read> Reader<R> {
    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), TapeError> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                TapeError::Truncated(format!("the data ends inside {what}"))
            } else {
                TapeError::Io {
                    context: "cannot read the session tape".into(),
                    source: e,
                }
            }
        })
    }

    fn len(&mut self, what: &str, limit: u32, name: &'static str) -> Result<usize, TapeError> {
        let mut b = [0u8; 4];
        self.exact(&mut b, what)?;
        let n = u32::from_le_bytes(b);
        if n > limit {
            return Err(TapeError::TooLarge {
                what: name,
                size: u64::from(n),
                limit: u64::from(limit),
            });
        }
        self.total = self.total.saturating_add(u64::from(n)).saturating_add(4);
        if self.total > self.limits.max_total_bytes {
            return Err(TapeError::TooLarge {
                what: "tape",
                size: self.total,
                limit: self.limits.max_total_bytes,
            });
        }
        usize::try_from(n).map_err(|_| TapeError::TooLarge {
            what: name,
            size: u64::from(n),
            limit: u64::from(limit),
        })
    }

    /// The next record and its PCM.
    fn next(&mut self) -> Result<(Record, Vec<i16>), TapeError> {
        let json_len = self.len(
            "a record length",
            self.limits.max_record_json,
            "record JSON",
        )?;
        let mut json = vec![0u8; json_len];
        self.exact(&mut json, "a record")?;
        let pcm_len = self.len(
            "an audio length",
            self.limits.max_record_audio,
            "record audio",
        )?;
        if !pcm_len.is_multiple_of(2) {
            return Err(self.corrupt("odd number of audio bytes"));
        }
        let mut pcm = vec![0u8; pcm_len];
        self.exact(&mut pcm, "audio")?;
        let record: Record = serde_json::from_slice(&json)
            .map_err(|e| self.corrupt(format!("invalid record: {e}")))?;
        let samples = pcm
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        Ok((record, samples))
    }

    fn corrupt(&self, reason: impl Into<String>) -> TapeError {
        TapeError::Corrupt {
            record: self.records,
            reason: reason.into(),
        }
    }

    fn frame(&self, format: AudioFormat, data: Vec<i16>) -> Result<AudioFrame, TapeError> {
        if format.sample_rate == 0 || format.sample_rate > 768_000 {
            return Err(self.corrupt(format!("invalid sample rate {}", format.sample_rate)));
        }
        if format.num_channels == 0 || format.num_channels > 32 {
            return Err(self.corrupt(format!("invalid channel count {}", format.num_channels)));
        }
        let channels = usize::from(format.num_channels);
        if !data.len().is_multiple_of(channels) {
            return Err(self.corrupt("audio length is not a whole number of frames"));
        }
        Ok(AudioFrame {
            samples_per_channel: data.len() / channels,
            data,
            sample_rate: format.sample_rate,
            num_channels: format.num_channels,
        })
    }

    fn read(mut self) -> Result<SessionTape, TapeError> {
        let mut magic = [0u8; 6];
        self.exact(&mut magic, "the file header")?;
        if &magic != TAPE_MAGIC {
            return Err(TapeError::NotATape);
        }
        let mut version = [0u8; 2];
        self.exact(&mut version, "the file header")?;
        let version = u16::from_le_bytes(version);
        if version != TAPE_FORMAT_VERSION {
            return Err(TapeError::UnsupportedVersion {
                found: version,
                supported: TAPE_FORMAT_VERSION,
            });
        }
        let mut tape = SessionTape::default();
        let (header, pcm) = self.next()?;
        if !pcm.is_empty() {
            return Err(self.corrupt("audio on the header"));
        }
        let Record::Header {
            writer,
            duration_ns,
            truncated,
            stt,
            llm,
            tts,
        } = header
        else {
            return Err(self.corrupt("the first record is not the header"));
        };
        let writer: String = writer.chars().take(80).collect();
        tracing::debug!(%writer, "reading a session tape");
        tape.duration = Duration::from_nanos(duration_ns);
        tape.truncated = truncated;
        if let Some(m) = stt {
            tape.stt_info = Some(ModelInfo {
                label: m.label,
                model: m.model,
                provider: m.provider,
                extra: SttCapabilities {
                    streaming: m.extra.streaming,
                    interim_results: m.extra.interim_results,
                    diarization: m.extra.diarization,
                    aligned_transcript: aligned(m.extra.aligned_transcript.as_deref())
                        .map_err(|e| self.corrupt(e))?,
                    offline_recognize: m.extra.offline_recognize,
                },
            });
        }
        tape.llm_info = llm.map(|m| ModelInfo {
            label: m.label,
            model: m.model,
            provider: m.provider,
            extra: (),
        });
        tape.tts_info = tts.map(|m| ModelInfo {
            label: m.label,
            model: m.model,
            provider: m.provider,
            extra: (
                TtsCapabilities {
                    streaming: m.extra.streaming,
                    aligned_transcript: m.extra.aligned_transcript,
                },
                m.extra.sample_rate,
                m.extra.num_channels,
            ),
        });
        self.records = 1;
        loop {
            let (record, pcm) = self.next()?;
            let has_audio = !pcm.is_empty();
            let carries_audio = matches!(
                record,
                Record::UserAudio { .. }
                    | Record::Tts {
                        audio: Outcome::Ok(_),
                        ..
                    }
            );
            if has_audio && !carries_audio {
                return Err(self.corrupt("audio on a record that has none"));
            }
            match record {
                Record::Header { .. } => return Err(self.corrupt("a second header")),
                Record::UserAudio { at_ns, format } => {
                    let frame = self.frame(format, pcm)?;
                    tape.user_audio.push((Duration::from_nanos(at_ns), frame));
                }
                Record::SttTake => tape.stt.push(Vec::new()),
                Record::LlmTake => tape.llm.push(Vec::new()),
                Record::TtsTake => tape.tts.push(Vec::new()),
                Record::Stt { at_ns, event } => {
                    let item = match event {
                        Outcome::Ok(r) => Ok(speech_event(r).map_err(|e| self.corrupt(e))?),
                        Outcome::Err(e) => Err(api_error(e)),
                    };
                    self.push(&mut tape.stt, at_ns, item, "an STT event")?;
                }
                Record::Llm { at_ns, chunk: c } => {
                    let item = match c {
                        Outcome::Ok(r) => Ok(chunk(r)),
                        Outcome::Err(e) => Err(api_error(e)),
                    };
                    self.push(&mut tape.llm, at_ns, item, "an LLM chunk")?;
                }
                Record::Tts { at_ns, audio } => {
                    let item = match audio {
                        Outcome::Ok(r) => Ok(SynthesizedAudio {
                            frame: self.frame(r.format, pcm)?,
                            request_id: r.request_id,
                            segment_id: r.segment_id,
                            is_final: r.is_final,
                            delta_text: r.delta_text,
                            timed_words: r.timed_words,
                        }),
                        Outcome::Err(e) => Err(api_error(e)),
                    };
                    self.push(&mut tape.tts, at_ns, item, "a TTS frame")?;
                }
                Record::End { records } => {
                    if records != self.records {
                        return Err(self.corrupt(format!(
                            "the end record counts {records} records, the tape has {}",
                            self.records
                        )));
                    }
                    return Ok(tape);
                }
            }
            self.records += 1;
        }
    }

    fn push<T>(
        &self,
        takes: &mut [Timed<T>],
        at_ns: u64,
        item: T,
        what: &str,
    ) -> Result<(), TapeError> {
        match takes.last_mut() {
            Some(take) => {
                take.push((Duration::from_nanos(at_ns), item));
                Ok(())
            }
            None => Err(self.corrupt(format!("{what} before its take"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// A tape with every kind of item: audio, each STT event kind, tool calls, usage, word
    /// timings, and provider errors of each kind.
    fn sample_tape() -> SessionTape {
        let mut frame = AudioFrame::silence(16_000, 1, 160);
        for (i, s) in frame.data.iter_mut().enumerate() {
            *s = (i as i16).wrapping_mul(211);
        }
        let mut stereo = AudioFrame::silence(24_000, 2, 240);
        stereo.data[1] = i16::MIN;
        stereo.data[2] = i16::MAX;
        let word = TimedString {
            text: "hi".into(),
            start_time: 0.25,
            end_time: 0.5,
            confidence: Some(0.75),
        };
        let mut final_ev = SpeechEvent::transcript(
            SpeechEventType::FinalTranscript,
            SpeechData {
                language: "en".into(),
                text: "hello there".into(),
                confidence: 0.93,
                start_time: 0.5,
                end_time: 1.4999999,
                words: vec![word.clone()],
                speaker_id: Some("S1".into()),
            },
        );
        final_ev.request_id = "req-1".into();
        let mut usage = SpeechEvent::new(SpeechEventType::RecognitionUsage);
        usage.recognition_usage = Some(RecognitionUsage {
            audio_duration: 12.5,
            request_duration: Some(0.2),
        });
        let stt = vec![
            vec![
                (ms(10), Ok(SpeechEvent::new(SpeechEventType::StartOfSpeech))),
                (
                    ms(20),
                    Ok(SpeechEvent::transcript(
                        SpeechEventType::InterimTranscript,
                        SpeechData::default(),
                    )),
                ),
                (
                    ms(25),
                    Ok(SpeechEvent::transcript(
                        SpeechEventType::PreflightTranscript,
                        SpeechData::default(),
                    )),
                ),
                (ms(30), Ok(final_ev)),
                (ms(31), Ok(SpeechEvent::new(SpeechEventType::EndOfSpeech))),
                (ms(40), Ok(usage)),
                (
                    Duration::from_nanos(1_234_567_891),
                    Err(ApiError::Status {
                        status: 429,
                        message: "slow down".into(),
                        request_id: Some("r9".into()),
                        retryable: true,
                    }),
                ),
            ],
            vec![],
            vec![(ms(1), Err(ApiError::connection("reset")))],
        ];
        let llm = vec![
            vec![
                (ms(150), Ok(ChatChunk::text("c1", "Hi! "))),
                (
                    ms(160),
                    Ok(ChatChunk {
                        id: "c1".into(),
                        delta: Some(ChoiceDelta {
                            role: None,
                            content: None,
                            tool_calls: vec![FunctionToolCall {
                                call_id: "call_1".into(),
                                name: "get_weather".into(),
                                arguments: "{\"city\":\"Paris\"}".into(),
                            }],
                        }),
                        usage: Some(CompletionUsage {
                            completion_tokens: 5,
                            prompt_tokens: 20,
                            prompt_cached_tokens: 4,
                            total_tokens: 25,
                        }),
                    }),
                ),
            ],
            vec![
                (ms(5), Err(ApiError::Timeout(ms(10_000)))),
                (ms(6), Err(ApiError::protocol("bad frame"))),
                (ms(7), Err(ApiError::other("nope"))),
                (ms(8), Err(ApiError::task_panicked("boom"))),
            ],
        ];
        let tts = vec![vec![
            (
                ms(100),
                Ok(SynthesizedAudio {
                    frame: stereo.clone(),
                    request_id: "t1".into(),
                    segment_id: "s1".into(),
                    is_final: false,
                    delta_text: "Hi!".into(),
                    timed_words: vec![word],
                }),
            ),
            (
                ms(110),
                Ok(SynthesizedAudio {
                    frame: AudioFrame {
                        data: vec![],
                        sample_rate: 24_000,
                        num_channels: 2,
                        samples_per_channel: 0,
                    },
                    request_id: "t1".into(),
                    segment_id: "s1".into(),
                    is_final: true,
                    delta_text: String::new(),
                    timed_words: vec![],
                }),
            ),
            (ms(120), Err(ApiError::status(500, "upstream"))),
        ]];
        SessionTape {
            user_audio: vec![(ms(10), frame.clone()), (ms(20), frame)],
            stt_info: Some(ModelInfo {
                label: "deepgram.STT".into(),
                model: "nova-3".into(),
                provider: "deepgram".into(),
                extra: SttCapabilities {
                    streaming: true,
                    interim_results: true,
                    diarization: false,
                    aligned_transcript: Some(AlignedTranscript::Word),
                    offline_recognize: false,
                },
            }),
            stt,
            llm_info: Some(ModelInfo {
                label: "openai.LLM".into(),
                model: "gpt-4.1-mini".into(),
                provider: "openai".into(),
                extra: (),
            }),
            llm,
            tts_info: Some(ModelInfo {
                label: "cartesia.TTS".into(),
                model: "sonic-2".into(),
                provider: "cartesia".into(),
                extra: (
                    TtsCapabilities {
                        streaming: true,
                        aligned_transcript: true,
                    },
                    24_000,
                    2,
                ),
            }),
            tts,
            duration: Duration::from_nanos(12_000_000_001),
            truncated: true,
        }
    }

    fn bytes(tape: &SessionTape) -> Vec<u8> {
        let mut out = Vec::new();
        tape.write_to(&mut out).unwrap();
        out
    }

    #[test]
    fn a_tape_reads_back_equal_item_for_item() {
        let tape = sample_tape();
        let data = bytes(&tape);
        assert_eq!(&data[..6], TAPE_MAGIC);
        let back = SessionTape::read_from(data.as_slice()).unwrap();
        assert_eq!(back, tape);
        // Error kinds survive as kinds (retryability included).
        let Err(ApiError::Status { status, .. }) = &back.stt[0][6].1 else {
            panic!("{:?}", back.stt[0][6]);
        };
        assert_eq!(*status, 429);
        assert!(matches!(back.llm[1][0].1, Err(ApiError::Timeout(d)) if d == ms(10_000)));
        // An empty tape too.
        let empty = SessionTape::default();
        assert_eq!(
            SessionTape::read_from(bytes(&empty).as_slice()).unwrap(),
            empty
        );
    }

    #[test]
    fn a_tape_saves_to_a_file_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("call.lktape");
        let tape = sample_tape();
        tape.save(&path).unwrap();
        assert_eq!(SessionTape::load(&path).unwrap(), tape);
        let missing = SessionTape::load(dir.path().join("nope.lktape")).unwrap_err();
        assert!(matches!(missing, TapeError::Io { .. }), "{missing}");
        assert!(missing.to_string().contains("nope.lktape"), "{missing}");
    }

    #[test]
    fn every_cut_of_a_tape_is_a_typed_error() {
        let data = bytes(&sample_tape());
        for len in 0..data.len() {
            match SessionTape::read_from(&data[..len]) {
                Err(TapeError::Truncated(_)) => {}
                other => panic!("cut at {len} of {}: {other:?}", data.len()),
            }
        }
    }

    #[test]
    fn foreign_or_future_data_is_refused() {
        assert!(matches!(
            SessionTape::read_from(&b"RIFF\x00\x00\x00\x00WAVE"[..]),
            Err(TapeError::NotATape)
        ));
        let mut data = bytes(&sample_tape());
        data[6] = 2;
        assert!(matches!(
            SessionTape::read_from(data.as_slice()),
            Err(TapeError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        ));
    }

    #[test]
    fn oversized_lengths_are_refused_before_allocating() {
        // A record claiming 4 GiB of JSON.
        let mut data = TAPE_MAGIC.to_vec();
        data.extend_from_slice(&TAPE_FORMAT_VERSION.to_le_bytes());
        data.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            SessionTape::read_from(data.as_slice()),
            Err(TapeError::TooLarge {
                what: "record JSON",
                ..
            })
        ));
        // The whole tape past a small limit.
        let limits = TapeLimits {
            max_total_bytes: 500,
            ..TapeLimits::default()
        };
        assert!(matches!(
            SessionTape::read_with_limits(bytes(&sample_tape()).as_slice(), limits),
            Err(TapeError::TooLarge { what: "tape", .. })
        ));
    }

    /// A record written by hand: its JSON and its audio bytes.
    type RawRecord = (serde_json::Value, Vec<u8>);

    /// Records rewritten by hand: each wrong one is a typed error naming the record.
    #[test]
    fn corrupt_records_are_typed_errors() {
        fn tape_of(records: &[RawRecord]) -> Vec<u8> {
            let mut data = TAPE_MAGIC.to_vec();
            data.extend_from_slice(&TAPE_FORMAT_VERSION.to_le_bytes());
            for (json, pcm) in records {
                let json = serde_json::to_vec(json).unwrap();
                data.extend_from_slice(&(json.len() as u32).to_le_bytes());
                data.extend_from_slice(&json);
                data.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
                data.extend_from_slice(pcm);
            }
            data
        }
        let header = serde_json::json!({"type": "header", "writer": "x", "duration_ns": 1,
            "truncated": false, "stt": null, "llm": null, "tts": null});
        let end = |n: u64| serde_json::json!({"type": "end", "records": n});
        let cases: Vec<(&str, Vec<RawRecord>)> = vec![
            ("no header first", vec![(end(0), vec![])]),
            (
                "two headers",
                vec![
                    (header.clone(), vec![]),
                    (header.clone(), vec![]),
                    (end(2), vec![]),
                ],
            ),
            (
                "not JSON",
                vec![
                    (header.clone(), vec![]),
                    (serde_json::json!("garbage"), vec![]),
                ],
            ),
            (
                "unknown type",
                vec![
                    (header.clone(), vec![]),
                    (serde_json::json!({"type": "video"}), vec![]),
                ],
            ),
            (
                "an item before its take",
                vec![
                    (header.clone(), vec![]),
                    (
                        serde_json::json!({"type": "llm", "at_ns": 1, "chunk": {"ok": {"id": "", "delta": null, "usage": null}}}),
                        vec![],
                    ),
                ],
            ),
            (
                "zero sample rate",
                vec![
                    (header.clone(), vec![]),
                    (
                        serde_json::json!({"type": "user_audio", "at_ns": 1, "sample_rate": 0, "num_channels": 1}),
                        vec![0, 0],
                    ),
                ],
            ),
            (
                "odd audio bytes",
                vec![
                    (header.clone(), vec![]),
                    (
                        serde_json::json!({"type": "user_audio", "at_ns": 1, "sample_rate": 16000, "num_channels": 1}),
                        vec![0, 0, 0],
                    ),
                ],
            ),
            (
                "half a stereo frame",
                vec![
                    (header.clone(), vec![]),
                    (
                        serde_json::json!({"type": "user_audio", "at_ns": 1, "sample_rate": 16000, "num_channels": 2}),
                        vec![0, 0],
                    ),
                ],
            ),
            (
                "audio on a take",
                vec![
                    (header.clone(), vec![]),
                    (serde_json::json!({"type": "stt_take"}), vec![1, 0]),
                ],
            ),
            (
                "unknown STT event",
                vec![
                    (header.clone(), vec![]),
                    (serde_json::json!({"type": "stt_take"}), vec![]),
                    (
                        serde_json::json!({"type": "stt", "at_ns": 1, "event": {"ok": {"kind": "shout", "request_id": "", "alternatives": [], "usage": null}}}),
                        vec![],
                    ),
                ],
            ),
            (
                "a wrong end count",
                vec![(header.clone(), vec![]), (end(7), vec![])],
            ),
        ];
        for (what, records) in cases {
            match SessionTape::read_from(tape_of(&records).as_slice()) {
                Err(TapeError::Corrupt { .. }) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
        // The minimal valid tape.
        let ok = tape_of(&[(header, vec![]), (end(1), vec![])]);
        assert!(SessionTape::read_from(ok.as_slice()).is_ok());
    }

    /// Flipped bytes anywhere: an error or a tape, never a panic.
    #[test]
    fn flipped_bytes_never_panic() {
        let data = bytes(&sample_tape());
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bad = data.clone();
            let at = (seed % data.len() as u64) as usize;
            bad[at] ^= 1 << (seed % 8);
            let _ = SessionTape::read_from(bad.as_slice());
        }
    }
}
