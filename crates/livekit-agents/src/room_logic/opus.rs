//! Decoding Opus pre-connect audio (feature `pre-connect-opus`, on by default).
//!
//! Browsers record the pre-connect buffer with `MediaRecorder` and send the recording as is:
//! `audio/webm;codecs=opus` (Chrome, Edge, Firefox: Opus in a WebM/Matroska container). The
//! reference decodes it with PyAV/FFmpeg. Here a small container reader pulls the Opus packets
//! out of WebM (or Ogg, for `audio/ogg;codecs=opus`), and the pure-Rust `opus-rs` decoder turns
//! them into PCM: no system library is needed.
//!
//! Not decoded: `video/mp4` (Safari on iOS, which cannot record WebM; AAC in MP4) and Matroska's
//! EBML lacing (browsers do not lace audio blocks). Native SDKs (Swift, Android, C++) send raw
//! 16-bit PCM, which needs no decoder.

use super::PreConnectError;

/// The Opus decoder's supported output rates.
const OPUS_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];
/// The longest Opus packet: 120 ms.
const MAX_PACKET_MS: u32 = 120;

/// Decoded pre-connect audio: interleaved samples at `sample_rate` with `num_channels`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecodedAudio {
    pub(crate) samples: Vec<i16>,
    pub(crate) sample_rate: u32,
    pub(crate) num_channels: u16,
}

/// The `OpusHead` identification header (RFC 7845 §5.1), the fields decoding needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpusHead {
    channels: u8,
    /// Samples (at 48 kHz) to drop from the start of the decoded stream.
    pre_skip: u16,
}

impl OpusHead {
    fn parse(bytes: &[u8]) -> Result<Self, PreConnectError> {
        let bad = || PreConnectError::Decode("invalid OpusHead header".into());
        if bytes.len() < 19 || &bytes[..8] != b"OpusHead" {
            return Err(bad());
        }
        let channels = bytes[9];
        let pre_skip = u16::from_le_bytes([bytes[10], bytes[11]]);
        let mapping_family = bytes[18];
        if channels == 0 || channels > 2 || mapping_family != 0 {
            return Err(PreConnectError::Decode(format!(
                "unsupported Opus channel layout ({channels} channels, mapping family {mapping_family})"
            )));
        }
        Ok(Self { channels, pre_skip })
    }
}

/// What a container reader found: the stream header (if any) and the audio packets in order.
#[derive(Debug, Default)]
struct OpusPackets {
    head: Option<OpusHead>,
    packets: Vec<Vec<u8>>,
}

/// Decodes an Opus recording (WebM or Ogg, told apart by their magic bytes). `sample_rate` is the
/// rate the client announced; the output uses it if the Opus decoder supports it, else 48 kHz.
pub(crate) fn decode(
    bytes: &[u8],
    sample_rate: u32,
    num_channels: u16,
) -> Result<DecodedAudio, PreConnectError> {
    let found = if bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        webm::packets(bytes)?
    } else if bytes.starts_with(b"OggS") {
        ogg::packets(bytes)?
    } else {
        return Err(PreConnectError::Decode(
            "unknown container (expected WebM or Ogg)".into(),
        ));
    };
    let head = found.head.unwrap_or(OpusHead {
        channels: num_channels.clamp(1, 2) as u8,
        pre_skip: 0,
    });
    let rate = if OPUS_RATES.contains(&sample_rate) {
        sample_rate
    } else {
        48_000
    };
    let channels = head.channels as usize;
    let mut decoder = opus_rs::OpusDecoder::new(rate as i32, channels)
        .map_err(|e| PreConnectError::Decode(format!("opus decoder: {e}")))?;
    let max_frame = (rate / 1000 * MAX_PACKET_MS) as usize;
    let mut pcm = vec![0.0f32; max_frame * channels];
    let mut samples: Vec<i16> = Vec::new();
    let mut failed = 0usize;
    for packet in &found.packets {
        if samples.len() * 2 >= super::PRE_CONNECT_MAX_BYTES {
            tracing::warn!("pre-connect audio: decoded audio capped (as much as 10 MiB of PCM)");
            break;
        }
        // The decoder is a port of C code: a malformed packet must not take the job down.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoder.decode(packet, max_frame, &mut pcm)
        }));
        match result {
            Ok(Ok(n)) => samples.extend(
                pcm[..n * channels]
                    .iter()
                    .map(|s| (s.clamp(-1.0, 1.0) * i16::MAX as f32) as i16),
            ),
            Ok(Err(_)) | Err(_) => {
                failed += 1;
                // The decoder state after a panic is unknown: start a fresh one.
                if let Ok(d) = opus_rs::OpusDecoder::new(rate as i32, channels) {
                    decoder = d;
                }
            }
        }
    }
    if failed > 0 {
        tracing::warn!(
            failed,
            total = found.packets.len(),
            "pre-connect audio: some Opus packets could not be decoded"
        );
    }
    if samples.is_empty() && !found.packets.is_empty() {
        return Err(PreConnectError::Decode(
            "no Opus packet could be decoded".into(),
        ));
    }
    let skip = (head.pre_skip as usize * rate as usize / 48_000) * channels;
    samples.drain(..skip.min(samples.len()));
    Ok(DecodedAudio {
        samples,
        sample_rate: rate,
        num_channels: channels as u16,
    })
}

