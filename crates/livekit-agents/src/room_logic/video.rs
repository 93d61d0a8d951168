//! Live video input without WebRTC: frames, the sampler that decides which frames to keep, the
//! scaling and JPEG encoding, and the session's latest frame.
//!
//! The reference behaviour (Python `VoiceActivityVideoSampler`): about 1 frame per second while
//! the user speaks and 0.3 per second (one every ~3 s) otherwise; each kept frame is fitted into
//! 1024x1024 and JPEG-encoded. The latest kept frame is attached (once) to the next user turn
//! as image content for pipeline LLMs and pushed to a realtime model's session
//! ([`RealtimeSession::push_video`](crate::llm::realtime::RealtimeSession::push_video)).
//!
//! Frames come from the room (`RoomOptions::video_input`, feature `room`) or from anything else
//! through [`AgentSession::forward_video`](crate::voice::AgentSession::forward_video) /
//! [`AgentSession::push_video_frame`](crate::voice::AgentSession::push_video_frame).
//!
//! Deviation from the reference: frames smaller than the box are not enlarged (the reference's
//! `scale_aspect_fit` scales up too, which adds bytes and tokens, not detail).

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::llm::{ChatContent, ChatMessage, ImageContent, ImageSource};
use crate::voice::{AgentSession, UserState};

/// Largest frame side accepted (pixels): larger frames are rejected, not allocated.
pub const MAX_FRAME_SIDE: u32 = 8192;

/// Why a frame could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VideoError {
    /// The frame's size and its planes disagree, or it is empty or too large.
    #[error("invalid video frame: {0}")]
    InvalidFrame(String),
    /// JPEG encoding failed.
    #[error("could not encode the frame: {0}")]
    Encode(String),
}

/// A raw video frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoFrame {
    /// Packed 8-bit RGB, `width * height * 3` bytes.
    Rgb8 {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Pixels, row by row.
        data: Vec<u8>,
    },
    /// Planar YUV 4:2:0 (what WebRTC decodes to).
    I420 {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Luma plane.
        y: Vec<u8>,
        /// Blue-difference plane (half width and height, rounded up).
        u: Vec<u8>,
        /// Red-difference plane.
        v: Vec<u8>,
        /// Bytes per row of `y`.
        stride_y: u32,
        /// Bytes per row of `u`.
        stride_u: u32,
        /// Bytes per row of `v`.
        stride_v: u32,
    },
}

impl VideoFrame {
    /// Width and height.
    pub fn size(&self) -> (u32, u32) {
        match self {
            VideoFrame::Rgb8 { width, height, .. } | VideoFrame::I420 { width, height, .. } => {
                (*width, *height)
            }
        }
    }

    /// The frame as an RGB image, checking every size against the data (no panic, no
    /// allocation beyond [`MAX_FRAME_SIDE`]²).
    pub fn to_rgb(&self) -> Result<image::RgbImage, VideoError> {
        let (w, h) = self.size();
        if w == 0 || h == 0 || w > MAX_FRAME_SIDE || h > MAX_FRAME_SIDE {
            return Err(VideoError::InvalidFrame(format!("size {w}x{h}")));
        }
        match self {
            VideoFrame::Rgb8 { data, .. } => {
                let need = w as usize * h as usize * 3;
                if data.len() != need {
                    return Err(VideoError::InvalidFrame(format!(
                        "{w}x{h} RGB needs {need} bytes, got {}",
                        data.len()
                    )));
                }
                image::RgbImage::from_raw(w, h, data.clone())
                    .ok_or_else(|| VideoError::InvalidFrame("RGB buffer".into()))
            }
            VideoFrame::I420 {
                y,
                u,
                v,
                stride_y,
                stride_u,
                stride_v,
                ..
            } => {
                let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                let plane_ok = |plane: &[u8], stride: u32, pw: u32, ph: u32| {
                    stride >= pw && (ph as usize - 1) * stride as usize + pw as usize <= plane.len()
                };
                if !plane_ok(y, *stride_y, w, h)
                    || !plane_ok(u, *stride_u, cw, ch)
                    || !plane_ok(v, *stride_v, cw, ch)
                {
                    return Err(VideoError::InvalidFrame(format!(
                        "{w}x{h} I420 planes too small for their strides"
                    )));
                }
                let mut out = vec![0u8; w as usize * h as usize * 3];
                for row in 0..h as usize {
                    for col in 0..w as usize {
                        let yy = y[row * *stride_y as usize + col] as f32;
                        let ci = (row / 2) * *stride_u as usize + col / 2;
                        let cv = (row / 2) * *stride_v as usize + col / 2;
                        let uu = u[ci] as f32 - 128.0;
                        let vv = v[cv] as f32 - 128.0;
                        // BT.601, limited range (what WebRTC decoders produce).
                        let c = 1.164 * (yy - 16.0);
                        let px = (row * w as usize + col) * 3;
                        out[px] = (c + 1.596 * vv).clamp(0.0, 255.0) as u8;
                        out[px + 1] = (c - 0.392 * uu - 0.813 * vv).clamp(0.0, 255.0) as u8;
                        out[px + 2] = (c + 2.017 * uu).clamp(0.0, 255.0) as u8;
                    }
                }
                image::RgbImage::from_raw(w, h, out)
                    .ok_or_else(|| VideoError::InvalidFrame("I420 buffer".into()))
            }
        }
    }
}

