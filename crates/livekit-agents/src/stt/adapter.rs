//! [`StreamAdapter`]: streaming recognition for providers that only recognize whole buffers.
//!
//! Audio goes through a VAD; each utterance the VAD delimits is sent to
//! [`Stt::recognize_once`] (with the stream's retry policy, see [`recognize`]) and comes back
//! as one final transcript.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{
    recognize, RecognitionUsage, SpeechEvent, SpeechEventType, SpeechStream, Stt, SttCapabilities,
    SttInput, EVENT_BUFFER,
};
use crate::audio::AudioFrame;
use crate::types::{ApiConnectOptions, ApiError};
use crate::vad::{Vad, VadEventType, VadInput};

/// Wraps a non-streaming [`Stt`] and a [`Vad`] into a streaming [`Stt`].
///
/// The stream emits [`SpeechEventType::StartOfSpeech`] when the VAD hears speech start, and
/// when it ends, [`SpeechEventType::EndOfSpeech`] followed by one
/// [`SpeechEventType::FinalTranscript`] for the whole utterance (nothing when the provider
/// returns an empty transcript). A recognition that fails after its retries is delivered as an
/// `Err` item and ends the stream. There are no interim transcripts.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use livekit_agents::stt::{Stt, StreamAdapter};
/// # use livekit_agents::vad::Vad;
/// # fn demo(whisper: Arc<dyn Stt>, silero: Arc<dyn Vad>) -> Result<(), livekit_agents::types::ApiError> {
/// let stt = StreamAdapter::new(whisper, silero);
/// let _stream = stt.stream(Some("en".into()), Default::default())?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StreamAdapter {
    stt: Arc<dyn Stt>,
    vad: Arc<dyn Vad>,
}

impl std::fmt::Debug for StreamAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamAdapter")
            .field("stt", &self.stt.label())
            .field("vad", &self.vad.label())
            .finish()
    }
}

impl StreamAdapter {
    /// Segments audio with `vad` and recognizes each utterance with `stt`.
    pub fn new(stt: Arc<dyn Stt>, vad: Arc<dyn Vad>) -> Self {
        Self { stt, vad }
    }

    /// The wrapped provider.
    pub fn wrapped(&self) -> &Arc<dyn Stt> {
        &self.stt
    }
}

#[async_trait]
impl Stt for StreamAdapter {
    fn label(&self) -> String {
        format!("stt.StreamAdapter({})", self.stt.label())
    }

    fn model(&self) -> String {
        self.stt.model()
    }

    fn provider(&self) -> String {
        self.stt.provider()
    }

    fn capabilities(&self) -> SttCapabilities {
        let inner = self.stt.capabilities();
        SttCapabilities {
            streaming: true,
            interim_results: false,
            ..inner
        }
    }

    fn supports_keyterms(&self) -> bool {
        self.stt.supports_keyterms()
    }

    fn update_session_keyterms(&self, keyterms: &[String]) {
        self.stt.update_session_keyterms(keyterms);
    }

    fn supports_chat_context(&self) -> bool {
        self.stt.supports_chat_context()
    }

    fn push_conversation_item(&self, item: &crate::llm::ChatItem) {
        self.stt.push_conversation_item(item);
    }

    async fn recognize_once(
        &self,
        frames: &[AudioFrame],
        language: Option<&str>,
        conn: &ApiConnectOptions,
    ) -> Result<SpeechEvent, ApiError> {
        self.stt.recognize_once(frames, language, conn).await
    }

    fn stream(
        &self,
        language: Option<String>,
        conn: ApiConnectOptions,
    ) -> Result<SpeechStream, ApiError> {
        let (in_tx, in_rx) = crate::model_input::channel();
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_BUFFER);
        let task = tokio::spawn(run_adapter(
            self.stt.clone(),
            self.vad.clone(),
            language,
            conn,
            in_rx,
            ev_tx,
        ));
        Ok(SpeechStream::from_channels(in_tx, ev_rx, Some(task)))
    }

    async fn prewarm(&self) {
        self.stt.prewarm().await;
    }
}

