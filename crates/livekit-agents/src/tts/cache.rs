//! [`CachedTts`]: a [`Tts`] wrapper that keeps synthesized audio, so a phrase said again (a
//! greeting, "One moment, please.", a hold message) plays at once with no provider request and
//! the very same samples.
//!
//! Entries are keyed by the text, the provider's label, model and provider name, its sample
//! rate and channel count, and the voice and options you declare in [`TtsCacheOptions`] (the
//! [`Tts`] trait does not expose a provider's voice or settings: declare them, or two voices
//! would share entries). The memory cache is bounded in bytes and evicts the least recently
//! used entries; an optional directory keeps entries across processes (one WAV file per entry,
//! written atomically; a damaged file counts as a miss and is removed).
//!
//! How it reaches the session: `CachedTts` answers [`Tts::synthesize`] from the cache and
//! reports itself as *not* streaming, so the session synthesizes text sentence by sentence
//! (through [`StreamAdapter`](super::StreamAdapter)) and every sentence is one entry. With a
//! streaming provider this trades the provider's streaming for caching (a reply's first audio
//! waits for its first sentence), which suits agents that say fixed phrases; to cache only
//! chosen phrases and keep streaming for the rest, keep the plain provider on the session and
//! play cached audio with `session.say(text, SayOptions { audio, .. })` from
//! [`CachedTts::audio_stream`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{ChunkedStream, SynthesizedAudio, Tts, TtsCapabilities, DEFAULT_FRAME_MS};
use crate::audio::AudioFrame;
use crate::types::{ApiConnectOptions, ApiError};

/// Settings of a [`CachedTts`].
#[derive(Debug, Clone)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct TtsCacheOptions {
    /// The voice the provider was configured with (part of the key).
    pub voice: String,
    /// Any other provider settings that change the audio, e.g. `"speed=1.1;lang=en"` (part of
    /// the key).
    pub options: String,
    /// Memory budget for cached audio (default 32 MiB, about 11 minutes at 24 kHz mono).
    pub max_memory_bytes: usize,
    /// A directory for entries kept across processes (default none).
    pub directory: Option<PathBuf>,
}

impl Default for TtsCacheOptions {
    fn default() -> Self {
        Self {
            voice: String::new(),
            options: String::new(),
            max_memory_bytes: 32 * 1024 * 1024,
            directory: None,
        }
    }
}

struct Entry {
    frames: Arc<Vec<SynthesizedAudio>>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Store {
    entries: HashMap<String, Entry>,
    bytes: usize,
    clock: u64,
    hits: u64,
    misses: u64,
}

/// Hit and miss counts of a [`CachedTts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TtsCacheStats {
    /// Syntheses answered from the cache (memory or disk).
    pub hits: u64,
    /// Syntheses that asked the provider.
    pub misses: u64,
    /// Entries in memory.
    pub entries: usize,
    /// Bytes of audio in memory.
    pub bytes: usize,
}

struct Shared {
    tts: Arc<dyn Tts>,
    options: TtsCacheOptions,
    store: Mutex<Store>,
}

/// A [`Tts`] that answers repeated texts from a cache (see the module docs).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use livekit_agents::testing::FakeTts;
/// use livekit_agents::tts::{CachedTts, Tts, TtsCacheOptions};
/// use livekit_agents::types::ApiConnectOptions;
///
/// let provider = FakeTts::new(Duration::ZERO, Duration::from_millis(300));
/// let tts = CachedTts::new(Arc::new(provider.clone()), TtsCacheOptions::default());
/// tts.presynthesize(["Hello! How can I help?"]).await.unwrap();
/// let audio = tts.synthesize("Hello! How can I help?", ApiConnectOptions::default()).collect().await.unwrap();
/// assert_eq!(audio.duration().as_millis(), 300);
/// assert_eq!(provider.requests(), 1); // the second time came from the cache
/// # }
/// ```
#[derive(Clone)]
pub struct CachedTts {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CachedTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedTts")
            .field("tts", &self.shared.tts.label())
            .field("stats", &self.stats())
            .finish()
    }
}

