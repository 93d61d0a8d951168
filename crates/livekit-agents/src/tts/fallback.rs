//! [`FallbackAdapter`]: a [`Tts`] over several providers that switches to the next one when
//! the current one fails.
//!
//! Output is at one sample rate (by default the highest of the providers'); providers at
//! another rate are resampled. A failed provider is marked unavailable ([`AvailabilityChanged`]
//! is sent) and probed in the background by synthesizing the text it failed on; it is
//! available again when the probe produces audio.
//!
//! Words are never spoken twice: text whose audio already started playing is not sent to the
//! next provider. In a stream, the rest of that segment is skipped (its output segment ends
//! early) and the following segments go to the next provider.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{
    AudioEmitter, ChunkedStream, StreamAdapter, SynthesizeStream, SynthesizedAudio, Tts,
    TtsCapabilities, TtsInput, DEFAULT_FRAME_MS,
};
use crate::audio::resample::Resampler;
pub use crate::llm::fallback::AvailabilityChanged;
use crate::llm::fallback::ProviderHealth;
use crate::stt::EVENT_BUFFER;
use crate::types::{ApiConnectOptions, ApiError};

/// Options of a TTS [`FallbackAdapter`]. Defaults match the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct TtsFallbackOptions {
    /// Retries on the same provider before switching (while it produced no audio). Default 2.
    pub max_retry_per_tts: u32,
    /// Output sample rate. Default: the highest rate among the providers.
    pub sample_rate: Option<u32>,
}

impl Default for TtsFallbackOptions {
    fn default() -> Self {
        Self {
            max_retry_per_tts: 2,
            sample_rate: None,
        }
    }
}

/// A TTS fallback adapter that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TtsFallbackError {
    /// No providers were given.
    #[error("a fallback adapter needs at least one provider")]
    NoProviders,
    /// The providers do not all have the same channel count.
    #[error("all TTS providers must have the same number of channels, got {0:?}")]
    ChannelMismatch(Vec<u16>),
    /// The requested output sample rate is zero.
    #[error("invalid output sample rate 0")]
    InvalidSampleRate,
}

/// Text used to probe a provider when there is nothing else to synthesize.
const PROBE_TEXT: &str = "Hello.";

/// A [`Tts`] over several providers, used in order.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use livekit_agents::tts::{FallbackAdapter, Tts};
/// # fn demo(cartesia: Arc<dyn Tts>, openai: Arc<dyn Tts>) {
/// let tts = FallbackAdapter::new(vec![cartesia, openai]).expect("same channel count");
/// println!("speaking at {} Hz", tts.sample_rate());
/// # }
/// ```
#[derive(Clone)]
pub struct FallbackAdapter {
    ttss: Arc<Vec<Arc<dyn Tts>>>,
    options: TtsFallbackOptions,
    sample_rate: u32,
    num_channels: u16,
    health: Arc<ProviderHealth>,
}

impl std::fmt::Debug for FallbackAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackAdapter")
            .field("ttss", &self.health.labels())
            .field("available", &self.health.availability())
            .field("sample_rate", &self.sample_rate)
            .finish()
    }
}

impl FallbackAdapter {
    /// An adapter over `ttss` (preferred first) with default options.
    pub fn new(ttss: Vec<Arc<dyn Tts>>) -> Result<Self, TtsFallbackError> {
        Self::with_options(ttss, TtsFallbackOptions::default())
    }

