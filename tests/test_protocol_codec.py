"""Encoder/decoder: round trips, strict validation, and bounded handling of hostile bytes."""

from __future__ import annotations

import dataclasses

import msgpack  # type: ignore[import-untyped]  # no type information shipped
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_strategies import messages

from avatar_relay.protocol import (
    ARKIT_52,
    HEAD_POSE,
    MAX_PACKET_BYTES,
    AnimationFrames,
    ArkitU8Codec,
    AudioData,
    ConversationStart,
    Fragment,
    Interrupt,
    Message,
    ProtocolError,
    UnsupportedVersionError,
    decode_any,
    decode_message,
    decode_packet,
    encode_fragment,
    encode_message,
    validate_message,
)

START = ConversationStart("conv-1", 0, "arkit-u8", 25.0, ("jawOpen", "headYaw"), 16000, "trk")
FRAMES = AnimationFrames("conv-1", 1, 0, (b"\x01\x02", b"\x03\x04"), 5)
BOUNDED = settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


def _wire(msg: Message, **changes: object) -> bytes:
    m = msgpack.unpackb(encode_message(msg))
    m.update(changes)
    packed: bytes = msgpack.packb(m)
    return packed


@BOUNDED
@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    data = encode_message(msg)
    decoded = decode_message(data)
    assert decoded == msg
    assert type(decoded) is type(msg)
    if len(data) <= MAX_PACKET_BYTES:
        assert decode_packet(data) == msg
    assert encode_message(decoded) == data  # encoding is deterministic


@BOUNDED
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        result = decode_any(data)
    except ProtocolError:
        return
    assert result is None or dataclasses.is_dataclass(result)


@BOUNDED
@given(messages, st.data())
def test_mutated_packets_never_crash(msg: Message, data: st.DataObject) -> None:
    packet = bytearray(encode_message(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(packet) - 1))
        packet[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    try:
        decode_message(bytes(packet[:cut]))
    except ProtocolError:
        pass


scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
msgpack_values = st.recursive(
    scalars | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=5) | st.integers(-100, 100), inner, max_size=5),
    max_leaves=20,
)  # fmt: skip


@BOUNDED
@given(
    st.dictionaries(
        st.sampled_from(
            ["v", "t", "s", "ts", "c", "f", "d", "fps", "ch", "sr", "at", "id", "i", "n"]
        ),
        msgpack_values,
    ),
    st.sampled_from(["start", "frames", "audio", "end", "interrupt", "audio_only", "idle", "frag"]),
)
def test_random_maps_are_rejected_cleanly(m: dict[str, object], t: str) -> None:
    packet = msgpack.packb({"v": 1, "t": t, **m} if "v" not in m else m)
    try:
        decode_any(packet)
    except ProtocolError:
        pass


def test_hostile_headers_fail_fast() -> None:
    nested = b"\x91" * 200_000 + b"\xc0"  # arrays nested 200k deep
    huge_array = b"\xdd\xff\xff\xff\xff"  # claims 4 billion items
    huge_bin = b"\x81\xa1d\xc6\xff\xff\xff\xff"  # claims a 4 GiB binary
    for data in (nested, huge_array, huge_bin):
        with pytest.raises(ProtocolError):
            decode_any(data)


def test_start_wire_format_is_exact() -> None:
    m = msgpack.unpackb(encode_message(START))
    assert list(m) == ["v", "t", "s", "ts", "c", "codec", "fps", "ch", "sr", "track", "at", "la"]
    assert m["v"] == 1 and m["t"] == "start" and m["ch"] == ["jawOpen", "headYaw"]
    assert b"\xa3fps\xcb" in encode_message(START)  # fps is always a float64


def test_fps_given_as_int_or_numpy_is_encoded_as_float() -> None:
    as_int = dataclasses.replace(START, fps=25)
    as_np = dataclasses.replace(START, fps=np.float32(25.0), seq=np.int64(0))  # type: ignore[arg-type]
    assert encode_message(as_int) == encode_message(START) == encode_message(as_np)


def test_frame_indexes_accept_numpy_integers() -> None:
    msg = dataclasses.replace(FRAMES, first_frame=np.int32(7))  # type: ignore[arg-type]
    decoded = decode_packet(encode_message(msg))
    assert isinstance(decoded, AnimationFrames) and decoded.first_frame == 7


