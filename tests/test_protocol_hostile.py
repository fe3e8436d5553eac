"""Issue 14: packets a hostile participant or an independent implementer might send.

Each test names the finding it pins down; the JavaScript twins are in
web/test/decoder_strictness.test.js.
"""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]  # msgpack ships no type information
import pytest

from avatar_relay.protocol import MAX_INT, ProtocolError, decode_any, decode_packet
from avatar_relay.protocol.limits import MAX_DEPTH


def _interrupt(**extra: Any) -> dict[str, Any]:
    return {"v": 1, "t": "interrupt", "c": "x", "s": 1, "ts": 0, **extra}


def _pack(m: object) -> bytes:
    packed: bytes = msgpack.packb(m, use_bin_type=True)
    return packed


def _with_raw(m: dict[str, Any], key: str, raw_value: bytes) -> bytes:
    """``m`` packed, plus one more entry whose value is the raw msgpack bytes given."""
    body = _pack(m)
    assert 0x80 <= body[0] < 0x8F
    return bytes([body[0] + 1]) + body[1:] + _pack(key) + raw_value


def test_deep_nesting_is_a_protocol_error_not_recursion_error() -> None:
    """Finding 4: a 1 KB packet of nested arrays raised RecursionError."""
    ok = _with_raw(_interrupt(), "x", b"\x91" * (MAX_DEPTH - 1) + b"\x00")
    assert decode_packet(ok) is not None
    for levels in (MAX_DEPTH, 1000, 1100, 15000):
        with pytest.raises(ProtocolError):
            decode_any(_with_raw(_interrupt(), "x", b"\x91" * levels + b"\x00"))
    maps = b"\x81\xa1k" * 5000 + b"\x00"
    with pytest.raises(ProtocolError):
        decode_any(_with_raw(_interrupt(), "x", maps))
    keyed = b"\x81" + b"\x91" * 1100 + b"\x00" + b"\x00"  # a deeply nested array as a map key
    with pytest.raises(ProtocolError):
        decode_any(_with_raw(_interrupt(), "x", keyed))


def test_map_keys_must_be_strings_at_every_depth() -> None:
    with pytest.raises(ProtocolError):
        decode_any(_with_raw(_interrupt(), "x", b"\x81\x01\x02"))
    with pytest.raises(ProtocolError):
        decode_any(_with_raw(_interrupt(), "x", b"\x81\xc4\x01a\x02"))  # binary key


def test_duplicate_keys_are_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="duplicate"):
        decode_any(_with_raw(_interrupt(), "s", _pack(2)))
    with pytest.raises(ProtocolError, match="duplicate"):
        decode_any(_with_raw(_interrupt(), "x", b"\x82\xa1k\x01\xa1k\x02"))


def test_extension_types_are_a_protocol_error() -> None:
    for raw in (b"\xd4\x01\x00", b"\xd6\xff\x00\x00\x00\x00", b"\xc7\x00\x05"):
        with pytest.raises(ProtocolError):
            decode_any(_with_raw(_interrupt(), "x", raw))


def test_proto_and_nul_prefixed_keys_are_ordinary_unknown_keys() -> None:
    """Finding 5: the JS decoder rejected these; both must accept them as unknown keys."""
    assert decode_any(_pack(_interrupt(__proto__={"a": 1}))) is not None
    assert decode_any(_pack({**_interrupt(), "\0key:int": 1})) is not None


def test_leading_bom_is_kept() -> None:
    reason = "\ufeff" + "x" * 250
    msg = decode_packet(_pack({"v": 1, "t": "audio_only", "c": "x", "s": 1, "ts": 0, "r": reason}))
    assert msg is not None and getattr(msg, "reason", None) == reason


def test_sample_span_beyond_max_int_is_rejected() -> None:
    """Finding 5: JS accepted i = 2^53 - 2 with 3 samples through float rounding."""
    audio = {"v": 1, "t": "audio", "c": "x", "s": 1, "ts": 0, "i": MAX_INT - 1, "d": bytes(6)}
    with pytest.raises(ProtocolError):
        decode_any(_pack(audio))
    assert decode_any(_pack({**audio, "i": MAX_INT - 2})) is not None


def test_start_with_nonzero_seq_is_rejected() -> None:
    """Finding 5: both decoders accepted a start with s != 0, which the spec forbids."""
    start = {
        "v": 1, "t": "start", "s": 0, "ts": 0, "c": "x", "codec": "arkit-u8", "fps": 25.0,
        "ch": ["jawOpen"], "sr": 24000, "track": "avatar-audio", "at": "track", "la": 0,
    }  # fmt: skip
    assert decode_any(_pack(start)) is not None
    with pytest.raises(ProtocolError):
        decode_any(_pack({**start, "s": 1}))


def test_fps_below_one_is_rejected() -> None:
    """Finding 2: fps = 5e-324 made k / fps overflow in the receiver; the floor is 1 fps."""
    start = {
        "v": 1, "t": "start", "s": 0, "ts": 0, "c": "x", "codec": "opaque", "fps": 5e-324,
        "ch": [], "sr": 24000, "track": "avatar-audio", "at": "track", "la": 0,
    }  # fmt: skip
    for fps in (5e-324, 0.5, 0.999):
        with pytest.raises(ProtocolError):
            decode_any(_pack({**start, "fps": fps}))
    assert decode_any(_pack({**start, "fps": 1})) is not None