    /// An adapter over `ttss` (preferred first).
    pub fn with_options(
        ttss: Vec<Arc<dyn Tts>>,
        options: TtsFallbackOptions,
    ) -> Result<Self, TtsFallbackError> {
        let Some(first) = ttss.first() else {
            return Err(TtsFallbackError::NoProviders);
        };
        let channels: Vec<u16> = ttss.iter().map(|t| t.num_channels()).collect();
        if channels.iter().any(|c| *c != channels[0]) {
            return Err(TtsFallbackError::ChannelMismatch(channels));
        }
        let sample_rate = match options.sample_rate {
            Some(0) => return Err(TtsFallbackError::InvalidSampleRate),
            Some(rate) => rate,
            None => ttss.iter().map(|t| t.sample_rate()).max().unwrap_or(0),
        };
        for t in &ttss {
            if t.sample_rate() != sample_rate {
                tracing::info!(tts = %t.label(), from = t.sample_rate(), to = sample_rate, "resampling TTS output");
            }
        }
        let num_channels = first.num_channels();
        let health = ProviderHealth::new(ttss.iter().map(|t| t.label()).collect());
        Ok(Self {
            ttss: Arc::new(ttss),
            options,
            sample_rate,
            num_channels,
            health,
        })
    }

    /// Availability changes of the providers (a slow reader gets `Err(Lagged)` for what it
    /// missed).
    pub fn events(&self) -> crate::types::EventStream<AvailabilityChanged> {
        crate::types::EventStream::new(self.health.subscribe())
    }

    /// Current availability of each provider, in order.
    pub fn availability(&self) -> Vec<bool> {
        self.health.availability()
    }

    /// The options.
    pub fn options(&self) -> &TtsFallbackOptions {
        &self.options
    }

    fn member_conn(&self, conn: ApiConnectOptions) -> ApiConnectOptions {
        ApiConnectOptions {
            max_retry: self.options.max_retry_per_tts,
            ..conn
        }
    }

    /// The longest wait for audio a provider owes before it counts as failed: every attempt's
    /// timeout plus the waits between them.
    fn audio_deadline(&self, conn: ApiConnectOptions) -> Duration {
        let retries = self.options.max_retry_per_tts;
        conn.timeout * (retries + 1) + conn.retry_interval * retries + Duration::from_millis(100)
    }

    fn resampler(&self, index: usize) -> Result<Resampler, ApiError> {
        Resampler::new(
            self.ttss[index].sample_rate(),
            self.sample_rate,
            self.num_channels,
        )
        .map_err(|e| ApiError::other(format!("cannot resample {}: {e}", self.ttss[index].label())))
    }

    fn start_probe(&self, index: usize, text: &str, conn: ApiConnectOptions) {
        let tts = self.ttss[index].clone();
        let text = if text.trim().is_empty() {
            PROBE_TEXT.to_owned()
        } else {
            text.to_owned()
        };
        let conn = conn.no_retry();
        let deadline = self.audio_deadline(conn);
        self.health.start_probe(index, async move {
            let mut audio = tts.synthesize(&text, conn);
            let mut samples = 0;
            loop {
                match tokio::time::timeout(deadline, audio.next()).await {
                    Ok(Some(Ok(a))) => samples += a.frame.samples_per_channel,
                    Ok(None) => return samples > 0,
                    Ok(Some(Err(_))) | Err(_) => return false,
                }
            }
        });
    }

    fn all_failed(&self, last_error: Option<ApiError>) -> ApiError {
        let labels = self.health.labels().join(", ");
        let message = match last_error {
            Some(e) => format!("all TTSs failed ({labels}); last error: {e}"),
            None => format!("all TTSs failed ({labels})"),
        };
        ApiError::Connection {
            message,
            retryable: false,
        }
    }
}

#[async_trait]
impl Tts for FallbackAdapter {
    fn label(&self) -> String {
        "tts.FallbackAdapter".into()
    }

    fn model(&self) -> String {
        self.ttss[0].model()
    }

    fn provider(&self) -> String {
        self.ttss[0].provider()
    }