impl CachedTts {
    /// Caches `tts`.
    pub fn new(tts: Arc<dyn Tts>, options: TtsCacheOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                tts,
                options,
                store: Mutex::new(Store::default()),
            }),
        }
    }

    /// The cache key of `text` (a SHA-256 over the key's parts, hex).
    pub fn key(&self, text: &str) -> String {
        let t = &self.shared.tts;
        let o = &self.shared.options;
        let mut h = Sha256::new();
        for part in [
            text,
            &t.label(),
            &t.provider(),
            &t.model(),
            &t.sample_rate().to_string(),
            &t.num_channels().to_string(),
            &o.voice,
            &o.options,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// Hit/miss counts and memory use.
    pub fn stats(&self) -> TtsCacheStats {
        let st = self.shared.store.lock();
        TtsCacheStats {
            hits: st.hits,
            misses: st.misses,
            entries: st.entries.len(),
            bytes: st.bytes,
        }
    }

    /// Synthesizes each phrase that is not cached yet (e.g. at startup), so saying it later
    /// costs no request. Stops at the first failure.
    pub async fn presynthesize<I, S>(&self, phrases: I) -> Result<(), ApiError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for phrase in phrases {
            self.synthesize(phrase.as_ref(), ApiConnectOptions::default())
                .collect()
                .await?;
        }
        Ok(())
    }

    /// The audio of `text` as frames for `session.say(text, SayOptions { audio, .. })`:
    /// from the cache, or synthesized now (and cached).
    pub async fn audio_stream(
        &self,
        text: &str,
    ) -> Result<impl futures::Stream<Item = AudioFrame> + Send + 'static, ApiError> {
        let frames = self.frames(text).await?;
        Ok(futures::stream::iter(
            frames
                .iter()
                .map(|a| a.frame.clone())
                .filter(|f| !f.is_empty())
                .collect::<Vec<_>>(),
        ))
    }

    async fn frames(&self, text: &str) -> Result<Arc<Vec<SynthesizedAudio>>, ApiError> {
        let mut stream = self.synthesize(text, ApiConnectOptions::default());
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            out.push(item?);
        }
        Ok(Arc::new(out))
    }

    fn memory_get(&self, key: &str) -> Option<Arc<Vec<SynthesizedAudio>>> {
        let mut st = self.shared.store.lock();
        st.clock += 1;
        let now = st.clock;
        let entry = st.entries.get_mut(key)?;
        entry.last_used = now;
        Some(entry.frames.clone())
    }

    fn memory_put(&self, key: String, frames: Arc<Vec<SynthesizedAudio>>) {
        let bytes: usize = frames.iter().map(|a| a.frame.data.len() * 2).sum();
        let max = self.shared.options.max_memory_bytes;
        if bytes > max {
            return;
        }
        let mut st = self.shared.store.lock();
        st.clock += 1;
        let now = st.clock;
        if let Some(old) = st.entries.remove(&key) {
            st.bytes -= old.bytes;
        }
        while st.bytes + bytes > max {
            let Some(oldest) = st
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = st.entries.remove(&oldest) {
                st.bytes -= e.bytes;
            }
        }
        st.bytes += bytes;
        st.entries.insert(
            key,
            Entry {
                frames,
                bytes,
                last_used: now,
            },
        );
    }

    fn count(&self, hit: bool) {
        let mut st = self.shared.store.lock();
        if hit {
            st.hits += 1;
        } else {
            st.misses += 1;
        }
    }
}

/// Reads a disk entry (blocking); a damaged file is removed.
fn disk_get(path: &std::path::Path, request_id: &str) -> Option<Vec<SynthesizedAudio>> {
    let bytes = std::fs::read(path).ok()?;
    match crate::audio::wav::decode_wav(&bytes) {
        Ok(frame) if !frame.is_empty() => Some(to_synthesized(&frame, request_id)),
        _ => {
            tracing::warn!(path = %path.display(), "removing a damaged TTS cache file");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

/// Writes a disk entry atomically (blocking).
fn disk_put(dir: &std::path::Path, key: &str, frames: &[SynthesizedAudio]) {
    let audio: Vec<AudioFrame> = frames
        .iter()
        .map(|a| a.frame.clone())
        .filter(|f| !f.is_empty())
        .collect();
    if audio.is_empty() {
        return;
    }
    let result = (|| -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let bytes = crate::audio::wav::encode_wav(&audio).map_err(|e| e.to_string())?;
        let tmp = dir.join(format!("{key}.wav.tmp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, dir.join(format!("{key}.wav"))).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.to_string()
        })
    })();
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot write a TTS cache file");
    }
}

/// A decoded entry as 50 ms frames of one segment.
fn to_synthesized(frame: &AudioFrame, request_id: &str) -> Vec<SynthesizedAudio> {
    let per = (frame.sample_rate as usize * DEFAULT_FRAME_MS as usize / 1000).max(1);
    let chunks = frame.chunks(per);
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, f)| SynthesizedAudio {
            frame: f,
            request_id: request_id.to_owned(),
            segment_id: request_id.to_owned(),
            is_final: i + 1 == n,
            delta_text: String::new(),
            timed_words: Vec::new(),
        })
        .collect()
}