/// Splits a block's frames by Xiph or fixed-size lacing (RFC 9559 §10.3).
fn unlace(lacing: u8, data: &[u8]) -> Option<Vec<&[u8]>> {
    match lacing {
        0 => Some(vec![data]),
        // Xiph lacing: count-1, then each size but the last as a run of 255s plus a remainder.
        1 => {
            let (&count, mut rest) = data.split_first()?;
            let mut sizes = Vec::with_capacity(count as usize + 1);
            for _ in 0..count {
                let mut size = 0usize;
                loop {
                    let (&b, r) = rest.split_first()?;
                    rest = r;
                    size += b as usize;
                    if b != 255 {
                        break;
                    }
                }
                sizes.push(size);
            }
            let used: usize = sizes.iter().sum();
            sizes.push(rest.len().checked_sub(used)?);
            let mut frames = Vec::with_capacity(sizes.len());
            for size in sizes {
                let (frame, r) = rest.split_at_checked(size)?;
                frames.push(frame);
                rest = r;
            }
            Some(frames)
        }
        // Fixed-size lacing: count-1, then equal frames.
        2 => {
            let (&count, rest) = data.split_first()?;
            let n = count as usize + 1;
            if rest.len() % n != 0 {
                return None;
            }
            Some(rest.chunks(rest.len() / n).collect())
        }
        _ => None,
    }
}

/// A minimal WebM (Matroska) reader: the Opus track's `CodecPrivate` and its blocks.
mod webm {
    use super::{unlace, OpusHead, OpusPackets, PreConnectError};

    const SEGMENT: u32 = 0x1853_8067;
    const CLUSTER: u32 = 0x1F43_B675;
    const TRACKS: u32 = 0x1654_AE6B;
    const TRACK_ENTRY: u32 = 0xAE;
    const TRACK_NUMBER: u32 = 0xD7;
    const CODEC_ID: u32 = 0x86;
    const CODEC_PRIVATE: u32 = 0x63A2;
    const BLOCK_GROUP: u32 = 0xA0;
    const BLOCK: u32 = 0xA1;
    const SIMPLE_BLOCK: u32 = 0xA3;

    /// Containers whose children are read in place (the walk is flat: this reader only needs
    /// to know which track entry it is in, and live recordings give Segment and Cluster an
    /// unknown size).
    fn is_master(id: u32) -> bool {
        matches!(id, SEGMENT | CLUSTER | TRACKS | TRACK_ENTRY | BLOCK_GROUP)
    }

    /// An element id (marker bit kept), and its length in bytes.
    fn read_id(b: &[u8]) -> Option<(u32, usize)> {
        let first = *b.first()?;
        let len = first.leading_zeros() as usize + 1;
        if len > 4 || b.len() < len {
            return None;
        }
        Some((b[..len].iter().fold(0u32, |v, &x| (v << 8) | x as u32), len))
    }

