"""The clapperboard test pattern: bursts on the frame grid, marks exactly on their frames."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatar_relay.motion import (
    ClapperboardMotionSource,
    MotionAudioError,
    MotionFrame,
    MotionStreamEnd,
    clapperboard_audio,
    detect_tone_onsets,
)
from avatar_relay.motion.clapperboard import (
    CLAPPER_CHANNELS,
    ClapperboardStream,
    burst_onset_samples,
)
from avatar_relay.protocol.blendshapes import ArkitU8Codec

CODEC = ArkitU8Codec(CLAPPER_CHANNELS)


async def marks(pcm: bytes, sr: int, chunk: int) -> tuple[np.ndarray, ClapperboardStream]:
    stream = await ClapperboardMotionSource().open_stream("c", sr)
    assert isinstance(stream, ClapperboardStream)
    step = 2 * chunk  # chunk is in samples
    for i in range(0, len(pcm), step):
        stream.push_audio(pcm[i : i + step])
    stream.flush()
    rows, ends = [], []
    async for item in stream:
        if isinstance(item, MotionFrame):
            assert item.index == len(rows)
            rows.append(CODEC.decode(item.payload))
        else:
            ends.append(item)
    assert ends == [MotionStreamEnd()]
    return np.array(rows), stream


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
async def test_bursts_start_on_frame_boundaries_and_only_their_frames_are_marked(sr: int) -> None:
    pcm = clapperboard_audio(sr, 4.0, period_s=1.0, burst_ms=120, offset_s=0.2)
    assert len(pcm) == 2 * 4 * sr
    w, stream = await marks(pcm, sr, 1234)
    spf = sr // 25
    expected = burst_onset_samples(sr, 4 * sr, 1.0, 0.2)
    assert expected == [int(round((0.2 + k) * sr)) for k in range(4)]
    assert stream.onsets == expected
    onset_frames = {s // spf for s in expected}
    assert all(s % spf == 0 for s in expected)
    assert len(w) == 100
    assert {k for k in range(len(w)) if w[k, 1] == 1.0} == onset_frames
    assert np.array_equal(w[:, 1], w[:, 2])
    sounding = {k for k in range(len(w)) if w[k, 0] == 1.0}
    assert sounding == {k + j for k in onset_frames for j in range(3)}  # 120 ms = 3 frames
    assert set(np.unique(w)) <= {0.0, 1.0}


@pytest.mark.parametrize("sr", [16000, 44100])
def test_detect_tone_onsets_is_sample_accurate(sr: int) -> None:
    pcm = np.frombuffer(clapperboard_audio(sr, 3.0, period_s=0.8, offset_s=0.4), "<i2")
    expected = [s / sr for s in burst_onset_samples(sr, len(pcm), 0.8, 0.4)]
    assert detect_tone_onsets(pcm, sr) == pytest.approx(expected, abs=1.5 / sr)
    # quieter, noisier and as floats: still within a sample or two
    rng = np.random.default_rng(0)
    noisy = pcm / 32768.0 * 0.1 + 0.002 * rng.standard_normal(len(pcm))
    assert detect_tone_onsets(noisy, sr) == pytest.approx(expected, abs=2.5 / sr)
    assert detect_tone_onsets(np.zeros(sr, np.int16), sr) == []
    assert detect_tone_onsets(np.zeros(0, np.int16), sr) == []


async def test_marks_follow_the_audio_received_even_off_the_grid() -> None:
    sr = 16000
    pcm = np.zeros(sr * 2, "<i2")
    start = 12_345  # 0.7716 s: inside frame 19
    t = np.arange(1600) / sr
    pcm[start : start + 1600] = (10000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2")
    w, stream = await marks(pcm.tobytes(), sr, 999)
    assert stream.onsets[0] in range(start, start + 3)
    assert [k for k in range(len(w)) if w[k, 1]] == [start // 640]
    assert [k for k in range(len(w)) if w[k, 0]] == list(
        range(start // 640, (start + 1600) // 640 + 1)
    )


async def test_streaming_contract_and_bad_audio() -> None:
    source = ClapperboardMotionSource()
    assert source.idle_info().channels == CLAPPER_CHANNELS
    assert source.idle_frames(5, 3) == [bytes(3)] * 3
    with pytest.raises(MotionAudioError):
        await source.open_stream("c", 12000)
    stream = await source.open_stream("c", 16000)
    with pytest.raises(MotionAudioError):
        stream.push_audio(b"\x01")
    stream.push_audio(b"")
    stream.push_audio(bytes(2 * 700))
    w, _ = await marks(bytes(2 * 1281), 16000, 100)
    assert len(w) == math.ceil(1281 / 640)
    await stream.interrupt()
    items = [item async for item in stream]
    assert items == []


def test_clapperboard_audio_rejects_off_grid_times() -> None:
    with pytest.raises(ValueError):
        clapperboard_audio(16000, 1.0, period_s=0.5, offset_s=0.01)
    with pytest.raises(ValueError):
        clapperboard_audio(16000, 1.0, period_s=0.12, burst_ms=120)