/// Decides which frames are kept. Called for every frame with the current time and whether the
/// user is speaking.
pub trait VideoSampler: Send + 'static {
    /// Whether to keep this frame.
    fn should_sample(&mut self, now: Instant, user_speaking: bool) -> bool;
}

/// The reference's default sampler: `speaking_fps` (1.0) while the user speaks, `silent_fps`
/// (0.3) otherwise; the first frame is always kept. A rate of 0 keeps nothing in that state.
#[derive(Debug, Clone)]
pub struct VoiceActivityVideoSampler {
    /// Frames per second while the user speaks.
    pub speaking_fps: f64,
    /// Frames per second otherwise.
    pub silent_fps: f64,
    last: Option<Instant>,
}

impl VoiceActivityVideoSampler {
    /// A sampler with these rates.
    pub fn new(speaking_fps: f64, silent_fps: f64) -> Self {
        Self {
            speaking_fps,
            silent_fps,
            last: None,
        }
    }
}

impl Default for VoiceActivityVideoSampler {
    fn default() -> Self {
        Self::new(1.0, 0.3)
    }
}

impl VideoSampler for VoiceActivityVideoSampler {
    fn should_sample(&mut self, now: Instant, user_speaking: bool) -> bool {
        let fps = if user_speaking {
            self.speaking_fps
        } else {
            self.silent_fps
        };
        if !(fps.is_finite() && fps > 0.0) {
            return false;
        }
        let Some(last) = self.last else {
            self.last = Some(now);
            return true;
        };
        let interval = Duration::from_secs_f64((1.0 / fps).min(1e6));
        if now.saturating_duration_since(last) >= interval {
            self.last = Some(now);
            true
        } else {
            false
        }
    }
}

/// How kept frames are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// The box frames are fitted into (aspect ratio kept; 1024).
    pub max_width: u32,
    /// (1024)
    pub max_height: u32,
    /// JPEG quality 1-100 (75, the reference's default).
    pub quality: u8,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            max_width: 1024,
            max_height: 1024,
            quality: 75,
        }
    }
}

/// The size of a `width`x`height` frame fitted into `max_w`x`max_h`, aspect ratio kept, never
/// enlarged, at least 1x1.
pub fn fit_within(width: u32, height: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if width <= max_w && height <= max_h {
        return (width.max(1), height.max(1));
    }
    let scale = (max_w as f64 / width as f64).min(max_h as f64 / height as f64);
    let w = ((width as f64 * scale).round() as u32).clamp(1, max_w.max(1));
    let h = ((height as f64 * scale).round() as u32).clamp(1, max_h.max(1));
    (w, h)
}

/// An encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// JPEG bytes.
    pub jpeg: Vec<u8>,
    /// Width after scaling.
    pub width: u32,
    /// Height after scaling.
    pub height: u32,
}

impl EncodedFrame {
    /// As chat image content (`image/jpeg` bytes, detail `auto`).
    pub fn to_image_content(&self) -> ImageContent {
        ImageContent {
            id: crate::llm::chat_context::new_item_id("img"),
            image: ImageSource::Bytes {
                data: self.jpeg.clone(),
                mime_type: "image/jpeg".into(),
            },
            inference_detail: "auto".into(),
        }
    }
}

