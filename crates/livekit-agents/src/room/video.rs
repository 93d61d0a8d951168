//! The linked participant's camera or screen-share track as session video input (the logic:
//! [`crate::room_logic::video`]).

use futures::StreamExt;
use livekit::prelude::*;
use livekit::webrtc::video_frame::native::VideoFrameBufferExt;
use livekit::webrtc::video_frame::{BoxVideoFrame, I420Buffer, VideoBuffer};
use livekit::webrtc::video_stream::native::NativeVideoStream;
use tokio::sync::mpsc;

use crate::room_logic::video::VideoFrame;

/// Whether a track of this source is video input (camera or screen share).
pub(crate) fn is_video_source(source: TrackSource) -> bool {
    matches!(source, TrackSource::Camera | TrackSource::Screenshare)
}

fn to_i420(buffer: &dyn VideoBuffer) -> Option<I420Buffer> {
    if let Some(b) = buffer.as_native() {
        return Some(b.to_i420());
    }
    if let Some(b) = buffer.as_i420() {
        return Some(b.to_i420());
    }
    if let Some(b) = buffer.as_i420a() {
        return Some(b.to_i420());
    }
    if let Some(b) = buffer.as_i422() {
        return Some(b.to_i420());
    }
    if let Some(b) = buffer.as_i444() {
        return Some(b.to_i420());
    }
    if let Some(b) = buffer.as_i010() {
        return Some(b.to_i420());
    }
    if let Some(b) = buffer.as_nv12() {
        return Some(b.to_i420());
    }
    None
}

/// A WebRTC frame as a [`VideoFrame`] (planes copied), `None` for unknown buffer kinds.
fn convert(frame: &BoxVideoFrame) -> Option<VideoFrame> {
    let i420 = to_i420(frame.buffer.as_ref())?;
    let (y, u, v) = i420.data();
    let (stride_y, stride_u, stride_v) = i420.strides();
    Some(VideoFrame::I420 {
        width: i420.width(),
        height: i420.height(),
        y: y.to_vec(),
        u: u.to_vec(),
        v: v.to_vec(),
        stride_y,
        stride_u,
        stride_v,
    })
}

/// Forwards `track`'s frames to `tx` until the track ends. Frames are dropped (not queued)
/// while the session is still handling the previous one: WebRTC keeps one frame, the channel
/// one more, so memory stays bounded whatever the frame rate.
pub(crate) fn forward(
    track: RemoteVideoTrack,
    tx: mpsc::Sender<VideoFrame>,
) -> tokio::task::JoinHandle<()> {
    let mut stream = NativeVideoStream::new(track.rtc_track());
    tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            if tx.is_closed() {
                return;
            }
            // Only convert what the session can take now.
            if tx.capacity() == 0 {
                continue;
            }
            if let Some(frame) = convert(&frame) {
                let _ = tx.try_send(frame);
            }
        }
    })
}
