//! Call recording: the user's input and the agent's output as it was actually played, as a
//! stereo WAV (left: user, right: agent) on one timeline with the session's events.
//!
//! ```no_run
//! # async fn demo(session: livekit_agents::voice::AgentSession, io: livekit_agents::voice::SessionIo) {
//! use livekit_agents::telemetry::recording::CallRecorder;
//! use livekit_agents::voice::Agent;
//!
//! let recorder = CallRecorder::new(Default::default());
//! let report = session.record_report_at(recorder.origin()); // event offsets = WAV offsets
//! session.start(Agent::new("..."), recorder.wrap_io(io)).await.unwrap();
//! session.wait_closed().await;
//! recorder.write_wav("call.wav").unwrap();
//! # }
//! ```
//!
//! The agent's audio is placed where it started playing; a segment cut by an interruption ends
//! at the output's reported playback position (what the user heard). A pause of the output
//! (false interruption) is not kept as a gap. Audio is kept in memory up to
//! [`RecordingOptions::max_duration`]; past it the recording stops growing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::audio::resample::Resampler;
use crate::audio::AudioFrame;
use crate::io::{AudioInput, AudioOutput, PlaybackEvent};
use crate::voice::SessionIo;

/// How to record.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct RecordingOptions {
    /// Sample rate of the file (default 16 kHz).
    pub sample_rate: u32,
    /// Longest recording kept (default 30 min): memory is bounded by it.
    pub max_duration: Duration,
}

impl Default for RecordingOptions {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            max_duration: Duration::from_secs(30 * 60),
        }
    }
}

/// Errors writing a recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The WAV file could not be written.
    #[error("cannot write the recording to {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: hound::Error,
    },
}

/// One mono track at the recording rate, placed on the timeline.
struct Track {
    samples: Vec<i16>,
    resampler: Option<Resampler>,
}

impl Track {
    fn new() -> Self {
        Self {
            samples: Vec::new(),
            resampler: None,
        }
    }

    /// `frame` as mono samples at `rate` (resampled as needed; a format it cannot convert is
    /// dropped with a warning).
    fn convert(&mut self, frame: &AudioFrame, rate: u32) -> Vec<i16> {
        let ch = usize::from(frame.num_channels.max(1));
        let mono: Vec<i16> = frame
            .data
            .chunks(ch)
            .map(|c| (c.iter().map(|&s| i32::from(s)).sum::<i32>() / c.len().max(1) as i32) as i16)
            .collect();
        if frame.sample_rate == rate {
            return mono;
        }
        let Ok(mono) = AudioFrame::new(mono, frame.sample_rate, 1) else {
            return Vec::new();
        };
        let reuse = self
            .resampler
            .as_ref()
            .is_some_and(|r| r.input_rate() == frame.sample_rate);
        if !reuse {
            match Resampler::new(frame.sample_rate, rate, 1) {
                Ok(r) => self.resampler = Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "recording: cannot resample; frame dropped");
                    return Vec::new();
                }
            }
        }
        match self.resampler.as_mut().map(|r| r.push(&mono)) {
            Some(Ok(frames)) => frames.into_iter().flat_map(|f| f.data).collect(),
            _ => Vec::new(),
        }
    }

    /// Writes `samples` starting at sample `at` (overwriting, growing with silence), bounded
    /// by `max` samples.
    fn place(&mut self, at: usize, samples: &[i16], max: usize) {
        if at >= max {
            return;
        }
        let end = at.saturating_add(samples.len()).min(max);
        if self.samples.len() < end {
            self.samples.resize(end, 0);
        }
        let n = end - at;
        self.samples[at..end].copy_from_slice(&samples[..n]);
    }
}

struct AgentSegment {
    start: usize,
    samples: Vec<i16>,
}

struct State {
    user: Track,
    /// Where the next user frame goes at the earliest (frames are contiguous unless late).
    user_cursor: usize,
    agent: Track,
    agent_end: usize,
    segment: Option<AgentSegment>,
}

struct Shared {
    origin: Instant,
    started_at: std::time::SystemTime,
    options: RecordingOptions,
    state: Mutex<State>,
}

impl Shared {
    fn max_samples(&self) -> usize {
        (self.options.max_duration.as_secs_f64() * f64::from(self.options.sample_rate)) as usize
    }

    fn now_sample(&self) -> usize {
        (self.origin.elapsed().as_secs_f64() * f64::from(self.options.sample_rate)) as usize
    }

    fn user_frame(&self, frame: &AudioFrame) {
        let max = self.max_samples();
        let now = self.now_sample();
        let mut st = self.state.lock();
        let samples = st.user.convert(frame, self.options.sample_rate);
        // A frame that arrives now ends now: it started its own length earlier, unless that
        // overlaps the previous one.
        let at = now.saturating_sub(samples.len()).max(st.user_cursor);
        st.user.place(at, &samples, max);
        st.user_cursor = at.saturating_add(samples.len());
    }