#[async_trait]
impl Tts for CachedTts {
    fn label(&self) -> String {
        format!("tts.CachedTts({})", self.shared.tts.label())
    }
    fn model(&self) -> String {
        self.shared.tts.model()
    }
    fn provider(&self) -> String {
        self.shared.tts.provider()
    }
    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: false,
            aligned_transcript: self.shared.tts.capabilities().aligned_transcript,
        }
    }
    fn sample_rate(&self) -> u32 {
        self.shared.tts.sample_rate()
    }
    fn num_channels(&self) -> u16 {
        self.shared.tts.num_channels()
    }

    fn synthesize(&self, text: &str, conn: ApiConnectOptions) -> ChunkedStream {
        let key = self.key(text);
        let (tx, rx) = mpsc::channel(crate::stt::EVENT_BUFFER);
        let this = self.clone();
        let text = text.to_owned();
        let task = tokio::spawn(async move {
            let request_id = format!("cache-{}", &key[..16]);
            let mut cached = this.memory_get(&key);
            if cached.is_none() {
                if let Some(dir) = this.shared.options.directory.clone() {
                    let path = dir.join(format!("{key}.wav"));
                    let rid = request_id.clone();
                    if let Ok(Some(frames)) =
                        tokio::task::spawn_blocking(move || disk_get(&path, &rid)).await
                    {
                        let frames = Arc::new(frames);
                        this.memory_put(key.clone(), frames.clone());
                        cached = Some(frames);
                    }
                }
            }
            if let Some(frames) = cached {
                this.count(true);
                tracing::debug!(tts = %this.shared.tts.label(), "TTS cache hit");
                for a in frames.iter() {
                    if tx.send(Ok(a.clone())).await.is_err() {
                        return;
                    }
                }
                return;
            }
            this.count(false);
            let mut stream = this.shared.tts.synthesize(&text, conn);
            let mut kept = Vec::new();
            let mut bytes = 0usize;
            let max = this.shared.options.max_memory_bytes;
            let mut complete = true;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(audio) => {
                        bytes += audio.frame.data.len() * 2;
                        if bytes <= max {
                            kept.push(audio.clone());
                        }
                        if tx.send(Ok(audio)).await.is_err() {
                            // The listener left (an interruption): the audio is incomplete.
                            return;
                        }
                    }
                    Err(e) => {
                        complete = false;
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                }
            }
            if complete && bytes <= max && kept.iter().any(|a| !a.frame.is_empty()) {
                if let Some(dir) = this.shared.options.directory.clone() {
                    let frames = kept.clone();
                    let key = key.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || disk_put(&dir, &key, &frames)).await;
                }
                this.memory_put(key, Arc::new(kept));
            }
        });
        ChunkedStream::from_channel(rx, Some(task))
    }

    async fn prewarm(&self) {
        self.shared.tts.prewarm().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTts;
    use std::time::Duration;

    /// A provider whose audio depends on the text, counting requests.
    struct TextTts {
        requests: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Tts for TextTts {
        fn label(&self) -> String {
            "text.TTS".into()
        }
        fn capabilities(&self) -> TtsCapabilities {
            TtsCapabilities::default()
        }
        fn sample_rate(&self) -> u32 {
            16_000
        }
        fn synthesize(&self, text: &str, conn: ApiConnectOptions) -> ChunkedStream {
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let samples: Vec<i16> = text
                .bytes()
                .cycle()
                .take(text.len() * 1000)
                .enumerate()
                .map(|(i, b)| (b as i16 * 100).wrapping_add(i as i16))
                .collect();
            struct Task(Vec<i16>);
            #[async_trait]
            impl super::super::ChunkedTtsTask for Task {
                async fn run(
                    &mut self,
                    emitter: &super::super::AudioEmitter,
                ) -> Result<(), ApiError> {
                    emitter.push_samples(&self.0).await;
                    Ok(())
                }
            }
            ChunkedStream::spawn("text.TTS", conn, 16_000, 1, Task(samples))
        }
    }

    fn samples(frames: &[SynthesizedAudio]) -> Vec<i16> {
        frames.iter().flat_map(|a| a.frame.data.clone()).collect()
    }

    async fn run(tts: &CachedTts, text: &str) -> Vec<SynthesizedAudio> {
        let mut s = tts.synthesize(text, ApiConnectOptions::default());
        let mut out = Vec::new();
        while let Some(a) = s.next().await {
            out.push(a.unwrap());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_hit_costs_no_request_and_plays_the_same_samples() {
        let fake = FakeTts::new(Duration::from_millis(200), Duration::from_millis(500));
        let tts = CachedTts::new(Arc::new(fake.clone()), TtsCacheOptions::default());
        let first = run(&tts, "Hello there.").await;
        assert_eq!(fake.requests(), 1);
        let start = tokio::time::Instant::now();
        let second = run(&tts, "Hello there.").await;
        assert_eq!(fake.requests(), 1, "the second synthesis was a cache hit");
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "no provider latency on a hit"
        );
        assert_eq!(samples(&first), samples(&second));
        run(&tts, "Something else.").await;
        assert_eq!(fake.requests(), 2);
        assert_eq!(
            tts.stats(),
            TtsCacheStats {
                hits: 1,
                misses: 2,
                entries: 2,
                bytes: 2 * 24_000, // 2 x 0.5 s at 24 kHz, 2 bytes a sample
            }
        );

        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let provider = TextTts {
            requests: counter.clone(),
        };
        let tts = CachedTts::new(Arc::new(provider), TtsCacheOptions::default());
        let a = run(&tts, "One moment, please.").await;
        let b = run(&tts, "One moment, please.").await;
        let c = run(&tts, "Thanks!").await;
        assert_eq!(counter.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(samples(&a), samples(&b));
        assert_ne!(samples(&a), samples(&c));
    }

    #[tokio::test]
    async fn keys_cover_voice_and_options_and_memory_is_bounded() {
        let fake = FakeTts::new(Duration::ZERO, Duration::from_millis(100)); // 4800 bytes
        let a = CachedTts::new(Arc::new(fake.clone()), TtsCacheOptions::default());
        let b = CachedTts::new(
            Arc::new(fake.clone()),
            TtsCacheOptions {
                voice: "other".into(),
                ..Default::default()
            },
        );
        assert_ne!(a.key("x"), b.key("x"));
        assert_ne!(a.key("x"), a.key("y"));
        assert_eq!(a.key("x"), a.key("x"));

        let small = CachedTts::new(
            Arc::new(fake.clone()),
            TtsCacheOptions {
                max_memory_bytes: 10_000,
                ..Default::default()
            },
        );
        for t in ["one", "two", "three"] {
            run(&small, t).await;
        }
        let st = small.stats();
        assert_eq!((st.entries, st.bytes), (2, 9_600));
        // "one" was evicted (least recently used); "three" is still there.
        let before = fake.requests();
        run(&small, "three").await;
        assert_eq!(fake.requests(), before);
        run(&small, "one").await;
        assert_eq!(fake.requests(), before + 1);
    }

    #[tokio::test]
    async fn disk_entries_survive_the_process_and_damaged_files_are_misses() {
        let dir = std::env::temp_dir().join(format!("lk-tts-cache-{}", uuid::Uuid::new_v4()));
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let make = || {
            CachedTts::new(
                Arc::new(TextTts {
                    requests: counter.clone(),
                }),
                TtsCacheOptions {
                    directory: Some(dir.clone()),
                    ..Default::default()
                },
            )
        };
        let first = make();
        let a = run(&first, "Welcome back.").await;
        let fresh = make(); // an empty memory cache, as in a new process
        let b = run(&fresh, "Welcome back.").await;
        assert_eq!(counter.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(samples(&a), samples(&b));
        // Damage the file: a miss, the provider is asked again, the entry is rewritten.
        let path = dir.join(format!("{}.wav", fresh.key("Welcome back.")));
        std::fs::write(&path, b"RIFF garbage").unwrap();
        let c = run(&make(), "Welcome back.").await;
        assert_eq!(counter.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(samples(&a), samples(&c));
        assert!(crate::audio::wav::decode_wav(&std::fs::read(&path).unwrap()).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
