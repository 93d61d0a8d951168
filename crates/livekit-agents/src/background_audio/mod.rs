//! Background audio: an ambient sound under the whole conversation, a "thinking" sound while
//! the agent thinks (e.g. runs a tool), and sounds played on demand — the reference's
//! `BackgroundAudioPlayer`.
//!
//! ```no_run
//! use livekit_agents::background_audio::{AudioConfig, BackgroundAudioPlayer, BuiltinAudioClip};
//! use livekit_agents::voice::AgentSession;
//! use livekit_agents::worker::JobContext;
//!
//! async fn with_ambience(ctx: &JobContext, session: &AgentSession) -> anyhow::Result<()> {
//!     let player = BackgroundAudioPlayer::new()
//!         .with_ambient_sound(AudioConfig::new(BuiltinAudioClip::OfficeAmbience).volume(0.8))
//!         .with_thinking_sound(vec![
//!             AudioConfig::new(BuiltinAudioClip::KeyboardTyping).volume(0.8).probability(0.6),
//!             AudioConfig::new(BuiltinAudioClip::KeyboardTyping2).volume(0.7).probability(0.3),
//!         ]); // 10 % of the time: no thinking sound
//!     player.start_in_job(ctx, session).await?;
//!     // Later, on demand:
//!     let handle = player.play(AudioConfig::new("assets/chime.mp3"), false)?;
//!     handle.await;
//!     Ok(())
//! }
//! ```
//!
//! Where the sound goes: in a LiveKit room (feature `room`) the player publishes its own audio
//! track, `background_audio`, as the reference does, and the user's client mixes it with the
//! agent's voice. In console mode and in tests it is mixed into the session's audio output
//! through an [`AudioMixer`] (see [`MixingSink`](crate::audio::MixingSink)): the agent's frames
//! pass through at once with the background added, so mixing never delays the agent's speech.
//!
//! Sources: audio files (decoded once with [`crate::audio::decode_file`], resampled to the output's
//! rate, cached per player), the [`BuiltinAudioClip`]s (synthesised by this crate), in-memory
//! clips ([`AudioSource::Frame`]) and streams of frames ([`AudioSource::stream`]). A file that
//! cannot be decoded is logged with the file's name and plays as silence (the handle finishes at
//! once); decode it up front with [`crate::audio::decode_file`] to get the error.

mod clips;
#[cfg(feature = "room")]
mod room;

pub use crate::audio::mixer::{PlayHandle, SourceOptions};
pub use clips::{BuiltinAudioClip, BUILTIN_SAMPLE_RATE};

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio_util::task::AbortOnDropHandle;

use crate::audio::{AudioFrame, AudioMixer};
use crate::voice::{AgentSession, AgentState, SessionEvent};

/// The sample rate of the player's own track in a room (the reference's 48 kHz mono).
pub const BACKGROUND_SAMPLE_RATE: u32 = 48_000;
/// The name of the track the player publishes in a room.
pub const BACKGROUND_TRACK_NAME: &str = "background_audio";
/// Audio chunks fed to the mixer from clips: 100 ms.
const CHUNK: Duration = Duration::from_millis(100);

type StreamFn = dyn Fn() -> BoxStream<'static, AudioFrame> + Send + Sync;

/// What to play.
#[derive(Clone)]
pub enum AudioSource {
    /// An audio file (WAV, MP3, FLAC, Ogg Vorbis/Opus, AAC), decoded once and cached.
    File(PathBuf),
    /// A built-in clip.
    Builtin(BuiltinAudioClip),
    /// An in-memory clip (any rate and channel count).
    Frame(Arc<AudioFrame>),
    /// A stream of frames, made anew each time the source plays (use [`AudioSource::stream`]).
    /// Streams cannot be looped by the player: make the stream itself endless instead.
    Stream(Arc<StreamFn>),
}