    /// Streaming when any provider streams (the others are wrapped in a [`StreamAdapter`]);
    /// aligned transcripts only when every provider aligns.
    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: self.ttss.iter().any(|t| t.capabilities().streaming),
            aligned_transcript: self
                .ttss
                .iter()
                .all(|t| t.capabilities().aligned_transcript),
        }
    }

    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn num_channels(&self) -> u16 {
        self.num_channels
    }

    fn synthesize(&self, text: &str, conn: ApiConnectOptions) -> ChunkedStream {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let adapter = self.clone();
        let text = text.to_owned();
        let task = tokio::spawn(async move { adapter.run_synthesize(text, conn, tx).await });
        ChunkedStream::from_channel(rx, Some(task))
    }

    fn stream(&self, conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        let (in_tx, in_rx) = crate::model_input::channel();
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let adapter = self.clone();
        let task = tokio::spawn(async move { adapter.run_stream(conn, in_rx, tx).await });
        Ok(SynthesizeStream::from_channels(in_tx, rx, Some(task)))
    }

    async fn prewarm(&self) {
        self.ttss[0].prewarm().await;
    }
}

/// Pushes a provider's frame through the resampler into the output emitter. Returns `false`
/// once the consumer is gone.
async fn forward_audio(
    audio: &SynthesizedAudio,
    resampler: &mut Resampler,
    emitter: &AudioEmitter,
) -> Result<bool, ApiError> {
    if !audio.delta_text.is_empty() {
        emitter.push_text(&audio.delta_text);
    }
    if !audio.timed_words.is_empty() {
        emitter.push_timed_transcript(audio.timed_words.iter().cloned());
    }
    if audio.frame.is_empty() {
        return Ok(true);
    }
    let frames = resampler
        .push(&audio.frame)
        .map_err(|e| ApiError::protocol(format!("unexpected TTS audio format: {e}")))?;
    for f in frames {
        if !emitter.push_samples(&f.data).await {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn flush_resampler(resampler: &mut Resampler, emitter: &AudioEmitter) -> bool {
    for f in resampler.flush() {
        if !emitter.push_samples(&f.data).await {
            return false;
        }
    }
    true
}

impl FallbackAdapter {
    async fn run_synthesize(
        &self,
        text: String,
        conn: ApiConnectOptions,
        tx: mpsc::Sender<Result<SynthesizedAudio, ApiError>>,
    ) {
        let emitter = AudioEmitter::new(
            tx.clone(),
            self.sample_rate,
            self.num_channels,
            DEFAULT_FRAME_MS,
        );
        emitter.start_segment(uuid::Uuid::new_v4().simple().to_string());
        let candidates = self.health.candidates();
        let deadline = self.audio_deadline(conn);
        let mut last_error = None;
        for (index, tts) in self.ttss.iter().enumerate() {
            if !candidates.contains(&index) {
                self.start_probe(index, &text, conn);
                continue;
            }
            let result: Result<(), ApiError> = async {
                let mut resampler = self.resampler(index)?;
                let mut audio = tts.synthesize(&text, self.member_conn(conn));
                loop {
                    match tokio::time::timeout(deadline, audio.next()).await {
                        Ok(Some(Ok(a))) => {
                            if !forward_audio(&a, &mut resampler, &emitter).await? {
                                return Ok(());
                            }
                        }
                        Ok(Some(Err(e))) => return Err(e),
                        Ok(None) => break,
                        Err(_) => return Err(ApiError::Timeout(deadline)),
                    }
                }
                flush_resampler(&mut resampler, &emitter).await;
                Ok(())
            }
            .await;
            match result {
                Ok(()) => {
                    emitter.end_segment().await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(tts = %tts.label(), %error, "TTS failed");
                    self.health.set_available(index, false);
                    self.start_probe(index, &text, conn);
                    if emitter.has_pushed_audio() {
                        // Another provider would start the text over.
                        tracing::error!(tts = %tts.label(), "TTS failed after audio was produced; not switching");
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                    last_error = Some(error);
                }
            }
        }
        let _ = tx.send(Err(self.all_failed(last_error))).await;
    }

    async fn run_stream(
        &self,
        conn: ApiConnectOptions,
        mut input: crate::model_input::InputReceiver<TtsInput>,
        tx: mpsc::Sender<Result<SynthesizedAudio, ApiError>>,
    ) {
        let emitter = AudioEmitter::new(
            tx.clone(),
            self.sample_rate,
            self.num_channels,
            DEFAULT_FRAME_MS,
        );
        let deadline = self.audio_deadline(conn);
        let mut text = StreamText::default();
        let mut out_segment_open = false;
        let mut failed_here = vec![false; self.ttss.len()];
        let mut last_error = None;

        for (index, available) in self.health.availability().into_iter().enumerate() {
            if !available {
                self.start_probe(index, PROBE_TEXT, conn);
            }
        }

        loop {
            let availability = self.health.availability();
            let next = (0..self.ttss.len())
                .find(|i| availability[*i] && !failed_here[*i])
                .or_else(|| (0..self.ttss.len()).find(|i| !failed_here[*i]));
            let Some(index) = next else {
                let _ = tx.send(Err(self.all_failed(last_error))).await;
                return;
            };
            let tts = self.ttss[index].clone();
            let opened = if tts.capabilities().streaming {
                tts.stream(self.member_conn(conn))
            } else {
                StreamAdapter::new(tts.clone()).stream(self.member_conn(conn))
            };
            let (mut member, mut resampler) = match opened
                .and_then(|s| Ok((s, self.resampler(index)?)))
            {
                Ok(m) => m,
                Err(error) => {
                    tracing::warn!(tts = %tts.label(), %error, "TTS stream could not start, switching");
                    failed_here[index] = true;
                    self.health.set_available(index, false);
                    self.start_probe(index, text.probe_text(), conn);
                    last_error = Some(error);
                    continue;
                }
            };
            text.replay_into(&mut member);

            let error = loop {
                // Audio is read as soon as it comes (streaming providers speak before a
                // flush), but only a provider that owes audio for flushed text can be late.
                let owes_audio = !text.segments.is_empty();
                tokio::select! {
                    item = input.recv(), if !text.input_ended => match item {
                        Some(TtsInput::Text(t)) => {
                            if text.push(&t) {
                                member.push_text(t);
                            }
                        }
                        Some(TtsInput::Flush) => {
                            if text.flush() {
                                member.flush();
                            }
                        }
                        None => {
                            text.end();
                            member.end_input();
                        }
                    },
                    next = next_audio(&mut member, owes_audio || text.input_ended, deadline) => match next {
                        Ok(Some(Ok(audio))) => {
                            if !out_segment_open {
                                emitter.start_segment(uuid::Uuid::new_v4().simple().to_string());
                                out_segment_open = true;
                            }
                            match forward_audio(&audio, &mut resampler, &emitter).await {
                                Ok(true) => {}
                                Ok(false) => return,
                                Err(e) => break e,
                            }
                            if audio.is_final {
                                if !flush_resampler(&mut resampler, &emitter).await || !emitter.end_segment().await {
                                    return;
                                }
                                out_segment_open = false;
                                text.segment_done();
                                failed_here.iter_mut().for_each(|f| *f = false);
                            }
                        }
                        Ok(Some(Err(e))) => break e,
                        Ok(None) => {
                            if text.input_ended && text.segments.is_empty() {
                                return;
                            }
                            break ApiError::protocol("the TTS stream ended before its text was spoken");
                        }
                        Err(_) => break ApiError::Timeout(deadline),
                    },
                }
            };

            tracing::warn!(tts = %tts.label(), %error, "TTS stream failed, switching to the next one");
            failed_here[index] = true;
            self.health.set_available(index, false);
            self.start_probe(index, text.probe_text(), conn);
            if out_segment_open {
                // Its audio started: the rest of this segment is dropped rather than restarted.
                tracing::warn!("skipping the rest of a segment whose audio had started");
                text.skip_current_segment();
                out_segment_open = false;
                if !emitter.end_segment().await {
                    return;
                }
            }
            last_error = Some(error);
        }
    }
}

/// The next item of a provider's stream; with `deadline_applies`, `Err` when it is later than
/// `deadline`.
async fn next_audio(
    member: &mut SynthesizeStream,
    deadline_applies: bool,
    deadline: Duration,
) -> Result<Option<Result<SynthesizedAudio, ApiError>>, tokio::time::error::Elapsed> {
    if deadline_applies {
        tokio::time::timeout(deadline, member.next_audio()).await
    } else {
        Ok(member.next_audio().await)
    }
}

/// The text of a fallback stream that no provider has finished speaking yet.
#[derive(Default)]
struct StreamText {
    /// Flushed segments whose audio has not ended, oldest first.
    segments: VecDeque<String>,
    /// Text pushed since the last flush.
    current: String,
    /// Drop text until the next flush (its segment was partly spoken by a failed provider).
    discard_current: bool,
    input_ended: bool,
}

impl StreamText {
    /// Records pushed text; returns whether to forward it.
    fn push(&mut self, t: &str) -> bool {
        if self.discard_current {
            return false;
        }
        self.current.push_str(t);
        true
    }

    /// Ends the current segment; returns whether a flush should be forwarded.
    fn flush(&mut self) -> bool {
        self.discard_current = false;
        if self.current.trim().is_empty() {
            self.current.clear();
            return false;
        }
        self.segments.push_back(std::mem::take(&mut self.current));
        true
    }

    fn end(&mut self) {
        self.flush();
        self.input_ended = true;
    }

    fn segment_done(&mut self) {
        self.segments.pop_front();
    }

    fn skip_current_segment(&mut self) {
        if self.segments.pop_front().is_none() {
            self.current.clear();
            self.discard_current = true;
        }
    }

    fn probe_text(&self) -> &str {
        self.segments
            .front()
            .map(String::as_str)
            .unwrap_or(&self.current)
    }

    /// Sends everything not yet spoken to a new provider's stream.
    fn replay_into(&self, stream: &mut SynthesizeStream) {
        for seg in &self.segments {
            stream.push_text(seg.clone());
            stream.flush();
        }
        if !self.current.is_empty() {
            stream.push_text(self.current.clone());
        }
        if self.input_ended {
            stream.end_input();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use parking_lot::Mutex;

    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum Mode {
        /// 10 ms of audio per character.
        Speak,
        /// Fail before any audio.
        FailBefore,
        /// Speak half of the text, then fail.
        FailMidway,
        /// Never answer.
        Hang,
    }

    struct FakeTts {
        name: &'static str,
        rate: u32,
        streaming: bool,
        /// One mode per synthesize call / per stream segment, then `fallback`.
        script: Mutex<VecDeque<Mode>>,
        fallback: Mode,
        /// Texts synthesized (one per call or per stream segment).
        texts: Arc<Mutex<Vec<String>>>,
        streams: AtomicUsize,
    }

    impl FakeTts {
        fn new(
            name: &'static str,
            rate: u32,
            streaming: bool,
            script: Vec<Mode>,
            fallback: Mode,
        ) -> Arc<Self> {
            Arc::new(Self {
                name,
                rate,
                streaming,
                script: Mutex::new(script.into()),
                fallback,
                texts: Arc::default(),
                streams: AtomicUsize::new(0),
            })
        }

        fn next_mode(&self) -> Mode {
            self.script.lock().pop_front().unwrap_or(self.fallback)
        }

        fn texts(&self) -> Vec<String> {
            self.texts.lock().clone()
        }
    }

    /// Speaks `text` per `mode` into `emitter`.
    async fn speak(emitter: &AudioEmitter, text: &str, mode: Mode) -> Result<(), ApiError> {
        let samples = text.chars().count() * (emitter.sample_rate() as usize / 100);
        match mode {
            Mode::Speak => {
                emitter.push_samples(&vec![1; samples]).await;
                Ok(())
            }
            Mode::FailBefore => Err(ApiError::status(500, "tts down")),
            Mode::FailMidway => {
                emitter.push_samples(&vec![1; samples / 2]).await;
                Err(ApiError::connection("connection dropped"))
            }
            Mode::Hang => std::future::pending().await,
        }
    }

    #[async_trait]
    impl Tts for FakeTts {
        fn label(&self) -> String {
            self.name.into()
        }
        fn capabilities(&self) -> TtsCapabilities {
            TtsCapabilities {
                streaming: self.streaming,
                aligned_transcript: false,
            }
        }
        fn sample_rate(&self) -> u32 {
            self.rate
        }
        fn synthesize(&self, text: &str, _conn: ApiConnectOptions) -> ChunkedStream {
            self.texts.lock().push(text.to_owned());
            let mode = self.next_mode();
            let (tx, rx) = mpsc::channel(64);
            let text = text.to_owned();
            let rate = self.rate;
            let task = tokio::spawn(async move {
                let emitter = AudioEmitter::new(tx.clone(), rate, 1, DEFAULT_FRAME_MS);
                emitter.start_segment("s");
                match speak(&emitter, &text, mode).await {
                    Ok(()) => {
                        emitter.end_segment().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                    }
                }
            });
            ChunkedStream::from_channel(rx, Some(task))
        }
        fn stream(&self, _conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
            self.streams.fetch_add(1, Ordering::SeqCst);
            let (in_tx, mut in_rx) = crate::model_input::channel();
            let (tx, rx) = mpsc::channel(64);
            let rate = self.rate;
            let texts = self.texts.clone();
            let script: Vec<Mode> = {
                let mut s = self.script.lock();
                s.drain(..).collect()
            };
            let fallback = self.fallback;
            let task = tokio::spawn(async move {
                let mut modes: VecDeque<Mode> = script.into();
                let emitter = AudioEmitter::new(tx.clone(), rate, 1, DEFAULT_FRAME_MS);
                let mut segment = String::new();
                while let Some(item) = in_rx.recv().await {
                    match item {
                        TtsInput::Text(t) => segment.push_str(&t),
                        TtsInput::Flush => {
                            if segment.is_empty() {
                                continue;
                            }
                            let text = std::mem::take(&mut segment);
                            texts.lock().push(text.clone());
                            emitter.start_segment("seg");
                            let mode = modes.pop_front().unwrap_or(fallback);
                            match speak(&emitter, &text, mode).await {
                                Ok(()) => {
                                    emitter.end_segment().await;
                                }
                                Err(e) => {
                                    let _ = tx.send(Err(e)).await;
                                    return;
                                }
                            }
                        }
                    }
                }
            });
            Ok(SynthesizeStream::from_channels(in_tx, rx, Some(task)))
        }
    }

    fn adapter(ttss: &[&Arc<FakeTts>]) -> FallbackAdapter {
        FallbackAdapter::new(ttss.iter().map(|t| (*t).clone() as Arc<dyn Tts>).collect()).unwrap()
    }

    async fn collect_chunked(
        mut stream: ChunkedStream,
    ) -> (Vec<SynthesizedAudio>, Option<ApiError>) {
        let mut frames = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(f) => frames.push(f),
                Err(e) => return (frames, Some(e)),
            }
        }
        (frames, None)
    }

    async fn collect_stream(
        stream: &mut SynthesizeStream,
    ) -> (Vec<SynthesizedAudio>, Option<ApiError>) {
        crate::tts::adapter::tests::collect(stream).await
    }

    /// Samples per segment, in order.
    fn segments(frames: &[SynthesizedAudio]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut current = 0;
        for f in frames {
            current += f.frame.samples_per_channel;
            if f.is_final {
                out.push(current);
                current = 0;
            }
        }
        out
    }

    #[test]
    fn construction_rules() {
        assert_eq!(
            FallbackAdapter::new(vec![]).unwrap_err(),
            TtsFallbackError::NoProviders
        );
        let a = FakeTts::new("a", 24_000, true, vec![], Mode::Speak);
        let b = FakeTts::new("b", 16_000, false, vec![], Mode::Speak);
        let tts = adapter(&[&a, &b]);
        assert_eq!(tts.sample_rate(), 24_000);
        assert!(tts.capabilities().streaming);
        assert_eq!(tts.options().max_retry_per_tts, 2);
        let fixed = FallbackAdapter::with_options(
            vec![a.clone() as Arc<dyn Tts>],
            TtsFallbackOptions {
                sample_rate: Some(48_000),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fixed.sample_rate(), 48_000);

        struct Stereo;
        #[async_trait]
        impl Tts for Stereo {
            fn label(&self) -> String {
                "stereo".into()
            }
            fn capabilities(&self) -> TtsCapabilities {
                TtsCapabilities::default()
            }
            fn sample_rate(&self) -> u32 {
                24_000
            }
            fn num_channels(&self) -> u16 {
                2
            }
            fn synthesize(&self, _text: &str, _conn: ApiConnectOptions) -> ChunkedStream {
                let (_tx, rx) = mpsc::channel(1);
                ChunkedStream::from_channel(rx, None)
            }
        }
        assert_eq!(
            FallbackAdapter::new(vec![a as Arc<dyn Tts>, Arc::new(Stereo)]).unwrap_err(),
            TtsFallbackError::ChannelMismatch(vec![1, 2])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn synthesize_switches_and_resamples() {
        let a = FakeTts::new("a", 24_000, false, vec![], Mode::FailBefore);
        let b = FakeTts::new("b", 16_000, false, vec![], Mode::Speak);
        let tts = adapter(&[&a, &b]);
        let mut changes = tts.events();
        let (frames, error) =
            collect_chunked(tts.synthesize("Hello world", ApiConnectOptions::default())).await;
        assert!(error.is_none(), "{error:?}");
        // 110 ms at 16 kHz from b, delivered at 24 kHz.
        assert_eq!(segments(&frames), [2640]);
        assert!(frames.iter().all(|f| f.frame.sample_rate == 24_000));
        let down = changes.recv().await.unwrap().unwrap();
        assert_eq!((down.label.as_str(), down.available), ("a", false));
        assert_eq!(b.texts(), ["Hello world"]);
    }

    #[tokio::test(start_paused = true)]
    async fn synthesize_does_not_switch_after_audio() {
        let a = FakeTts::new("a", 24_000, false, vec![], Mode::FailMidway);
        let b = FakeTts::new("b", 24_000, false, vec![], Mode::Speak);
        let tts = adapter(&[&a, &b]);
        let (frames, error) =
            collect_chunked(tts.synthesize("Hello world", ApiConnectOptions::default())).await;
        assert!(!frames.is_empty());
        assert!(matches!(error, Some(ApiError::Connection { .. })));
        assert!(b.texts().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn synthesize_recovers_after_probe() {
        let a = FakeTts::new("a", 24_000, false, vec![Mode::FailBefore], Mode::Speak);
        let b = FakeTts::new("b", 24_000, false, vec![], Mode::Speak);
        let tts = adapter(&[&a, &b]);
        let mut changes = tts.events();
        let (_, error) =
            collect_chunked(tts.synthesize("Hi there", ApiConnectOptions::default())).await;
        assert!(error.is_none());
        assert!(!changes.recv().await.unwrap().unwrap().available);
        let up = changes.recv().await.unwrap().unwrap();
        assert_eq!((up.index, up.available), (0, true));
        // The probe re-synthesized the failed text.
        assert_eq!(a.texts(), ["Hi there", "Hi there"]);
        collect_chunked(tts.synthesize("Again", ApiConnectOptions::default())).await;
        assert_eq!(a.texts().last().map(String::as_str), Some("Again"));
    }

    #[tokio::test(start_paused = true)]
    async fn synthesize_times_out_a_silent_provider() {
        let a = FakeTts::new("a", 24_000, false, vec![], Mode::Hang);
        let b = FakeTts::new("b", 24_000, false, vec![], Mode::Speak);
        let tts = adapter(&[&a, &b]);
        let start = tokio::time::Instant::now();
        let (frames, error) =
            collect_chunked(tts.synthesize("Hi", ApiConnectOptions::default())).await;
        assert!(error.is_none() && !frames.is_empty());
        // 3 attempts of 10 s and 2 waits of 2 s, plus 0.1 s margin.
        assert_eq!(start.elapsed(), Duration::from_millis(34_100));
    }

    #[tokio::test(start_paused = true)]
    async fn all_failing_is_an_error() {
        let a = FakeTts::new("a", 24_000, false, vec![], Mode::FailBefore);
        let b = FakeTts::new("b", 24_000, false, vec![], Mode::FailBefore);
        let tts = adapter(&[&a, &b]);
        let (_, error) = collect_chunked(tts.synthesize("Hi", ApiConnectOptions::default())).await;
        let error = error.unwrap();
        assert!(
            error.to_string().contains("all TTSs failed (a, b)"),
            "{error}"
        );
        assert!(!error.is_retryable());
    }

    const SEG1: &str = "First segment.";
    const SEG2: &str = "Second segment here.";
    const SEG3: &str = "Third.";

    #[tokio::test(start_paused = true)]
    async fn stream_replays_unspoken_segments_on_the_next_provider() {
        // a speaks segment 1, then fails before audio on segment 2.
        let a = FakeTts::new(
            "a",
            24_000,
            true,
            vec![Mode::Speak, Mode::FailBefore],
            Mode::Speak,
        );
        let b = FakeTts::new("b", 24_000, true, vec![], Mode::Speak);
        let tts = adapter(&[&a, &b]);
        let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
        stream.push_text(SEG1);
        stream.flush();
        stream.push_text("Second ");
        stream.push_text("segment here.");
        stream.flush();
        stream.push_text(SEG3);
        stream.end_input();
        let (frames, error) = collect_stream(&mut stream).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            segments(&frames),
            [240 * SEG1.len(), 240 * SEG2.len(), 240 * SEG3.len()]
        );
        // a's third text is its recovery probe: the segment it failed on.
        assert_eq!(a.texts(), [SEG1, SEG2, SEG2]);
        assert_eq!(b.texts(), [SEG2, SEG3]);
    }

    #[tokio::test(start_paused = true)]
    async fn stream_skips_the_rest_of_a_segment_whose_audio_started() {
        let a = FakeTts::new("a", 24_000, true, vec![Mode::FailMidway], Mode::Speak);
        let b = FakeTts::new("b", 16_000, false, vec![], Mode::Speak);
        let tts = adapter(&[&a, &b]);
        let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
        stream.push_text(SEG1);
        stream.flush();
        stream.push_text(SEG2);
        stream.end_input();
        let (frames, error) = collect_stream(&mut stream).await;
        assert!(error.is_none(), "{error:?}");
        let segs = segments(&frames);
        assert_eq!(segs.len(), 2);
        assert!(segs[0] < 240 * SEG1.len(), "segment 1 ends early: {segs:?}");
        // b (non-streaming, wrapped in a StreamAdapter, resampled to 24 kHz) speaks segment 2
        // only.
        assert_eq!(segs[1], 240 * SEG2.len());
        assert_eq!(b.texts(), [SEG2]);
    }

    #[tokio::test(start_paused = true)]
    async fn stream_ends_with_an_error_when_all_fail() {
        let a = FakeTts::new("a", 24_000, true, vec![], Mode::FailBefore);
        let b = FakeTts::new("b", 24_000, true, vec![], Mode::FailBefore);
        let tts = adapter(&[&a, &b]);
        let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
        stream.push_text(SEG1);
        stream.end_input();
        let (frames, error) = collect_stream(&mut stream).await;
        assert!(frames.is_empty());
        assert!(error.is_some_and(|e| e.to_string().contains("all TTSs failed")));
    }
}