    /// A variable-size integer (marker bit removed), `None` inside for "unknown" (all ones),
    /// and its length in bytes.
    pub(super) fn read_vint(b: &[u8]) -> Option<(Option<u64>, usize)> {
        let first = *b.first()?;
        let len = first.leading_zeros() as usize + 1;
        if len > 8 || b.len() < len {
            return None;
        }
        let mask = if len == 8 { 0 } else { 0xFFu8 >> len };
        let mut value = (first & mask) as u64;
        let mut all_ones = (first & mask) == mask;
        for &x in &b[1..len] {
            value = (value << 8) | x as u64;
            all_ones &= x == 0xFF;
        }
        Some((if all_ones { None } else { Some(value) }, len))
    }

    /// A track entry being read: number, codec id, codec private.
    type Entry = (Option<u64>, Option<String>, Option<Vec<u8>>);

    /// Ends a track entry: the first Opus track is the one decoded.
    fn finish_entry(
        entry: &mut Entry,
        opus_track: &mut Option<u64>,
        head: &mut Option<OpusHead>,
    ) -> Result<(), PreConnectError> {
        let (number, codec, private) = std::mem::take(entry);
        if codec.as_deref() == Some("A_OPUS") && opus_track.is_none() {
            *opus_track = number;
            if let Some(p) = private {
                *head = Some(OpusHead::parse(&p)?);
            }
        }
        Ok(())
    }

    pub(super) fn packets(bytes: &[u8]) -> Result<OpusPackets, PreConnectError> {
        let mut out = OpusPackets::default();
        let mut opus_track: Option<u64> = None;
        let mut entry: Entry = (None, None, None);
        let mut pos = 0usize;
        let mut in_entry = false;
        while pos < bytes.len() {
            let Some((id, id_len)) = read_id(&bytes[pos..]) else {
                break; // A truncated tail: keep what was read.
            };
            let Some((size, size_len)) = read_vint(&bytes[pos + id_len..]) else {
                break;
            };
            let data_start = pos + id_len + size_len;
            if id == TRACK_ENTRY || (in_entry && (id == CLUSTER || id == TRACKS)) {
                if in_entry {
                    finish_entry(&mut entry, &mut opus_track, &mut out.head)?;
                }
                in_entry = id == TRACK_ENTRY;
            }
            if is_master(id) {
                pos = data_start;
                continue;
            }
            let Some(size) = size else {
                return Err(PreConnectError::Decode(
                    "WebM element of unknown size".into(),
                ));
            };
            let Some(data) = usize::try_from(size)
                .ok()
                .and_then(|s| bytes.get(data_start..data_start.checked_add(s)?))
            else {
                break; // Truncated element at the end of the recording.
            };
            match id {
                TRACK_NUMBER if in_entry => {
                    entry.0 = Some(data.iter().fold(0u64, |v, &x| (v << 8) | x as u64))
                }
                CODEC_ID if in_entry => entry.1 = Some(String::from_utf8_lossy(data).into_owned()),
                CODEC_PRIVATE if in_entry => entry.2 = Some(data.to_vec()),
                SIMPLE_BLOCK | BLOCK => {
                    if in_entry {
                        finish_entry(&mut entry, &mut opus_track, &mut out.head)?;
                        in_entry = false;
                    }
                    let Some((Some(track), n)) = read_vint(data) else {
                        pos = data_start + data.len();
                        continue;
                    };
                    if opus_track.is_some_and(|t| t == track) && data.len() >= n + 3 {
                        let flags = data[n + 2];
                        let frames = &data[n + 3..];
                        match unlace((flags >> 1) & 0x03, frames) {
                            Some(frames) => {
                                out.packets.extend(frames.into_iter().map(<[u8]>::to_vec))
                            }
                            None => {
                                tracing::debug!("skipping a WebM block with unsupported lacing")
                            }
                        }
                    }
                }
                _ => {}
            }
            pos = data_start + data.len();
        }
        if in_entry {
            finish_entry(&mut entry, &mut opus_track, &mut out.head)?;
        }
        if opus_track.is_none() {
            return Err(PreConnectError::Decode(
                "no Opus track in the WebM stream".into(),
            ));
        }
        Ok(out)
    }
}

/// A minimal Ogg reader (RFC 3533): the packets of the first logical stream.
mod ogg {
    use super::{OpusHead, OpusPackets, PreConnectError};

