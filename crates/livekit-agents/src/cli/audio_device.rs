//! Microphone and speaker for console mode (cpal; feature `console-audio`).
//!
//! cpal streams are not `Send` on every platform, so each one lives on its own thread for the
//! rest of the process (console mode is the whole process). The microphone is downmixed to
//! mono at the device rate (the pipeline resamples); the speaker is a real-time paced output at
//! the device rate whose frames go through a small ring buffer to the device callback.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{SampleFormat, SizedSample};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::audio::AudioFrame;
use crate::io::{AudioInput, AudioOutput, PacedAudioOutput, PlaybackEvent};

/// Runs `build` on a dedicated thread that keeps the returned stream alive; reports the build
/// result back.
fn spawn_stream_thread<F>(name: &str, build: F) -> Result<(), String>
where
    F: FnOnce() -> Result<cpal::Stream, String> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || match build() {
            Ok(stream) => {
                if let Err(e) = stream.play() {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
                let _ = tx.send(Ok(()));
                // Keep the stream alive for the rest of the process.
                loop {
                    std::thread::park();
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
}

/// The default microphone as a session input.
pub(crate) fn microphone() -> Result<AudioInput, String> {
    let host = cpal::default_host();
    let device = host
        .default_input_device()
        .ok_or("no default input device (microphone)")?;
    let supported = device
        .default_input_config()
        .map_err(|e| format!("microphone: {e}"))?;
    let format = supported.sample_format();
    let config = supported.config();
    let rate = config.sample_rate;
    let channels = config.channels as usize;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<AudioFrame>();
    spawn_stream_thread("console-microphone", move || {
        fn build<T: SizedSample + Send + 'static>(
            device: &cpal::Device,
            config: &cpal::StreamConfig,
            channels: usize,
            rate: u32,
            tx: tokio::sync::mpsc::UnboundedSender<AudioFrame>,
        ) -> Result<cpal::Stream, String>
        where
            f32: cpal::FromSample<T>,
        {
            device
                .build_input_stream::<T, _, _>(
                    *config,
                    move |data: &[T], _| {
                        let mono: Vec<i16> = data
                            .chunks(channels.max(1))
                            .map(|c| {
                                let sum: f32 = c.iter().map(|s| s.to_sample::<f32>()).sum();
                                crate::audio::f32_to_i16(sum / c.len() as f32)
                            })
                            .collect();
                        if let Ok(frame) = AudioFrame::new(mono, rate, 1) {
                            let _ = tx.send(frame);
                        }
                    },
                    |e| tracing::warn!(error = %e, "microphone stream error"),
                    None,
                )
                .map_err(|e| format!("microphone: {e}"))
        }
        match format {
            SampleFormat::F32 => build::<f32>(&device, &config, channels, rate, tx),
            SampleFormat::I16 => build::<i16>(&device, &config, channels, rate, tx),
            other => Err(format!("microphone: unsupported sample format {other:?}")),
        }
    })?;
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    Ok(AudioInput::from_stream("microphone", stream))
}

/// The default speaker as a session output.
pub(crate) struct Speaker {
    paced: PacedAudioOutput,
    ring: Arc<Mutex<VecDeque<i16>>>,
    /// Background audio is mixed into the speaker through this.
    pub(crate) mixer: crate::audio::AudioMixer,
}

pub(crate) fn speaker() -> Result<Speaker, String> {
    let host = cpal::default_host();
    let device = host
        .default_output_device()
        .ok_or("no default output device (speaker)")?;
    let supported = device
        .default_output_config()
        .map_err(|e| format!("speaker: {e}"))?;
    let format = supported.sample_format();
    let config = supported.config();
    let rate = config.sample_rate;
    let channels = config.channels as usize;
    let ring: Arc<Mutex<VecDeque<i16>>> = Arc::default();
    let cb_ring = ring.clone();
    spawn_stream_thread("console-speaker", move || {
        fn build<T: SizedSample + cpal::FromSample<f32> + Send + 'static>(
            device: &cpal::Device,
            config: &cpal::StreamConfig,
            channels: usize,
            ring: Arc<Mutex<VecDeque<i16>>>,
        ) -> Result<cpal::Stream, String> {
            device
                .build_output_stream::<T, _, _>(
                    *config,
                    move |out: &mut [T], _| {
                        let mut ring = ring.lock();
                        for frame in out.chunks_mut(channels.max(1)) {
                            let s = ring.pop_front().unwrap_or(0) as f32 / 32768.0;
                            for slot in frame.iter_mut() {
                                *slot = T::from_sample(s);
                            }
                        }
                    },
                    |e| tracing::warn!(error = %e, "speaker stream error"),
                    None,
                )
                .map_err(|e| format!("speaker: {e}"))
        }
        match format {
            SampleFormat::F32 => build::<f32>(&device, &config, channels, cb_ring),
            SampleFormat::I16 => build::<i16>(&device, &config, channels, cb_ring),
            other => Err(format!("speaker: unsupported sample format {other:?}")),
        }
    })?;
    let sink_ring = ring.clone();
    let mixer = crate::audio::AudioMixer::new(rate, 1);
    let paced = PacedAudioOutput::new(
        "speaker",
        Some(rate),
        mixer.sink(move |frame: &AudioFrame| {
            let ch = frame.num_channels.max(1) as usize;
            let mut ring = sink_ring.lock();
            // The device callback reads mono; take the first channel of multi-channel frames.
            ring.extend(frame.data.iter().step_by(ch));
        }),
    );
    Ok(Speaker { paced, ring, mixer })
}

#[async_trait]
impl AudioOutput for Speaker {
    fn label(&self) -> String {
        "speaker".to_owned()
    }
    fn sample_rate(&self) -> Option<u32> {
        self.paced.sample_rate()
    }
    fn can_pause(&self) -> bool {
        true
    }
    async fn capture_frame(&self, frame: AudioFrame) {
        self.paced.capture_frame(frame).await
    }
    fn flush(&self) {
        self.paced.flush()
    }
    fn clear_buffer(&self) {
        self.paced.clear_buffer();
        self.ring.lock().clear();
    }
    fn pause(&self) {
        self.paced.pause()
    }
    fn resume(&self) {
        self.paced.resume()
    }
    fn subscribe(&self) -> broadcast::Receiver<PlaybackEvent> {
        self.paced.subscribe()
    }
}
