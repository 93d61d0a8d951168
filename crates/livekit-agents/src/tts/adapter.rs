//! [`StreamAdapter`]: streaming synthesis for providers that only synthesize whole texts.
//!
//! Pushed text is split into sentences as it arrives (a streaming [`SentenceTokenizer`]); each
//! sentence is synthesized with [`Tts::synthesize`] in order, while later text keeps being
//! tokenized, and the audio of everything between two flushes forms one segment.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{
    AudioEmitter, ChunkedStream, SynthesizeStream, Tts, TtsCapabilities, TtsInput, DEFAULT_FRAME_MS,
};
use crate::stt::EVENT_BUFFER;
use crate::tokenize::{BasicSentenceTokenizer, SentenceTokenizer};
use crate::types::{ApiConnectOptions, ApiError, TimedString};

/// Wraps a non-streaming [`Tts`] into a streaming one.
///
/// Each sentence is attached to the audio as a [`TimedString`] whose start is the audio
/// duration synthesized before it in the segment (its end is not known when it is emitted and
/// equals the start), so the adapter reports `aligned_transcript`. A synthesis that fails after
/// its retries is delivered as an `Err` item and ends the stream.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use livekit_agents::tts::{Tts, StreamAdapter};
/// # fn demo(openai_tts: Arc<dyn Tts>) -> Result<(), livekit_agents::types::ApiError> {
/// let tts = StreamAdapter::new(openai_tts);
/// let mut stream = tts.stream(Default::default())?;
/// stream.push_text("Hello! How can I help you today?");
/// stream.end_input();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StreamAdapter {
    tts: Arc<dyn Tts>,
    tokenizer: Arc<dyn SentenceTokenizer>,
}

impl std::fmt::Debug for StreamAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamAdapter")
            .field("tts", &self.tts.label())
            .finish_non_exhaustive()
    }
}

impl StreamAdapter {
    /// Wraps `tts` with the default sentence tokenizer ([`BasicSentenceTokenizer`]).
    pub fn new(tts: Arc<dyn Tts>) -> Self {
        Self::with_tokenizer(tts, Arc::new(BasicSentenceTokenizer::default()))
    }

    /// Wraps `tts`, splitting text with `tokenizer`.
    pub fn with_tokenizer(tts: Arc<dyn Tts>, tokenizer: Arc<dyn SentenceTokenizer>) -> Self {
        Self { tts, tokenizer }
    }

    /// The wrapped provider.
    pub fn wrapped(&self) -> &Arc<dyn Tts> {
        &self.tts
    }
}

#[async_trait]
impl Tts for StreamAdapter {
    fn label(&self) -> String {
        format!("tts.StreamAdapter({})", self.tts.label())
    }

    fn model(&self) -> String {
        self.tts.model()
    }

    fn provider(&self) -> String {
        self.tts.provider()
    }

    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            aligned_transcript: true,
        }
    }

    fn sample_rate(&self) -> u32 {
        self.tts.sample_rate()
    }

    fn num_channels(&self) -> u16 {
        self.tts.num_channels()
    }

    fn synthesize(&self, text: &str, conn: ApiConnectOptions) -> ChunkedStream {
        self.tts.synthesize(text, conn)
    }

    fn stream(&self, conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        let (in_tx, in_rx) = crate::model_input::channel();
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_BUFFER);
        let emitter = AudioEmitter::new(
            ev_tx.clone(),
            self.tts.sample_rate(),
            self.tts.num_channels(),
            DEFAULT_FRAME_MS,
        );
        let task = tokio::spawn(run_adapter(
            self.tts.clone(),
            self.tokenizer.clone(),
            conn,
            in_rx,
            emitter,
            ev_tx,
        ));
        Ok(SynthesizeStream::from_channels(in_tx, ev_rx, Some(task)))
    }

    async fn prewarm(&self) {
        self.tts.prewarm().await;
    }
}

/// What the tokenizing side hands to the synthesizing side.
enum Work {
    Sentence(String),
    EndSegment,
}