async fn run_adapter(
    stt: Arc<dyn Stt>,
    vad: Arc<dyn Vad>,
    language: Option<String>,
    conn: ApiConnectOptions,
    mut input: crate::model_input::InputReceiver<SttInput>,
    events: mpsc::Sender<Result<SpeechEvent, ApiError>>,
) {
    let mut vad_stream = vad.stream();
    let vad_input = vad_stream.input_handle();
    // Only `vad_input` keeps the VAD's input open now: dropping it ends the VAD stream.
    vad_stream.end_input();

    // Audio keeps flowing into the VAD while an utterance is being recognized.
    let forward = async move {
        while let Some(item) = input.recv().await {
            let item = match item {
                SttInput::Frame(frame) => VadInput::Frame(frame),
                SttInput::Flush => VadInput::Flush,
            };
            if vad_input.send(item).is_err() {
                break;
            }
        }
        drop(vad_input);
    };

    let recognize_utterances = async move {
        while let Some(ev) = vad_stream.next_event().await {
            match ev.kind {
                VadEventType::StartOfSpeech => {
                    if !send(&events, SpeechEvent::new(SpeechEventType::StartOfSpeech)).await {
                        return;
                    }
                }
                VadEventType::EndOfSpeech => {
                    if !send(&events, SpeechEvent::new(SpeechEventType::EndOfSpeech)).await {
                        return;
                    }
                    let started = tokio::time::Instant::now();
                    match recognize(stt.as_ref(), &ev.frames, language.as_deref(), conn).await {
                        Ok(result) => {
                            // As the reference's `recognize`: each request reports its time and
                            // the audio it recognized (the session's `stt_duration`).
                            let mut usage = SpeechEvent::new(SpeechEventType::RecognitionUsage);
                            usage.request_id = result.request_id.clone();
                            usage.recognition_usage = Some(RecognitionUsage {
                                audio_duration: ev.frames.iter().map(|f| f.duration_secs()).sum(),
                                request_duration: Some(started.elapsed().as_secs_f64()),
                            });
                            if !send(&events, usage).await {
                                return;
                            }
                            let Some(best) = result.alternatives.into_iter().next() else {
                                continue;
                            };
                            if best.text.trim().is_empty() {
                                continue;
                            }
                            let mut final_ev =
                                SpeechEvent::transcript(SpeechEventType::FinalTranscript, best);
                            final_ev.request_id = result.request_id;
                            if !send(&events, final_ev).await {
                                return;
                            }
                        }
                        Err(error) => {
                            tracing::error!(stt = %stt.label(), %error, "utterance recognition failed");
                            let _ = events.send(Err(error)).await;
                            return;
                        }
                    }
                }
                VadEventType::InferenceDone => {}
            }
        }
    };

    // Recognition ending (error, consumer gone) stops the forwarding too; input ending lets
    // the VAD deliver its last events first.
    let mut forward = std::pin::pin!(forward);
    let mut recognize_utterances = std::pin::pin!(recognize_utterances);
    tokio::select! {
        _ = &mut recognize_utterances => return,
        _ = &mut forward => {}
    }
    recognize_utterances.await;
}

