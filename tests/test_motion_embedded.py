"""Unit tests of the embedded generator's streaming contract (no speech synthesis needed)."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from avatar_relay.motion import (
    MOTION_SOURCES,
    EmbeddedMotionSource,
    MotionAudioError,
    MotionError,
    MotionFrame,
    MotionStream,
    MotionStreamEnd,
    create_motion_source,
)
from avatar_relay.motion.embedded import CHANNELS, EmbeddedMotionStream
from avatar_relay.motion.embedded.channels import CH, MOUTH_CHANNELS
from avatar_relay.motion.embedded.recognizer import PhoneRecognizer
from avatar_relay.protocol.blendshapes import ARKIT_CODEC, ArkitU8Codec

CODEC = ArkitU8Codec(CHANNELS)


def voice_like(sample_rate: int, seconds: float, seed: int = 1) -> np.ndarray:
    """Syllable-rate amplitude-modulated harmonics with pauses: speech-like, not speech."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    rng = np.random.default_rng(seed)
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(h * phase) / h for h in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 2
    pauses = (np.sin(2 * np.pi * 0.3 * t) > -0.6).astype(float)
    x = 0.3 * x * syllables * pauses + 0.001 * rng.standard_normal(t.size)
    return np.clip(x * 32767, -32768, 32767).astype("<i2")


async def drain(stream: MotionStream) -> tuple[list[MotionFrame], list[MotionStreamEnd]]:
    frames: list[MotionFrame] = []
    ends: list[MotionStreamEnd] = []
    async for item in stream:
        (frames if isinstance(item, MotionFrame) else ends).append(item)  # type: ignore[arg-type]
    return frames, ends