/// Scales `frame` to fit the box and encodes it as JPEG. CPU work (tens of milliseconds for a
/// large frame): call it off the async runtime, as [`AgentSession::push_video_frame`] does.
pub fn encode_jpeg(frame: &VideoFrame, opts: &EncodeOptions) -> Result<EncodedFrame, VideoError> {
    let rgb = frame.to_rgb()?;
    let (w, h) = fit_within(rgb.width(), rgb.height(), opts.max_width, opts.max_height);
    let rgb = if (w, h) == (rgb.width(), rgb.height()) {
        rgb
    } else {
        image::imageops::resize(&rgb, w, h, image::imageops::FilterType::Triangle)
    };
    let mut jpeg = Vec::new();
    let encoder =
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, opts.quality.clamp(1, 100));
    rgb.write_with_encoder(encoder)
        .map_err(|e| VideoError::Encode(e.to_string()))?;
    Ok(EncodedFrame {
        jpeg,
        width: w,
        height: h,
    })
}

/// A session's video state: the sampler, the encoding options and the latest kept frame.
pub(crate) struct VideoState {
    sampler: Mutex<Box<dyn VideoSampler>>,
    encode: EncodeOptions,
    /// The latest kept frame not yet attached to a user turn.
    latest: Mutex<Option<EncodedFrame>>,
}

impl Default for VideoState {
    fn default() -> Self {
        Self::new(Box::new(VoiceActivityVideoSampler::default()))
    }
}

impl VideoState {
    pub(crate) fn new(sampler: Box<dyn VideoSampler>) -> Self {
        Self {
            sampler: Mutex::new(sampler),
            encode: EncodeOptions::default(),
            latest: Mutex::new(None),
        }
    }

    /// Adds the latest kept frame (if one arrived since the last turn) to the user's message.
    pub(crate) fn attach_latest(&self, msg: &mut ChatMessage) {
        if let Some(frame) = self.latest.lock().take() {
            msg.content
                .push(ChatContent::Image(frame.to_image_content()));
        }
    }
}

impl AgentSession {
    /// Offers one video frame to the session: the session's [`VideoSampler`] decides whether
    /// to keep it (by time and whether the user speaks); a kept frame is scaled to fit
    /// 1024x1024, JPEG-encoded on the blocking pool, becomes the latest frame (attached to the
    /// next user turn) and is pushed to the realtime model's session, if any. Returns whether the
    /// frame was kept (`Ok(false)`: skipped by the sampler).
    pub async fn push_video_frame(&self, frame: VideoFrame) -> Result<bool, VideoError> {
        let video: Arc<VideoState> = self.inner.video.clone();
        let speaking = self.user_state() == UserState::Speaking;
        if !video.sampler.lock().should_sample(Instant::now(), speaking) {
            return Ok(false);
        }
        let opts = video.encode;
        let encoded = tokio::task::spawn_blocking(move || encode_jpeg(&frame, &opts))
            .await
            .map_err(|e| VideoError::Encode(e.to_string()))??;
        if let Some(link) = self.realtime_link() {
            link.session.push_video(&encoded.to_image_content());
        }
        *video.latest.lock() = Some(encoded);
        Ok(true)
    }