async fn send(events: &mpsc::Sender<Result<SpeechEvent, ApiError>>, ev: SpeechEvent) -> bool {
    events.send(Ok(ev)).await.is_ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stt::SpeechData;
    use crate::vad::{VadCapabilities, VadEvent, VadStream};
    use parking_lot::Mutex;

    /// A VAD that calls a frame speech when its first sample is non-zero: start of speech on
    /// the first speech frame, end of speech (with the utterance's frames) on the first silent
    /// frame after it, or at the end of input.
    pub(crate) struct ThresholdVad;

    impl Vad for ThresholdVad {
        fn label(&self) -> String {
            "fake.VAD".into()
        }

        fn capabilities(&self) -> VadCapabilities {
            VadCapabilities {
                update_interval: 0.01,
            }
        }

        fn stream(&self) -> VadStream {
            let (in_tx, mut in_rx) = crate::model_input::channel::<VadInput>();
            let (ev_tx, ev_rx) = mpsc::channel(64);
            let task = tokio::spawn(async move {
                let mut utterance: Option<Vec<AudioFrame>> = None;
                while let Some(item) = in_rx.recv().await {
                    let VadInput::Frame(frame) = item else {
                        continue;
                    };
                    let speech = frame.data.first().is_some_and(|s| *s != 0);
                    match (&mut utterance, speech) {
                        (None, true) => {
                            utterance = Some(vec![frame]);
                            let _ = ev_tx.send(VadEvent::new(VadEventType::StartOfSpeech)).await;
                        }
                        (Some(frames), true) => frames.push(frame),
                        (Some(_), false) => {
                            let mut ev = VadEvent::new(VadEventType::EndOfSpeech);
                            ev.frames = utterance.take().unwrap_or_default();
                            let _ = ev_tx.send(ev).await;
                        }
                        (None, false) => {}
                    }
                }
                if let Some(frames) = utterance {
                    let mut ev = VadEvent::new(VadEventType::EndOfSpeech);
                    ev.frames = frames;
                    let _ = ev_tx.send(ev).await;
                }
            });
            VadStream::from_channels(in_tx, ev_rx, Some(task))
        }
    }

    pub(crate) fn speech(samples: usize) -> AudioFrame {
        AudioFrame::new(vec![100; samples], 16_000, 1).unwrap()
    }

    pub(crate) fn silence(samples: usize) -> AudioFrame {
        AudioFrame::silence(16_000, 1, samples)
    }

    /// Transcribes a buffer as `"<n> samples"`; call `i` first takes `script[i]`: an error to
    /// fail with, or `None` to succeed.
    struct CountingStt {
        script: Mutex<std::collections::VecDeque<Option<ApiError>>>,
        calls: Mutex<Vec<usize>>,
        empty: bool,
    }

    #[async_trait]
    impl Stt for CountingStt {
        fn label(&self) -> String {
            "fake.STT".into()
        }

        fn capabilities(&self) -> SttCapabilities {
            SttCapabilities {
                offline_recognize: true,
                ..Default::default()
            }
        }

        async fn recognize_once(
            &self,
            frames: &[AudioFrame],
            language: Option<&str>,
            _conn: &ApiConnectOptions,
        ) -> Result<SpeechEvent, ApiError> {
            let samples: usize = frames.iter().map(|f| f.samples_per_channel).sum();
            self.calls.lock().push(samples);
            // The request takes 30 ms (reported as its `request_duration`).
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            if let Some(Some(e)) = self.script.lock().pop_front() {
                return Err(e);
            }
            let text = if self.empty {
                String::new()
            } else {
                format!("{samples} samples")
            };
            Ok(SpeechEvent::transcript(
                SpeechEventType::FinalTranscript,
                SpeechData {
                    text,
                    language: language.unwrap_or("en").into(),
                    ..Default::default()
                },
            ))
        }
    }

    fn adapter(script: Vec<Option<ApiError>>, empty: bool) -> (StreamAdapter, Arc<CountingStt>) {
        let stt = Arc::new(CountingStt {
            script: Mutex::new(script.into()),
            calls: Mutex::default(),
            empty,
        });
        (StreamAdapter::new(stt.clone(), Arc::new(ThresholdVad)), stt)
    }

    async fn collect(mut stream: SpeechStream) -> Vec<Result<(SpeechEventType, String), ApiError>> {
        let mut out = Vec::new();
        while let Some(ev) = stream.next_event().await {
            out.push(ev.map(|e| (e.kind, e.text().to_owned())));
        }
        out
    }

    #[test]
    fn capabilities_are_streaming_without_interims() {
        let (a, _) = adapter(vec![], false);
        let caps = a.capabilities();
        assert!(caps.streaming && !caps.interim_results && caps.offline_recognize);
        assert_eq!(a.label(), "stt.StreamAdapter(fake.STT)");
    }

    #[tokio::test(start_paused = true)]
    async fn one_final_transcript_per_utterance() {
        let (a, stt) = adapter(vec![], false);
        let mut stream = a
            .stream(Some("fr".into()), ApiConnectOptions::default())
            .unwrap();
        for frame in [
            silence(160),
            speech(160),
            speech(320),
            silence(160),
            speech(480),
            silence(160),
        ] {
            stream.push_frame(frame);
        }
        stream.end_input();
        let events = collect(stream).await;
        use SpeechEventType::*;
        let expected: Vec<Result<(SpeechEventType, String), ApiError>> = vec![
            Ok((StartOfSpeech, String::new())),
            Ok((EndOfSpeech, String::new())),
            Ok((RecognitionUsage, String::new())),
            Ok((FinalTranscript, "480 samples".into())),
            Ok((StartOfSpeech, String::new())),
            Ok((EndOfSpeech, String::new())),
            Ok((RecognitionUsage, String::new())),
            Ok((FinalTranscript, "480 samples".into())),
        ];
        assert_eq!(events.len(), expected.len());
        for (got, want) in events.iter().zip(&expected) {
            assert_eq!(got.as_ref().ok(), want.as_ref().ok());
        }
        assert_eq!(*stt.calls.lock(), [480, 480]);
    }

    #[tokio::test(start_paused = true)]
    async fn empty_transcripts_are_dropped() {
        let (a, _) = adapter(vec![], true);
        let mut stream = a.stream(None, ApiConnectOptions::default()).unwrap();
        stream.push_frame(speech(160));
        stream.push_frame(silence(160));
        stream.end_input();
        let kinds: Vec<_> = collect(stream)
            .await
            .into_iter()
            .map(|e| e.unwrap().0)
            .collect();
        assert_eq!(
            kinds,
            [
                SpeechEventType::StartOfSpeech,
                SpeechEventType::EndOfSpeech,
                SpeechEventType::RecognitionUsage
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn recognition_is_retried_then_errors_end_the_stream() {
        // One retryable failure is retried (default policy); a fatal one ends the stream.
        let (a, stt) = adapter(
            vec![
                Some(ApiError::connection("reset")),
                None,
                Some(ApiError::status(401, "bad key")),
            ],
            false,
        );
        let mut stream = a.stream(None, ApiConnectOptions::default()).unwrap();
        stream.push_frame(speech(160));
        stream.push_frame(silence(160));
        stream.push_frame(speech(160));
        stream.push_frame(silence(160));
        stream.push_frame(speech(160));
        stream.push_frame(silence(160));
        stream.end_input();
        let events = collect(stream).await;
        let kinds: Vec<_> = events
            .iter()
            .map(|e| e.as_ref().map(|e| e.0).ok())
            .collect();
        use SpeechEventType::*;
        assert_eq!(
            kinds,
            [
                Some(StartOfSpeech),
                Some(EndOfSpeech),
                Some(RecognitionUsage),
                Some(FinalTranscript),
                Some(StartOfSpeech),
                Some(EndOfSpeech),
                None
            ]
        );
        assert!(matches!(
            events.last(),
            Some(Err(ApiError::Status { status: 401, .. }))
        ));
        assert_eq!(*stt.calls.lock(), [160, 160, 160]);
    }

    #[tokio::test(start_paused = true)]
    async fn each_recognition_reports_its_request_time_and_audio() {
        let (a, _) = adapter(vec![], false);
        let mut stream = a.stream(None, ApiConnectOptions::default()).unwrap();
        stream.push_frame(speech(1600));
        stream.push_frame(silence(160));
        stream.end_input();
        let mut usage = Vec::new();
        while let Some(ev) = stream.next_event().await {
            if let Some(u) = ev.unwrap().recognition_usage {
                usage.push(u);
            }
        }
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].request_duration, Some(0.03));
        assert!((usage[0].audio_duration - 0.1).abs() < 1e-9, "{usage:?}");
    }
}
