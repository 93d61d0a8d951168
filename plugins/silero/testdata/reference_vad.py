# Reference events from livekit-plugins-silero for the Rust port's golden tests.
# Usage: python reference_vad.py <dir with test_16k.wav, test_48k.wav, test_8k.wav> <out.json>
import asyncio, json, sys, wave
from livekit import rtc
from livekit.agents import vad as agents_vad
from livekit.plugins import silero

def read(path):
    with wave.open(path, "rb") as w:
        return w.getframerate(), w.getnchannels(), w.readframes(w.getnframes())

async def run(path, frame_ms=20, load_kwargs=None, update_at=None, update_kwargs=None):
    sr, ch, pcm = read(path)
    assert ch == 1
    v = silero.VAD.load(**(load_kwargs or {}))
    stream = v.stream()
    spf = sr * frame_ms // 1000
    events, probs = [], []
    async def consume():
        async for ev in stream:
            if ev.type == agents_vad.VADEventType.INFERENCE_DONE:
                probs.append(round(ev.probability, 6))
            else:
                kind = "START" if ev.type == agents_vad.VADEventType.START_OF_SPEECH else "END"
                events.append({"kind": kind, "timestamp": round(ev.timestamp, 6),
                    "samples_index": ev.samples_index,
                    "speech_duration": round(ev.speech_duration, 6),
                    "silence_duration": round(ev.silence_duration, 6),
                    "frame_samples": sum(f.samples_per_channel for f in ev.frames)})
    task = asyncio.create_task(consume())
    pushed = 0
    updated = False
    for off in range(0, len(pcm), spf * 2):
        chunk = pcm[off: off + spf * 2]
        if update_at is not None and not updated and pushed >= update_at * sr:
            # wait until every complete window pushed so far has been processed
            windows = int(pushed * 16000 / sr) // 512
            while len(probs) < windows:
                await asyncio.sleep(0.001)
            stream.update_options(**update_kwargs)
            updated = True
        stream.push_frame(rtc.AudioFrame(data=chunk, sample_rate=sr, num_channels=1,
                                         samples_per_channel=len(chunk) // 2))
        pushed += len(chunk) // 2
    stream.end_input()
    await task
    await stream.aclose()
    return {"events": events, "probabilities": probs}

async def main(d, out):
    cases = {
        "default_16k": await run(d + "test_16k.wav"),
        "default_16k_10ms": await run(d + "test_16k.wav", frame_ms=10),
        "input_48k": await run(d + "test_48k.wav"),
        "input_8k": await run(d + "test_8k.wav"),
        "model_8k": await run(d + "test_16k.wav", load_kwargs={"sample_rate": 8000}),
        "update_at_6s": await run(d + "test_16k.wav", update_at=6.0,
                                  update_kwargs={"min_silence_duration": 0.1, "prefix_padding_duration": 0.2}),
    }
    for name, c in cases.items():
        print(name, [(e["kind"], e["timestamp"], e["samples_index"], e["frame_samples"]) for e in c["events"]])
    json.dump(cases, open(out, "w"), indent=1)

asyncio.run(main(sys.argv[1].rstrip("/") + "/", sys.argv[2]))