async def run(pcm: np.ndarray, sr: int, chunks: list[int] | int, **kwargs: object) -> list[bytes]:
    source = EmbeddedMotionSource(**kwargs)  # type: ignore[arg-type]
    stream = await source.open_stream("conv", sr)
    sizes = chunks if isinstance(chunks, list) else [chunks] * (len(pcm) // chunks + 1)
    i = 0
    for n in sizes:
        stream.push_audio(pcm[i : i + n].tobytes())
        i += n
    stream.push_audio(pcm[i:].tobytes())
    stream.flush()
    frames, ends = await drain(stream)
    assert len(ends) == 1 and not ends[0].audio_only
    assert [f.index for f in frames] == list(range(len(frames)))
    return [f.payload for f in frames]


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 24000, 44100, 48000])
@pytest.mark.parametrize("n_samples", [0, 1, 639, 640, 12345])
async def test_frame_count_is_ceil_of_audio_over_frame_length(sr: int, n_samples: int) -> None:
    pcm = voice_like(sr, 1.0)[: n_samples * sr // 16000]
    payloads = await run(pcm, sr, 777)
    assert len(payloads) == math.ceil(len(pcm) / (sr // 25))
    assert all(len(p) == len(CHANNELS) for p in payloads)


@pytest.mark.parametrize("lookahead_ms", [0, 60, 100, 120])
async def test_frames_emitted_as_soon_as_lookahead_is_covered(lookahead_ms: int) -> None:
    sr = 16000
    spf, la = sr // 25, lookahead_ms * sr // 1000
    stream = await EmbeddedMotionSource(lookahead_ms=lookahead_ms).open_stream("c", sr)
    assert isinstance(stream, EmbeddedMotionStream)
    assert stream.info.lookahead_ms == lookahead_ms
    pcm = voice_like(sr, 2.0)
    pushed = 0
    for n in [1, 100, 539, 640, 1, 3000, 7, 9000, 4000]:
        stream.push_audio(pcm[pushed : pushed + n].tobytes())
        pushed += n
        assert stream.frames_emitted == max(0, (pushed - la) // spf)
    stream.flush()
    assert stream.frames_emitted == math.ceil(pushed / spf)
    await stream.aclose()


async def test_output_does_not_depend_on_chunking_and_is_deterministic() -> None:
    sr = 22050
    pcm = voice_like(sr, 3.0)
    a = await run(pcm, sr, 882)
    b = await run(pcm, sr, [1, 2, 5000, 13, 40000, 3])
    c = await run(pcm, sr, len(pcm))
    assert a == b == c
    assert a != await run(pcm, sr, 882, seed=7)  # the seed changes blinks and head motion


async def test_recognition_path_is_deterministic_and_keeps_frame_count() -> None:
    sr = 16000
    pcm = voice_like(sr, 2.0)
    a = await run(pcm, sr, 640, recognition=True)
    b = await run(pcm, sr, [3, 5000, 1, 30000], recognition=True)
    assert a == b
    assert len(a) == math.ceil(len(pcm) / 640)


class BrokenDecoder:
    """A decoder whose every call fails, as a crashed pocketsphinx would."""

    def start_utt(self) -> None:
        raise RuntimeError("decoder crashed")


async def test_failed_recognizer_falls_back_to_acoustic_cues() -> None:
    sr = 16000
    pcm = voice_like(sr, 2.0)
    broken = PhoneRecognizer(BrokenDecoder(), sr)
    stream = EmbeddedMotionStream(
        conversation_id="c", sample_rate=sr, lookahead_ms=100, seed=0, recognizer=broken
    )
    stream.push_audio(pcm.tobytes())
    stream.flush()
    frames, ends = await drain(stream)
    assert broken.failed and len(ends) == 1
    plain = await EmbeddedMotionSource(lookahead_ms=100).open_stream("x", sr)
    assert isinstance(plain, EmbeddedMotionStream)
    plain.push_audio(pcm.tobytes())
    plain.flush()
    reference, _ = await drain(plain)
    jaw = [CODEC.decode(f.payload)[CH["jawOpen"]] for f in frames]
    assert jaw == [CODEC.decode(f.payload)[CH["jawOpen"]] for f in reference]
    assert max(jaw) > 0.3


async def test_mouth_moves_with_sound_and_closes_in_silence() -> None:
    sr = 16000
    pcm = np.concatenate([np.zeros(sr, "<i2"), voice_like(sr, 2.0), np.zeros(sr, "<i2")])
    w = np.array([CODEC.decode(p) for p in await run(pcm, sr, 320)])
    mouth = [CH[c] for c in MOUTH_CHANNELS]
    assert np.max(w[:24][:, mouth]) == 0.0  # frame 24 may anticipate the onset
    assert np.max(w[-15:][:, mouth]) < 0.01
    assert np.max(w[25:75, CH["jawOpen"]]) > 0.4


async def test_clipped_audio_and_dc_do_not_break_the_stream() -> None:
    sr = 16000
    square = np.where(np.sin(2 * np.pi * 200 * np.arange(sr) / sr) >= 0, 32767, -32768)
    pcm = np.concatenate([square, np.full(sr, 32767)]).astype("<i2")
    w = np.array([CODEC.decode(p) for p in await run(pcm, sr, 1000)])
    assert len(w) == 50 and np.all(np.isfinite(w))
    assert np.all((w[:, : len(MOUTH_CHANNELS)] >= 0) & (w[:, : len(MOUTH_CHANNELS)] <= 1))


async def test_bad_audio_is_a_clear_error() -> None:
    source = EmbeddedMotionSource()
    with pytest.raises(MotionAudioError, match="sample rate"):
        await source.open_stream("c", 11025)
    stream = await source.open_stream("c", 16000)
    with pytest.raises(MotionAudioError, match="even byte count"):
        stream.push_audio(b"\x00\x01\x02")
    stream.push_audio(b"")
    stream.flush()
    frames, ends = await drain(stream)
    assert frames == [] and len(ends) == 1
    with pytest.raises(MotionError):
        stream.push_audio(b"\x00\x00")


async def test_interrupt_ends_a_waiting_iteration_without_more_frames() -> None:
    stream = await EmbeddedMotionSource(lookahead_ms=0).open_stream("c", 16000)
    stream.push_audio(voice_like(16000, 0.2).tobytes())
    received: list[object] = []
    started = asyncio.Event()

    async def consume() -> None:
        async for item in stream:
            received.append(item)
            if len(received) == 5:
                started.set()

    task = asyncio.create_task(consume(), name="consume")
    await asyncio.wait_for(started.wait(), 5)
    await stream.interrupt()
    await asyncio.wait_for(task, 5)
    assert len(received) == 5 and all(isinstance(r, MotionFrame) for r in received)
    stream.push_audio(voice_like(16000, 0.2).tobytes())  # late audio is dropped, not an error
    assert isinstance(stream, EmbeddedMotionStream) and stream.dropped_bytes > 0
    await stream.aclose()
    await stream.aclose()


def test_lookahead_is_validated() -> None:
    with pytest.raises(ValueError, match="lookahead_ms"):
        EmbeddedMotionSource(lookahead_ms=121)
    with pytest.raises(ValueError, match="lookahead_ms"):
        EmbeddedMotionSource(lookahead_ms=-1)
    # Recognition is asked for, never implied by the lookahead (issue 13, defect 5).
    assert not EmbeddedMotionSource(lookahead_ms=200, max_lookahead_ms=200).recognition
    assert EmbeddedMotionSource(recognition=True).recognition
    assert not EmbeddedMotionSource().recognition


def test_idle_frames_are_deterministic_alive_and_mouth_closed() -> None:
    a, b = EmbeddedMotionSource(seed=3), EmbeddedMotionSource(seed=3)
    info = a.idle_info()
    assert info.codec == ARKIT_CODEC and info.channels == CHANNELS and info.fps == 25.0
    whole = a.idle_frames(0, 500)
    assert list(b.idle_frames(250, 250)) + [] == list(whole[250:])
    assert list(b.idle_frames(0, 250)) == list(whole[:250])
    assert list(EmbeddedMotionSource(seed=4).idle_frames(0, 500)) != list(whole)
    w = np.array([CODEC.decode(p) for p in whole])
    assert np.all(w[:, : len(MOUTH_CHANNELS)] == 0)
    assert np.max(w[:, CH["eyeBlinkLeft"]]) > 0.9  # blinks within 20 s
    assert np.ptp(w[:, CH["headYaw"]]) > 0.02  # the head drifts
    assert a.idle_frames(10, 0) == []
    with pytest.raises(ValueError):
        a.idle_frames(-1, 3)


def test_factory_knows_the_sources_and_lists_them_on_error() -> None:
    assert isinstance(create_motion_source("embedded", lookahead_ms=60), EmbeddedMotionSource)
    assert create_motion_source("clapperboard").name == "clapperboard"
    assert {"embedded", "clapperboard"} <= set(MOTION_SOURCES)
    with pytest.raises(ValueError, match="clapperboard.*embedded"):
        create_motion_source("nope")