    fn agent_frame(&self, frame: &AudioFrame) {
        let max = self.max_samples();
        let now = self.now_sample();
        let mut st = self.state.lock();
        let samples = st.agent.convert(frame, self.options.sample_rate);
        let agent_end = st.agent_end;
        let seg = st.segment.get_or_insert_with(|| AgentSegment {
            start: now.max(agent_end),
            samples: Vec::new(),
        });
        if seg.samples.len() < max {
            seg.samples.extend_from_slice(&samples);
        }
    }

    /// The segment ended after `played` of it played: what played goes on the agent track.
    fn agent_finished(&self, played: Duration) {
        let max = self.max_samples();
        let mut st = self.state.lock();
        let Some(mut seg) = st.segment.take() else {
            return;
        };
        let played = (played.as_secs_f64() * f64::from(self.options.sample_rate)).round() as usize;
        seg.samples.truncate(played);
        st.agent.place(seg.start, &seg.samples, max);
        st.agent_end = seg.start.saturating_add(seg.samples.len());
    }
}

/// Records a call; see the [module docs](self).
#[derive(Clone)]
pub struct CallRecorder {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CallRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecorder")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl CallRecorder {
    /// A recorder whose timeline starts now.
    pub fn new(options: RecordingOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                origin: Instant::now(),
                started_at: std::time::SystemTime::now(),
                options,
                state: Mutex::new(State {
                    user: Track::new(),
                    user_cursor: 0,
                    agent: Track::new(),
                    agent_end: 0,
                    segment: None,
                }),
            }),
        }
    }

    /// Time zero of the recording (pass it to
    /// [`AgentSession::record_report_at`](crate::voice::AgentSession::record_report_at) so
    /// the report's event offsets are offsets into the file).
    pub fn origin(&self) -> Instant {
        self.shared.origin
    }

    /// Wall-clock time of the recording's start (Unix seconds).
    pub fn started_at_secs(&self) -> f64 {
        self.shared
            .started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Records the user's audio as the session reads it.
    pub fn wrap_input(&self, input: AudioInput) -> AudioInput {
        let updates = input.participant_updates();
        let label = input.label().to_string();
        let shared = self.shared.clone();
        let stream = input.into_stream().map(move |frame| {
            shared.user_frame(&frame);
            frame
        });
        AudioInput::from_stream(label, stream).with_participant_updates(updates)
    }

    /// Records the agent's audio as `output` plays it.
    pub fn wrap_output(&self, output: Arc<dyn AudioOutput>) -> Arc<dyn AudioOutput> {
        let mut events = output.subscribe();
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(PlaybackEvent::Finished(f)) => {
                        let Some(shared) = weak.upgrade() else { return };
                        shared.agent_finished(f.playback_position);
                    }
                    Ok(PlaybackEvent::Started) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Arc::new(RecordedOutput {
            inner: output,
            shared: self.shared.clone(),
        })
    }

    /// Wraps the audio input and output of `io`.
    pub fn wrap_io(&self, mut io: SessionIo) -> SessionIo {
        io.audio_input = io.audio_input.map(|i| self.wrap_input(i));
        io.audio_output = io.audio_output.map(|o| self.wrap_output(o));
        io
    }

    /// The recording so far: `(user, agent)` mono tracks at the recording rate, equally long.
    pub fn tracks(&self) -> (Vec<i16>, Vec<i16>) {
        let st = self.shared.state.lock();
        let len = st.user.samples.len().max(st.agent.samples.len());
        let mut user = st.user.samples.clone();
        let mut agent = st.agent.samples.clone();
        user.resize(len, 0);
        agent.resize(len, 0);
        (user, agent)
    }

    /// The recording's sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.shared.options.sample_rate
    }

    /// Writes the recording as a 16-bit stereo WAV: left the user, right the agent.
    pub fn write_wav(&self, path: impl AsRef<Path>) -> Result<(), RecordingError> {
        let path = path.as_ref();
        let err = |source| RecordingError::Write {
            path: path.display().to_string(),
            source,
        };
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: self.sample_rate(),
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let (user, agent) = self.tracks();
        let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
        for (u, a) in user.iter().zip(agent.iter()) {
            w.write_sample(*u).map_err(err)?;
            w.write_sample(*a).map_err(err)?;
        }
        w.finalize().map_err(err)
    }
}

struct RecordedOutput {
    inner: Arc<dyn AudioOutput>,
    shared: Arc<Shared>,
}

#[async_trait]
impl AudioOutput for RecordedOutput {
    fn label(&self) -> String {
        self.inner.label()
    }
    fn sample_rate(&self) -> Option<u32> {
        self.inner.sample_rate()
    }
    fn can_pause(&self) -> bool {
        self.inner.can_pause()
    }
    async fn capture_frame(&self, frame: AudioFrame) {
        self.shared.agent_frame(&frame);
        self.inner.capture_frame(frame).await;
    }
    fn flush(&self) {
        self.inner.flush();
    }
    fn clear_buffer(&self) {
        self.inner.clear_buffer();
    }
    fn pause(&self) {
        self.inner.pause();
    }
    fn resume(&self) {
        self.inner.resume();
    }
    fn subscribe(&self) -> broadcast::Receiver<PlaybackEvent> {
        self.inner.subscribe()
    }
}