impl fmt::Debug for AudioSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Builtin(c) => f.debug_tuple("Builtin").field(c).finish(),
            Self::Frame(fr) => f.debug_tuple("Frame").field(fr).finish(),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl AudioSource {
    /// A source that plays the stream `make()` returns each time it is played.
    pub fn stream<S>(make: impl Fn() -> S + Send + Sync + 'static) -> Self
    where
        S: futures::Stream<Item = AudioFrame> + Send + 'static,
    {
        Self::Stream(Arc::new(move || make().boxed()))
    }
}

impl From<BuiltinAudioClip> for AudioSource {
    fn from(c: BuiltinAudioClip) -> Self {
        Self::Builtin(c)
    }
}
impl From<PathBuf> for AudioSource {
    fn from(p: PathBuf) -> Self {
        Self::File(p)
    }
}
impl From<&str> for AudioSource {
    fn from(p: &str) -> Self {
        Self::File(p.into())
    }
}
impl From<AudioFrame> for AudioSource {
    fn from(f: AudioFrame) -> Self {
        Self::Frame(Arc::new(f))
    }
}

/// A sound with its volume, its probability (when one of several is chosen) and fades: the
/// reference's `AudioConfig(source, volume=1, probability=1, fade_in=0, fade_out=0)`.
#[derive(Debug, Clone)]
pub struct AudioConfig {
    /// What to play.
    pub source: AudioSource,
    /// Linear gain (default 1.0).
    pub volume: f32,
    /// Weight when one sound is chosen from several (default 1.0); see [`Sound::Choice`].
    pub probability: f32,
    /// Ramp up from silence when it starts (default none).
    pub fade_in: Duration,
    /// Ramp down when stopped (default none: it stops at once).
    pub fade_out: Duration,
}

impl AudioConfig {
    /// `source` at full volume, probability 1, no fades.
    pub fn new(source: impl Into<AudioSource>) -> Self {
        Self {
            source: source.into(),
            volume: 1.0,
            probability: 1.0,
            fade_in: Duration::ZERO,
            fade_out: Duration::ZERO,
        }
    }
    /// With a volume.
    pub fn volume(mut self, volume: f32) -> Self {
        self.volume = volume;
        self
    }
    /// With a probability (weight).
    pub fn probability(mut self, probability: f32) -> Self {
        self.probability = probability;
        self
    }
    /// With a fade-in.
    pub fn fade_in(mut self, fade: Duration) -> Self {
        self.fade_in = fade;
        self
    }
    /// With a fade-out.
    pub fn fade_out(mut self, fade: Duration) -> Self {
        self.fade_out = fade;
        self
    }
}

/// One sound, or a weighted choice among several.
#[derive(Debug, Clone)]
pub enum Sound {
    /// Always this sound.
    One(AudioConfig),
    /// One of these, drawn by `probability` each time the sound plays. Weights summing to less
    /// than 1 leave the rest as a chance of silence; above 1 they are normalised.
    Choice(Vec<AudioConfig>),
}

impl<T: Into<AudioSource>> From<T> for Sound {
    fn from(s: T) -> Self {
        Self::One(AudioConfig::new(s))
    }
}
impl From<AudioConfig> for Sound {
    fn from(c: AudioConfig) -> Self {
        Self::One(c)
    }
}
impl From<Vec<AudioConfig>> for Sound {
    fn from(v: Vec<AudioConfig>) -> Self {
        Self::Choice(v)
    }
}

impl Sound {
    /// The sound to play now (`None`: silence was drawn).
    fn pick(&self) -> Option<AudioConfig> {
        match self {
            Self::One(c) => Some(c.clone()),
            Self::Choice(list) => {
                select_weighted(list, rand::random::<f64>(), rand::random::<f64>()).cloned()
            }
        }
    }
}

/// The reference's weighted choice, with its two random draws passed in: with a total weight
/// below 1, `gate > total` is silence; otherwise `r` (scaled to `min(total, 1)`) picks along
/// the normalised cumulative weights.
fn select_weighted(list: &[AudioConfig], gate: f64, r: f64) -> Option<&AudioConfig> {
    let weight = |c: &AudioConfig| {
        if c.probability.is_finite() && c.probability > 0.0 {
            c.probability as f64
        } else {
            0.0
        }
    };
    let total: f64 = list.iter().map(weight).sum();
    if total <= 0.0 {
        return None;
    }
    if total < 1.0 && gate > total {
        return None;
    }
    let norm = if total <= 1.0 { 1.0 } else { total };
    let r = r * total.min(1.0);
    let mut cumulative = 0.0;
    for c in list {
        let w = weight(c);
        if w <= 0.0 {
            continue;
        }
        cumulative += w / norm;
        if r <= cumulative {
            return Some(c);
        }
    }
    list.iter().rev().find(|c| weight(c) > 0.0)
}

/// Errors of the background audio player.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackgroundAudioError {
    /// [`BackgroundAudioPlayer::play`] before `start` (or after `close`).
    #[error("the background audio player is not started")]
    NotStarted,
    /// `start` called twice.
    #[error("the background audio player is already started (create a new one to restart)")]
    AlreadyStarted,
    /// A stream source asked to loop.
    #[error("a stream source cannot be looped: make the stream endless and play it once")]
    CannotLoopStream,
    /// Publishing the background track failed.
    #[error("cannot publish the background audio track: {reason}")]
    Publish {
        /// The room's error.
        reason: String,
    },
    /// The job has no way to play audio (no room feature, no console output).
    #[error("background audio has nowhere to play: {reason}")]
    NoOutput {
        /// Why.
        reason: String,
    },
}