@pytest.mark.parametrize(
    "msg",
    [
        dataclasses.replace(FRAMES, seq=-1),
        dataclasses.replace(FRAMES, seq=True),
        dataclasses.replace(FRAMES, conversation_id=""),
        dataclasses.replace(FRAMES, conversation_id="x" * 65),
        dataclasses.replace(FRAMES, frames=()),
        dataclasses.replace(FRAMES, frames=(b"",)),
        dataclasses.replace(FRAMES, frames=("text",)),  # type: ignore[arg-type]
        dataclasses.replace(FRAMES, frames=(b"x",) * 1025),
        dataclasses.replace(START, fps=0.0),
        dataclasses.replace(START, fps=240.01),
        dataclasses.replace(START, fps=float("inf")),
        dataclasses.replace(START, sample_rate=44000),
        dataclasses.replace(START, audio_transport="udp"),  # type: ignore[arg-type]
        dataclasses.replace(START, audio_track=""),
        dataclasses.replace(START, channels=()),
        dataclasses.replace(START, channels=("jawOpen", "jawOpen")),
        dataclasses.replace(START, lookahead_ms=60_001),
        dataclasses.replace(START, codec=""),
        AudioData("c", 0, 0, b"\x00\x01\x02"),
        AudioData("c", 0, 0, b""),
        Interrupt("c", 2**53),
    ],
    ids=repr,
)
def test_encoder_refuses_invalid_messages(msg: Message) -> None:
    with pytest.raises(ProtocolError):
        validate_message(msg)
    with pytest.raises(ProtocolError):
        encode_message(msg)


def test_encoder_refuses_non_messages() -> None:
    with pytest.raises(ProtocolError, match="not a protocol message"):
        encode_message("hello")  # type: ignore[arg-type]


def test_audio_transport_data_needs_no_track() -> None:
    msg = dataclasses.replace(START, audio_transport="data", audio_track="")
    assert decode_packet(encode_message(msg)) == msg


def test_unsupported_version_is_a_protocol_error_with_the_version() -> None:
    with pytest.raises(UnsupportedVersionError) as info:
        decode_packet(_wire(FRAMES, v=7))
    assert info.value.version == 7
    assert isinstance(info.value, ProtocolError) and isinstance(info.value, ValueError)


def test_unknown_version_is_rejected_even_for_unknown_types() -> None:
    with pytest.raises(UnsupportedVersionError):
        decode_packet(msgpack.packb({"v": 2, "t": "future"}))


def test_unknown_type_and_keys_are_ignored() -> None:
    assert decode_packet(msgpack.packb({"v": 1, "t": "future", "anything": [1, {"a": 2}]})) is None
    assert decode_packet(_wire(FRAMES, extra={"nested": True}, z=None)) == FRAMES


def test_oversized_packet_is_rejected_but_message_decodes() -> None:
    big = AnimationFrames("c", 0, 0, (bytes(MAX_PACKET_BYTES),))
    data = encode_message(big)
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_packet(data)
    assert decode_message(data) == big


def test_fragments_need_a_reassembler() -> None:
    packet = encode_fragment(Fragment(1, 0, 2, b"abc"))
    assert decode_any(packet) == Fragment(1, 0, 2, b"abc")
    with pytest.raises(ProtocolError, match="Reassembler"):
        decode_packet(packet)
    with pytest.raises(ProtocolError):
        encode_fragment(Fragment(1, 2, 2, b"abc"))
    with pytest.raises(ProtocolError):
        encode_fragment(Fragment(1, 0, 2, b""))


def test_non_bytes_input_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_packet("text")  # type: ignore[arg-type]
    as_bytearray = bytearray(encode_message(FRAMES))
    assert decode_packet(as_bytearray) == FRAMES  # type: ignore[arg-type]


# -- the arkit-u8 codec ---------------------------------------------------------------------------


def test_arkit_quantization_table() -> None:
    codec = ArkitU8Codec(("jawOpen", "mouthClose", "headYaw", "headPitch", "headRoll"))
    assert codec.encode([0.0, 1.0, -1.0, 1.0, 0.0]) == bytes([0, 255, 0, 255, 128])
    assert codec.encode([0.5, 2.0, -3.0, float("nan"), 0.5]) == bytes([128, 255, 0, 128, 191])
    np.testing.assert_allclose(
        codec.decode(bytes([0, 255, 0, 255, 128])), [0, 1, -1, 1, 1 / 255], atol=1e-6
    )


@settings(max_examples=200, deadline=1000)
@given(st.lists(st.floats(0.0, 1.0), min_size=55, max_size=55))
def test_arkit_round_trip_error_is_half_a_step(weights: list[float]) -> None:
    codec = ArkitU8Codec(ARKIT_52 + HEAD_POSE)
    w = np.array(weights, dtype=np.float32)
    w[-3:] = w[-3:] * 2 - 1
    decoded = codec.decode(codec.encode(w))
    step = np.where(np.arange(55) >= 52, 2 / 255, 1 / 255)
    assert np.all(np.abs(decoded - w) <= step / 2 + 1e-6)


def test_arkit_codec_rejects_bad_layouts_and_payloads() -> None:
    with pytest.raises(ValueError):
        ArkitU8Codec(())
    with pytest.raises(ValueError):
        ArkitU8Codec(("jawOpen", "notABlendshape"))
    with pytest.raises(ValueError):
        ArkitU8Codec(("jawOpen", "jawOpen"))
    codec = ArkitU8Codec(("jawOpen",))
    with pytest.raises(ValueError):
        codec.encode([0.1, 0.2])
    with pytest.raises(ValueError):
        codec.decode(b"\x00\x00")
