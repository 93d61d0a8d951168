# CPU cost of the Python livekit-plugins-silero stream on a WAV, for `cargo xtask bench vad`
# (run with SILERO_BENCH_PYTHON=<venv>/bin/python so both are measured under the same load).
# Usage: python python_cpu.py <file.wav> <passes>
import asyncio, sys, time, wave
from livekit import rtc
from livekit.agents import vad as agents_vad
from livekit.plugins import silero

async def one(v, pcm, sr):
    stream = v.stream()
    spf = sr // 50
    for off in range(0, len(pcm), spf * 2):
        chunk = pcm[off: off + spf * 2]
        stream.push_frame(rtc.AudioFrame(data=chunk, sample_rate=sr, num_channels=1, samples_per_channel=len(chunk)//2))
    stream.end_input()
    n = 0
    async for ev in stream:
        n += 1
    await stream.aclose()
    return n

async def main(path, passes):
    with wave.open(path, "rb") as w:
        sr = w.getframerate(); pcm = w.readframes(w.getnframes())
    secs = len(pcm) / 2 / sr
    v = silero.VAD.load()
    await one(v, pcm, sr)
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(passes):
        await one(v, pcm, sr)
    cpu = (time.process_time() - c0) / passes
    wall = (time.perf_counter() - w0) / passes
    print(f"python plugin: CPU per pass {cpu*1e3:.1f} ms = {cpu/secs*1e3:.2f} ms per audio second; wall per pass {wall*1e3:.1f} ms")

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