/// Where the player's sound goes.
pub enum BackgroundTarget {
    /// Mixed into a session output through this mixer (console, tests, custom outputs: build
    /// the output's sink with [`AudioMixer::sink`]).
    Mixer(AudioMixer),
    /// Published as the `background_audio` track of this room.
    #[cfg(feature = "room")]
    Room(Arc<livekit::Room>),
}

impl fmt::Debug for BackgroundTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mixer(m) => f.debug_tuple("Mixer").field(m).finish(),
            #[cfg(feature = "room")]
            Self::Room(_) => f.write_str("Room"),
        }
    }
}

impl From<AudioMixer> for BackgroundTarget {
    fn from(m: AudioMixer) -> Self {
        Self::Mixer(m)
    }
}

#[derive(Default)]
struct PlayerState {
    mixer: Option<AudioMixer>,
    started: bool,
    /// The mixer is the player's own (a room track): closed with the player.
    owns_mixer: bool,
    handles: Vec<PlayHandle>,
    ambient: Option<PlayHandle>,
    thinking: Option<PlayHandle>,
    tasks: Vec<AbortOnDropHandle<()>>,
    #[cfg(feature = "room")]
    track: Option<room::PublishedTrack>,
}

struct PlayerInner {
    ambient: Option<Sound>,
    thinking: Option<Sound>,
    state: Mutex<PlayerState>,
    /// Decoded clips at the mixer's format, by source.
    cache: Mutex<HashMap<String, Arc<[i16]>>>,
}

/// Plays an ambient sound, a thinking sound and sounds on demand (see the module docs).
/// Cheap to clone; clones control the same player.
#[derive(Clone)]
pub struct BackgroundAudioPlayer {
    inner: Arc<PlayerInner>,
}

impl fmt::Debug for BackgroundAudioPlayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundAudioPlayer")
            .field("ambient_sound", &self.inner.ambient)
            .field("thinking_sound", &self.inner.thinking)
            .finish_non_exhaustive()
    }
}

impl Default for BackgroundAudioPlayer {
    fn default() -> Self {
        Self::new()
    }
}

impl BackgroundAudioPlayer {
    /// A player with no ambient and no thinking sound.
    pub fn new() -> Self {
        Self::with_sounds(None, None)
    }