    pub(super) fn packets(bytes: &[u8]) -> Result<OpusPackets, PreConnectError> {
        let mut raw: Vec<Vec<u8>> = Vec::new();
        let mut partial: Vec<u8> = Vec::new();
        let mut serial: Option<u32> = None;
        let mut pos = 0usize;
        while let Some(page) = bytes.get(pos..) {
            if page.len() < 27 || &page[..4] != b"OggS" {
                break;
            }
            let page_serial = u32::from_le_bytes([page[14], page[15], page[16], page[17]]);
            let nsegs = page[26] as usize;
            let Some(table) = page.get(27..27 + nsegs) else {
                break;
            };
            let body_len: usize = table.iter().map(|&l| l as usize).sum();
            let Some(body) = page.get(27 + nsegs..27 + nsegs + body_len) else {
                break;
            };
            pos += 27 + nsegs + body_len;
            if *serial.get_or_insert(page_serial) != page_serial {
                continue;
            }
            let mut offset = 0usize;
            for &lace in table {
                partial.extend_from_slice(&body[offset..offset + lace as usize]);
                offset += lace as usize;
                if lace < 255 {
                    raw.push(std::mem::take(&mut partial));
                }
            }
        }
        let mut packets = raw.into_iter();
        let head = match packets.next() {
            Some(p) => OpusHead::parse(&p)?,
            None => return Err(PreConnectError::Decode("empty Ogg stream".into())),
        };
        let packets = packets
            .filter(|p| !p.starts_with(b"OpusTags"))
            .collect::<Vec<_>>();
        Ok(OpusPackets {
            head: Some(head),
            packets,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Fixtures are generated here: a 440 Hz tone encoded with `opus-rs`, wrapped in minimal
    //! WebM (as `MediaRecorder` writes it: unknown-size Segment and Cluster, SimpleBlocks) and
    //! Ogg containers.

    use super::*;

    const RATE: u32 = 48_000;
    const PRE_SKIP: u16 = 312;

    fn tone_packets(seconds: f32) -> Vec<Vec<u8>> {
        let mut enc =
            opus_rs::OpusEncoder::new(RATE as i32, 1, opus_rs::Application::Voip).unwrap();
        let frame = (RATE / 50) as usize; // 20 ms
        let total = (RATE as f32 * seconds) as usize / frame;
        (0..total)
            .map(|f| {
                let pcm: Vec<f32> = (0..frame)
                    .map(|i| {
                        let t = (f * frame + i) as f32 / RATE as f32;
                        (t * 440.0 * std::f32::consts::TAU).sin() * 0.5
                    })
                    .collect();
                let mut out = vec![0u8; 1500];
                let n = enc.encode(&pcm, frame, &mut out).unwrap();
                out.truncate(n);
                out
            })
            .collect()
    }

    fn opus_head() -> Vec<u8> {
        let mut h = b"OpusHead".to_vec();
        h.push(1); // version
        h.push(1); // channels
        h.extend_from_slice(&PRE_SKIP.to_le_bytes());
        h.extend_from_slice(&RATE.to_le_bytes());
        h.extend_from_slice(&0i16.to_le_bytes());
        h.push(0); // mapping family
        h
    }

    fn element(id: &[u8], data: &[u8]) -> Vec<u8> {
        let mut e = id.to_vec();
        // 8-byte size vint.
        e.push(0x01);
        e.extend_from_slice(&(data.len() as u64).to_be_bytes()[1..]);
        e.extend_from_slice(data);
        e
    }

    pub(crate) fn webm_fixture(seconds: f32) -> Vec<u8> {
        const UNKNOWN: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        let mut out = element(&[0x1A, 0x45, 0xDF, 0xA3], &element(&[0x42, 0x82], b"webm"));
        out.extend_from_slice(&[0x18, 0x53, 0x80, 0x67]);
        out.extend_from_slice(&UNKNOWN);
        out.extend(element(
            &[0x15, 0x49, 0xA9, 0x66],
            &element(&[0x2A, 0xD7, 0xB1], &[0x0F, 0x42, 0x40]),
        ));
        let mut entry = element(&[0xD7], &[1]);
        entry.extend(element(&[0x86], b"A_OPUS"));
        entry.extend(element(&[0x63, 0xA2], &opus_head()));
        out.extend(element(
            &[0x16, 0x54, 0xAE, 0x6B],
            &element(&[0xAE], &entry),
        ));
        out.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75]);
        out.extend_from_slice(&UNKNOWN);
        out.extend(element(&[0xE7], &[0]));
        for (i, p) in tone_packets(seconds).into_iter().enumerate() {
            let mut block = vec![0x81]; // track 1
            block.extend_from_slice(&((i * 20) as i16).to_be_bytes());
            block.push(0x80); // keyframe, no lacing
            block.extend_from_slice(&p);
            out.extend(element(&[0xA3], &block));
        }
        out
    }

    fn ogg_fixture(seconds: f32) -> Vec<u8> {
        let mut packets = vec![opus_head(), b"OpusTags\0\0\0\0\0\0\0\0".to_vec()];
        packets.extend(tone_packets(seconds));
        let mut out = Vec::new();
        for (seq, p) in packets.iter().enumerate() {
            // One packet per page (all packets are < 255 * 255 bytes).
            let mut table: Vec<u8> = vec![255; p.len() / 255];
            table.push((p.len() % 255) as u8);
            out.extend_from_slice(b"OggS");
            out.push(0);
            out.push(if seq == 0 { 2 } else { 0 });
            out.extend_from_slice(&0u64.to_le_bytes());
            out.extend_from_slice(&7u32.to_le_bytes());
            out.extend_from_slice(&(seq as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes()); // CRC (not checked by the reader)
            out.push(table.len() as u8);
            out.extend_from_slice(&table);
            out.extend_from_slice(p);
        }
        out
    }

    /// Mean power and zero crossings per second over the middle of the signal.
    fn tone_stats(audio: &DecodedAudio) -> (f64, f64) {
        let s = &audio.samples[audio.samples.len() / 4..audio.samples.len() * 3 / 4];
        let power = s
            .iter()
            .map(|&x| (x as f64 / i16::MAX as f64).powi(2))
            .sum::<f64>()
            / s.len() as f64;
        let crossings = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        let seconds = s.len() as f64 / audio.sample_rate as f64;
        (power, crossings as f64 / seconds)
    }

    #[test]
    fn decodes_webm_opus_as_media_recorder_writes_it() {
        let audio = decode(&webm_fixture(1.0), 48_000, 1).unwrap();
        assert_eq!((audio.sample_rate, audio.num_channels), (48_000, 1));
        assert_eq!(audio.samples.len(), 48_000 - PRE_SKIP as usize);
        let (power, crossings) = tone_stats(&audio);
        assert!((power - 0.125).abs() < 0.03, "power {power}");
        assert!((crossings - 880.0).abs() < 30.0, "crossings {crossings}/s");
    }

    #[test]
    fn decodes_ogg_opus_at_a_supported_announced_rate() {
        let audio = decode(&ogg_fixture(0.5), 24_000, 1).unwrap();
        assert_eq!(audio.sample_rate, 24_000);
        assert_eq!(audio.samples.len(), 12_000 - PRE_SKIP as usize / 2);
        let (power, crossings) = tone_stats(&audio);
        assert!((power - 0.125).abs() < 0.03, "power {power}");
        assert!((crossings - 880.0).abs() < 30.0, "crossings {crossings}/s");
    }

    #[test]
    fn malformed_input_is_an_error_or_partial_audio_never_a_panic() {
        assert!(matches!(
            decode(b"not a container", 48_000, 1),
            Err(PreConnectError::Decode(_))
        ));
        let webm = webm_fixture(0.2);
        // Truncated anywhere: decodes what is complete or reports an error.
        for cut in [4, 40, 60, webm.len() / 2, webm.len() - 3] {
            let _ = decode(&webm[..cut], 48_000, 1);
        }
        // Corrupted packets: still no panic.
        let mut corrupted = webm.clone();
        let start = corrupted.len() / 2;
        for b in &mut corrupted[start..] {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
        let _ = decode(&corrupted, 48_000, 1);
        assert_eq!(
            unlace(1, &[1, 2, 9, 9, 8]).unwrap(),
            vec![&[9u8, 9][..], &[8u8][..]]
        );
        assert_eq!(unlace(2, &[1, 1, 2, 3, 4]).unwrap().len(), 2);
        assert!(unlace(2, &[1, 1, 2, 3]).is_none());
        assert_eq!(webm::read_vint(&[0x1F, 0xFF, 0xFF, 0xFF]), Some((None, 4)));
    }
}