    /// Forwards a stream of frames (a camera or screen-share track) through
    /// [`push_video_frame`](Self::push_video_frame) until it ends or the session closes.
    pub fn forward_video(
        &self,
        frames: impl Stream<Item = VideoFrame> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let session = self.clone();
        tokio::spawn(async move {
            let mut closed = session.inner.closed.subscribe();
            let mut frames = std::pin::pin!(frames);
            loop {
                let frame = tokio::select! {
                    _ = closed.wait_for(|c| *c) => return,
                    f = frames.next() => match f { Some(f) => f, None => return },
                };
                if let Err(e) = session.push_video_frame(frame).await {
                    tracing::debug!(error = %e, "skipping a video frame");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(ms: u64, base: Instant) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn sampler_rates_follow_the_speaking_state() {
        let base = Instant::now();
        let mut s = VoiceActivityVideoSampler::default();
        // Speaking, 30 fps for 3 s: one frame per second (first frame kept at once).
        let kept: Vec<u64> = (0..90u64)
            .map(|i| i * 1000 / 30)
            .filter(|&t| s.should_sample(at(t, base), true))
            .collect();
        assert_eq!(kept, vec![0, 1000, 2000]);
        // Silent, 30 fps for 10 s after that: one frame every 1/0.3 s (3.33 s).
        let kept: Vec<u64> = (0..300u64)
            .map(|i| 3000 + i * 1000 / 30)
            .filter(|&t| s.should_sample(at(t, base), false))
            .collect();
        assert_eq!(kept, vec![5366, 8700, 12_066]);
        let mut off = VoiceActivityVideoSampler::new(0.0, 0.0);
        assert!(!off.should_sample(base, true));
    }

    #[test]
    fn fitting_keeps_the_aspect_and_never_enlarges() {
        assert_eq!(fit_within(1920, 1080, 1024, 1024), (1024, 576));
        assert_eq!(fit_within(1080, 1920, 1024, 1024), (576, 1024));
        assert_eq!(fit_within(640, 480, 1024, 1024), (640, 480));
        assert_eq!(fit_within(4096, 4096, 1024, 1024), (1024, 1024));
        assert_eq!(fit_within(10_000, 1, 1024, 1024), (1024, 1));
    }

    fn gradient(w: u32, h: u32) -> VideoFrame {
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, 128]);
            }
        }
        VideoFrame::Rgb8 {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn encoding_round_trips_through_jpeg() {
        let frame = gradient(1920, 1080);
        let enc = encode_jpeg(&frame, &EncodeOptions::default()).unwrap();
        assert_eq!((enc.width, enc.height), (1024, 576));
        assert_eq!(&enc.jpeg[..2], &[0xFF, 0xD8], "JPEG magic");
        let decoded = image::load_from_memory(&enc.jpeg).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (1024, 576));
        // The gradient survives: left is dark red, right is bright red (JPEG is lossy).
        let left = decoded.get_pixel(10, 288)[0];
        let right = decoded.get_pixel(1010, 288)[0];
        assert!(left < 30 && right > 220, "{left} {right}");
    }

    #[test]
    fn i420_converts_to_the_expected_colour() {
        // A 4x2 frame of pure (limited-range) red: Y=81, U=90, V=240.
        let frame = VideoFrame::I420 {
            width: 4,
            height: 2,
            y: vec![81; 8],
            u: vec![90; 2],
            v: vec![240; 2],
            stride_y: 4,
            stride_u: 2,
            stride_v: 2,
        };
        let rgb = frame.to_rgb().unwrap();
        let p = rgb.get_pixel(3, 1);
        assert!(p[0] > 240 && p[1] < 15 && p[2] < 15, "{p:?}");
    }

    #[test]
    fn hostile_frames_are_errors() {
        let short = VideoFrame::Rgb8 {
            width: 10,
            height: 10,
            data: vec![0; 299],
        };
        assert!(matches!(short.to_rgb(), Err(VideoError::InvalidFrame(_))));
        let huge = VideoFrame::Rgb8 {
            width: 100_000,
            height: 100_000,
            data: vec![],
        };
        assert!(huge.to_rgb().is_err());
        let bad_stride = VideoFrame::I420 {
            width: 4,
            height: 2,
            y: vec![0; 8],
            u: vec![0; 2],
            v: vec![0; 2],
            stride_y: 2,
            stride_u: 2,
            stride_v: 2,
        };
        assert!(bad_stride.to_rgb().is_err());
        let zero = VideoFrame::I420 {
            width: 0,
            height: 0,
            y: vec![],
            u: vec![],
            v: vec![],
            stride_y: 0,
            stride_u: 0,
            stride_v: 0,
        };
        assert!(zero.to_rgb().is_err());
    }

    #[test]
    fn the_latest_frame_is_attached_once() {
        let state = VideoState::default();
        *state.latest.lock() =
            Some(encode_jpeg(&gradient(8, 8), &EncodeOptions::default()).unwrap());
        let mut msg = ChatMessage::new(crate::llm::ChatRole::User, "what do you see?");
        state.attach_latest(&mut msg);
        assert!(matches!(msg.content.last(), Some(ChatContent::Image(img))
            if matches!(&img.image, ImageSource::Bytes { mime_type, .. } if mime_type == "image/jpeg")));
        let mut next = ChatMessage::new(crate::llm::ChatRole::User, "and now?");
        state.attach_latest(&mut next);
        assert_eq!(next.content.len(), 1);
    }
}