    fn with_sounds(ambient: Option<Sound>, thinking: Option<Sound>) -> Self {
        Self {
            inner: Arc::new(PlayerInner {
                ambient,
                thinking,
                state: Mutex::new(PlayerState::default()),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// With an ambient sound, looped for the whole session from `start` (a stream source plays
    /// once: make it endless).
    pub fn with_ambient_sound(self, sound: impl Into<Sound>) -> Self {
        Self::with_sounds(Some(sound.into()), self.inner.thinking.clone())
    }

    /// With a thinking sound, played while the agent is `thinking` (drawn anew each time).
    pub fn with_thinking_sound(self, sound: impl Into<Sound>) -> Self {
        Self::with_sounds(self.inner.ambient.clone(), Some(sound.into()))
    }

    /// Starts playing into `target`: the ambient sound begins at once, and with a `session` the
    /// thinking sound follows the agent state. Call after the session started.
    pub async fn start(
        &self,
        target: impl Into<BackgroundTarget>,
        session: Option<&AgentSession>,
    ) -> Result<(), BackgroundAudioError> {
        let target = target.into();
        {
            let mut st = self.inner.state.lock();
            if st.started {
                return Err(BackgroundAudioError::AlreadyStarted);
            }
            st.started = true;
        }
        let (mixer, owns) = match target {
            BackgroundTarget::Mixer(m) => (m, false),
            #[cfg(feature = "room")]
            BackgroundTarget::Room(room) => {
                let mixer = AudioMixer::new(BACKGROUND_SAMPLE_RATE, 1);
                match room::publish(room, mixer.clone()).await {
                    Ok(track) => {
                        self.inner.state.lock().track = Some(track);
                        (mixer, true)
                    }
                    Err(e) => {
                        self.inner.state.lock().started = false;
                        return Err(e);
                    }
                }
            }
        };
        {
            let mut st = self.inner.state.lock();
            st.mixer = Some(mixer);
            st.owns_mixer = owns;
        }
        if let (Some(session), Some(_)) = (session, &self.inner.thinking) {
            let task = tokio::spawn(follow_agent_state(
                Arc::downgrade(&self.inner),
                session.subscribe(),
            ));
            self.inner
                .state
                .lock()
                .tasks
                .push(AbortOnDropHandle::new(task));
        }
        if let Some(ambient) = &self.inner.ambient {
            if let Some(cfg) = ambient.pick() {
                let looped = !matches!(cfg.source, AudioSource::Stream(_));
                let handle = self.play_config(cfg, looped)?;
                self.inner.state.lock().ambient = Some(handle);
            }
        }
        Ok(())
    }

    /// Starts in a job: in console mode the sound is mixed into the console's audio output, the
    /// speaker or the `--output-wav` file (with no audio output, `--text`, nothing plays and a
    /// line is logged); otherwise
    /// (feature `room`) the player publishes its track in the job's room, connecting if needed.
    #[cfg(feature = "server")]
    pub async fn start_in_job(
        &self,
        ctx: &crate::worker::JobContext,
        session: &AgentSession,
    ) -> Result<(), BackgroundAudioError> {
        if let Some(console) = ctx.console_handle() {
            return match console.background_mixer() {
                Some(mixer) => self.start(mixer, Some(session)).await,
                None => {
                    tracing::info!(
                        "console without audio output (--text): background audio is not played"
                    );
                    Ok(())
                }
            };
        }
        #[cfg(feature = "room")]
        {
            let room = ctx
                .connect()
                .await
                .map_err(|e| BackgroundAudioError::NoOutput {
                    reason: e.to_string(),
                })?;
            self.start(BackgroundTarget::Room(room), Some(session))
                .await
        }
        #[cfg(not(feature = "room"))]
        Err(BackgroundAudioError::NoOutput {
            reason: "a room needs the `room` cargo feature".into(),
        })
    }

    /// Plays a sound once or looped. Returns a handle to await or stop; a weighted choice that
    /// drew silence returns a handle that is already done.
    pub fn play(
        &self,
        sound: impl Into<Sound>,
        looped: bool,
    ) -> Result<PlayHandle, BackgroundAudioError> {
        match sound.into().pick() {
            Some(cfg) => self.play_config(cfg, looped),
            None => Ok(PlayHandle::finished()),
        }
    }

    /// Sets the volume of everything the player plays (linear gain, ramped over 20 ms). In
    /// console mode this is the volume of the console's background mix.
    pub fn set_volume(&self, volume: f32) {
        if let Some(m) = &self.inner.state.lock().mixer {
            m.set_volume(volume);
        }
    }

    /// The handle of the ambient sound, if one plays.
    pub fn ambient_handle(&self) -> Option<PlayHandle> {
        self.inner.state.lock().ambient.clone()
    }

    fn play_config(
        &self,
        cfg: AudioConfig,
        looped: bool,
    ) -> Result<PlayHandle, BackgroundAudioError> {
        if looped && matches!(cfg.source, AudioSource::Stream(_)) {
            return Err(BackgroundAudioError::CannotLoopStream);
        }
        let mixer = self
            .inner
            .state
            .lock()
            .mixer
            .clone()
            .ok_or(BackgroundAudioError::NotStarted)?;
        let options = SourceOptions {
            volume: cfg.volume,
            fade_in: cfg.fade_in,
            fade_out: cfg.fade_out,
        };
        let handle = match cfg.source {
            AudioSource::Stream(make) => mixer.play_stream(make(), options),
            // In memory: converted here (no file to read), so it starts without a thread hop.
            AudioSource::Frame(frame) => {
                let (rate, channels) = (mixer.sample_rate(), mixer.num_channels());
                let clip = match load(&AudioSource::Frame(frame), rate, channels) {
                    Ok(clip) => Some(clip),
                    Err(e) => {
                        tracing::warn!(error = %e, "background audio: cannot play a clip");
                        None
                    }
                };
                mixer.play_stream(clip_frames(clip, rate, channels, looped), options)
            }
            source => {
                let inner = self.inner.clone();
                let (rate, channels) = (mixer.sample_rate(), mixer.num_channels());
                let frames = futures::stream::once(async move {
                    let key = cache_key(&source, rate, channels);
                    if let Some(hit) = inner.cache.lock().get(&key) {
                        return Some(hit.clone());
                    }
                    let loaded =
                        tokio::task::spawn_blocking(move || load(&source, rate, channels)).await;
                    match loaded {
                        Ok(Ok(clip)) => {
                            inner.cache.lock().insert(key, clip.clone());
                            Some(clip)
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "background audio: cannot play a sound");
                            None
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "background audio: loading a sound failed");
                            None
                        }
                    }
                })
                .flat_map(move |clip| clip_frames(clip, rate, channels, looped));
                mixer.play_stream(frames, options)
            }
        };
        let mut st = self.inner.state.lock();
        st.handles.retain(|h| !h.done());
        st.handles.push(handle.clone());
        Ok(handle)
    }

    /// Stops every sound, ends the thinking-sound tracking and (in a room) unpublishes the
    /// track. The player cannot be started again: create a new one.
    pub async fn close(&self) {
        let (handles, tasks, mixer, owns) = {
            let mut st = self.inner.state.lock();
            (
                std::mem::take(&mut st.handles),
                std::mem::take(&mut st.tasks),
                st.mixer.take(),
                st.owns_mixer,
            )
        };
        drop(tasks);
        for h in handles {
            h.stop();
        }
        if let (Some(m), true) = (mixer, owns) {
            m.close();
        }
        #[cfg(feature = "room")]
        {
            let track = self.inner.state.lock().track.take();
            if let Some(track) = track {
                track.unpublish().await;
            }
        }
    }
}

fn cache_key(source: &AudioSource, rate: u32, channels: u16) -> String {
    match source {
        AudioSource::File(p) => format!("file:{}@{rate}/{channels}", p.display()),
        AudioSource::Builtin(c) => format!("builtin:{}@{rate}/{channels}", c.name()),
        AudioSource::Frame(f) => format!("frame:{:p}@{rate}/{channels}", Arc::as_ptr(f)),
        AudioSource::Stream(_) => String::new(),
    }
}

/// A source's samples at the mixer's format (blocking: decoding and resampling).
fn load(
    source: &AudioSource,
    rate: u32,
    channels: u16,
) -> Result<Arc<[i16]>, crate::audio::DecodeError> {
    let frame = match source {
        AudioSource::File(path) => crate::audio::decode_file(path)?,
        AudioSource::Builtin(c) => return Ok(builtin_at(*c, rate, channels)),
        AudioSource::Frame(f) => (**f).clone(),
        AudioSource::Stream(_) => AudioFrame::default(),
    };
    if frame.sample_rate == rate && frame.num_channels == channels {
        return Ok(frame.data.into());
    }
    crate::audio::decode::convert_clip(&frame, rate, channels).map_err(|kind| {
        crate::audio::DecodeError {
            path: match source {
                AudioSource::File(p) => p.clone(),
                other => PathBuf::from(format!("{other:?}")),
            },
            kind,
        }
    })
}

/// A built-in clip at the mixer's format, converted once per process (every session's player
/// shares it).
fn builtin_at(clip: BuiltinAudioClip, rate: u32, channels: u16) -> Arc<[i16]> {
    type Converted = HashMap<(BuiltinAudioClip, u32, u16), Arc<[i16]>>;
    static CONVERTED: std::sync::OnceLock<Mutex<Converted>> = std::sync::OnceLock::new();
    let cache = CONVERTED.get_or_init(Default::default);
    if let Some(hit) = cache.lock().get(&(clip, rate, channels)) {
        return hit.clone();
    }
    let samples = clip.samples();
    let converted = if rate == BUILTIN_SAMPLE_RATE && channels == 1 {
        samples
    } else {
        let frame = AudioFrame {
            samples_per_channel: samples.len(),
            data: samples.to_vec(),
            sample_rate: BUILTIN_SAMPLE_RATE,
            num_channels: 1,
        };
        // A built-in clip is valid audio: conversion cannot fail; fall back to silence if it did.
        crate::audio::decode::convert_clip(&frame, rate, channels).unwrap_or_else(|_| Arc::from([]))
    };
    cache
        .lock()
        .insert((clip, rate, channels), converted.clone());
    converted
}

/// A clip as 100 ms frames, once or forever.
fn clip_frames(
    clip: Option<Arc<[i16]>>,
    rate: u32,
    channels: u16,
    looped: bool,
) -> BoxStream<'static, AudioFrame> {
    let Some(clip) = clip.filter(|c| c.len() >= channels as usize) else {
        return futures::stream::empty().boxed();
    };
    let chunk = ((rate as u128 * CHUNK.as_millis() / 1000) as usize).max(1) * channels as usize;
    let mut pos = 0usize;
    futures::stream::poll_fn(move |_| {
        if pos >= clip.len() {
            if !looped {
                return std::task::Poll::Ready(None);
            }
            pos = 0;
        }
        let end = (pos + chunk).min(clip.len());
        let end = end - (end - pos) % channels as usize;
        let data = clip[pos..end].to_vec();
        pos = end.max(pos + channels as usize);
        std::task::Poll::Ready(Some(AudioFrame {
            samples_per_channel: data.len() / channels as usize,
            data,
            sample_rate: rate,
            num_channels: channels,
        }))
    })
    .boxed()
}

/// Plays the thinking sound while the agent is `thinking`.
async fn follow_agent_state(
    player: std::sync::Weak<PlayerInner>,
    mut events: tokio::sync::broadcast::Receiver<SessionEvent>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => break,
        };
        let Some(inner) = player.upgrade() else { break };
        let player = BackgroundAudioPlayer { inner };
        match ev {
            SessionEvent::AgentStateChanged { new_state, .. } => {
                let current = player.inner.state.lock().thinking.clone();
                if new_state == AgentState::Thinking {
                    if current.as_ref().is_some_and(|h| !h.done()) {
                        continue;
                    }
                    let Some(sound) = player.inner.thinking.clone() else {
                        continue;
                    };
                    match player.play(sound, false) {
                        Ok(h) => player.inner.state.lock().thinking = Some(h),
                        Err(e) => tracing::debug!(error = %e, "no thinking sound"),
                    }
                } else if let Some(h) = current {
                    h.stop();
                }
            }
            SessionEvent::Close { .. } => {
                if let Some(h) = player.inner.state.lock().thinking.take() {
                    h.stop();
                }
                break;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(p: f32) -> AudioConfig {
        AudioConfig::new(BuiltinAudioClip::KeyboardTyping).probability(p)
    }

    fn pick(list: &[AudioConfig], gate: f64, r: f64) -> Option<usize> {
        select_weighted(list, gate, r).map(|c| {
            list.iter()
                .position(|x| std::ptr::eq(x, c))
                .unwrap_or(usize::MAX)
        })
    }

    #[test]
    fn weighted_choice_follows_the_reference() {
        let list = [cfg(0.5), cfg(0.3)];
        // Total 0.8: a gate above 0.8 is silence.
        assert_eq!(pick(&list, 0.81, 0.0), None);
        assert_eq!(pick(&list, 0.5, 0.0), Some(0));
        assert_eq!(pick(&list, 0.5, 0.6), Some(0)); // 0.6 * 0.8 = 0.48 <= 0.5
        assert_eq!(pick(&list, 0.5, 0.7), Some(1)); // 0.56 > 0.5
                                                    // Above 1: normalised, never silent.
        let list = [cfg(2.0), cfg(2.0), cfg(0.0)];
        assert_eq!(pick(&list, 1.0, 0.49), Some(0));
        assert_eq!(pick(&list, 1.0, 0.51), Some(1));
        assert_eq!(pick(&list, 1.0, 1.0), Some(1));
        // Nothing has weight: silence.
        assert_eq!(pick(&[cfg(0.0), cfg(f32::NAN)], 0.0, 0.0), None);
    }

    #[tokio::test]
    async fn play_before_start_is_an_error_and_streams_do_not_loop() {
        let player = BackgroundAudioPlayer::new();
        assert!(matches!(
            player.play(BuiltinAudioClip::HoldMusic, true),
            Err(BackgroundAudioError::NotStarted)
        ));
        let mixer = AudioMixer::new(8_000, 1);
        player.start(mixer.clone(), None).await.unwrap();
        assert!(matches!(
            player.start(mixer, None).await,
            Err(BackgroundAudioError::AlreadyStarted)
        ));
        let stream = AudioSource::stream(futures::stream::empty::<AudioFrame>);
        assert!(matches!(
            player.play(stream, true),
            Err(BackgroundAudioError::CannotLoopStream)
        ));
        let silent = player.play(vec![cfg(0.0)], false).unwrap();
        assert!(silent.done());
        player.close().await;
        assert!(matches!(
            player.play(BuiltinAudioClip::HoldMusic, false),
            Err(BackgroundAudioError::NotStarted)
        ));
    }
}
