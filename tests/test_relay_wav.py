"""Issue 14, finding 8: parse_wav raised RuntimeError instead of WavError on malformed WAVs."""

from __future__ import annotations

import io
import random
import wave

import pytest

from avatar_relay.relay.tts import WavError, parse_wav


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(400))
    return buf.getvalue()


def test_chunk_running_past_the_data_is_a_wav_error() -> None:
    """A fmt chunk whose size points past the end made wave raise a bare RuntimeError."""
    data = bytearray(_wav())
    data[16:20] = (0x10000000).to_bytes(4, "little")  # fmt chunk size
    with pytest.raises(WavError):
        parse_wav(bytes(data))


def test_mutated_wavs_raise_only_wav_error() -> None:
    seed = _wav()
    assert len(parse_wav(seed).samples) == 200
    rng = random.Random(8)
    for _ in range(3000):
        data = bytearray(seed)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(48)] = rng.randrange(256)
        try:
            parse_wav(bytes(data))
        except WavError:
            pass
