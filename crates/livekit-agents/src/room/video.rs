//! A remote video track's frames as [`VideoFrame`]s (I420, planes copied).

use futures::StreamExt;
use livekit::prelude::*;
use livekit::webrtc::video_frame::native::VideoFrameBufferExt;
use livekit::webrtc::video_frame::{BoxVideoFrame, I420Buffer, VideoBuffer};
use livekit::webrtc::video_stream::native::NativeVideoStream;

use crate::room_logic::video::VideoFrame;
use crate::room_logic::VideoFrames;

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

/// The frames of `track`, converted when read. WebRTC keeps only the latest frame while the
/// reader is busy (the default queue of one frame), so a slow reader skips frames instead of
/// queueing them.
pub(super) fn frames(track: RemoteVideoTrack) -> VideoFrames {
    let stream = NativeVideoStream::new(track.rtc_track());
    Box::pin(stream.filter_map(|frame| futures::future::ready(convert(&frame))))
}