async fn run_adapter(
    tts: Arc<dyn Tts>,
    tokenizer: Arc<dyn SentenceTokenizer>,
    conn: ApiConnectOptions,
    mut input: crate::model_input::InputReceiver<TtsInput>,
    emitter: AudioEmitter,
    errors: mpsc::Sender<Result<super::SynthesizedAudio, ApiError>>,
) {
    let (work_tx, mut work_rx) = mpsc::unbounded_channel();

    // Tokenizing never waits for synthesis, so sentences are ready as soon as audio is.
    let tokenize = async move {
        let mut sentences = tokenizer.stream();
        loop {
            let (ready, end_segment, done) = match input.recv().await {
                Some(TtsInput::Text(text)) => (sentences.push_text(&text), false, false),
                Some(TtsInput::Flush) => (sentences.flush(), true, false),
                None => (sentences.end_input(), true, true),
            };
            for s in ready {
                if work_tx.send(Work::Sentence(s)).is_err() {
                    return;
                }
            }
            if end_segment && work_tx.send(Work::EndSegment).is_err() {
                return;
            }
            if done {
                return;
            }
        }
    };

    let synthesize = async move {
        let mut segment_start: Option<f64> = None;
        while let Some(work) = work_rx.recv().await {
            match work {
                Work::Sentence(sentence) => {
                    if sentence.trim().is_empty() {
                        continue;
                    }
                    let (start, first_in_segment) = match segment_start {
                        Some(start) => (start, false),
                        None => {
                            emitter.start_segment(uuid::Uuid::new_v4().simple().to_string());
                            let start = emitter.pushed_duration();
                            segment_start = Some(start);
                            (start, true)
                        }
                    };
                    let offset = emitter.pushed_duration() - start;
                    // The tokenizer drops the whitespace between sentences; put one space back
                    // so the concatenated text reads like the input.
                    let text = if first_in_segment {
                        sentence.clone()
                    } else {
                        format!(" {sentence}")
                    };
                    emitter.push_text(&text);
                    emitter.push_timed_transcript([TimedString::new(text, offset, offset)]);
                    let mut audio = tts.synthesize(&sentence, conn);
                    while let Some(item) = futures::StreamExt::next(&mut audio).await {
                        match item {
                            Ok(chunk) => {
                                if !emitter.push_samples(&chunk.frame.data).await {
                                    return;
                                }
                            }
                            Err(error) => {
                                tracing::error!(tts = %tts.label(), %error, "sentence synthesis failed");
                                let _ = errors.send(Err(error)).await;
                                return;
                            }
                        }
                    }
                }
                Work::EndSegment => {
                    if segment_start.take().is_some() && !emitter.end_segment().await {
                        return;
                    }
                }
            }
        }
    };

    // Synthesis ending (error, consumer gone) stops tokenizing; input ending lets the queued
    // sentences be spoken first.
    let mut tokenize = std::pin::pin!(tokenize);
    let mut synthesize = std::pin::pin!(synthesize);
    tokio::select! {
        _ = &mut synthesize => return,
        _ = &mut tokenize => {}
    }
    synthesize.await;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tts::{ChunkedTtsTask, SynthesizedAudio};
    use parking_lot::Mutex;

    /// Synthesizes 10 ms of audio per character at 1 kHz (sample value = text length), and
    /// fails on texts containing `FAIL`.
    pub(crate) struct CharTts {
        pub(crate) name: &'static str,
        pub(crate) sample_rate: u32,
        pub(crate) texts: Mutex<Vec<String>>,
    }

    impl CharTts {
        pub(crate) fn new(name: &'static str, sample_rate: u32) -> Arc<Self> {
            Arc::new(Self {
                name,
                sample_rate,
                texts: Mutex::default(),
            })
        }
    }

    struct CharTask {
        text: String,
    }

    #[async_trait]
    impl ChunkedTtsTask for CharTask {
        async fn run(&mut self, emitter: &AudioEmitter) -> Result<(), ApiError> {
            if self.text.contains("FAIL") {
                return Err(ApiError::status(400, "cannot say that"));
            }
            let per_char = (emitter.sample_rate() / 100) as usize;
            let value = self.text.chars().count() as i16;
            emitter
                .push_samples(&vec![value; per_char * self.text.chars().count()])
                .await;
            Ok(())
        }
    }

    #[async_trait]
    impl Tts for CharTts {
        fn label(&self) -> String {
            self.name.into()
        }
        fn capabilities(&self) -> TtsCapabilities {
            TtsCapabilities::default()
        }
        fn sample_rate(&self) -> u32 {
            self.sample_rate
        }
        fn synthesize(&self, text: &str, conn: ApiConnectOptions) -> ChunkedStream {
            self.texts.lock().push(text.to_owned());
            ChunkedStream::spawn(
                self.name,
                conn,
                self.sample_rate,
                1,
                CharTask {
                    text: text.to_owned(),
                },
            )
        }
    }

    pub(crate) async fn collect(
        stream: &mut SynthesizeStream,
    ) -> (Vec<SynthesizedAudio>, Option<ApiError>) {
        let mut frames = Vec::new();
        while let Some(item) = stream.next_audio().await {
            match item {
                Ok(f) => frames.push(f),
                Err(e) => return (frames, Some(e)),
            }
        }
        (frames, None)
    }

    const S1: &str = "Hello there, this is the first sentence.";
    const S2: &str = "And here comes the second one.";
    const S3: &str = "The third sentence is right here.";

    #[tokio::test(start_paused = true)]
    async fn sentences_become_one_segment_per_flush_with_timings() {
        let inner = CharTts::new("fake.TTS", 1000);
        let tts = StreamAdapter::new(inner.clone());
        assert!(tts.capabilities().streaming && tts.capabilities().aligned_transcript);
        let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
        // Token-sized chunks, like an LLM's.
        let text = format!("{S1} {S2}");
        for chunk in text.as_bytes().chunks(7) {
            stream.push_text(std::str::from_utf8(chunk).unwrap());
        }
        stream.flush();
        stream.flush(); // an empty segment produces nothing
        stream.push_text(S3);
        stream.end_input();
        let (frames, error) = collect(&mut stream).await;
        assert!(error.is_none());
        assert_eq!(*inner.texts.lock(), [S1, S2, S3]);

        let finals: Vec<&SynthesizedAudio> = frames.iter().filter(|f| f.is_final).collect();
        assert_eq!(finals.len(), 2);
        let first_segment = &frames[0].segment_id;
        let second_segment = &finals[1].segment_id;
        assert_ne!(first_segment, second_segment);
        let samples = |seg: &String| -> usize {
            frames
                .iter()
                .filter(|f| &f.segment_id == seg)
                .map(|f| f.frame.samples_per_channel)
                .sum()
        };
        assert_eq!(samples(first_segment), 10 * (S1.len() + S2.len()));
        assert_eq!(samples(second_segment), 10 * S3.len());

        let words: Vec<&TimedString> = frames.iter().flat_map(|f| &f.timed_words).collect();
        assert_eq!(words.len(), 3);
        assert_eq!((words[0].text.as_str(), words[0].start_time), (S1, 0.0));
        assert_eq!(words[1].text, format!(" {S2}"));
        assert!((words[1].start_time - S1.len() as f64 * 0.01).abs() < 1e-9);
        // Timings restart with each segment.
        assert_eq!((words[2].text.as_str(), words[2].start_time), (S3, 0.0));
        let spoken: String = frames.iter().map(|f| f.delta_text.as_str()).collect();
        assert_eq!(spoken, format!("{S1} {S2}{S3}"));
    }

    #[tokio::test(start_paused = true)]
    async fn synthesis_errors_end_the_stream() {
        let inner = CharTts::new("fake.TTS", 1000);
        let tts = StreamAdapter::new(inner.clone());
        let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
        stream.push_text(format!("{S1} Please FAIL on this sentence. {S3}"));
        stream.end_input();
        let (frames, error) = collect(&mut stream).await;
        assert!(matches!(error, Some(ApiError::Status { status: 400, .. })));
        let samples: usize = frames.iter().map(|f| f.frame.samples_per_channel).sum();
        assert!(samples <= 10 * S1.len());
        assert_eq!(inner.texts.lock().len(), 2);
        assert!(stream.next_audio().await.is_none());
    }
}
