"""Encoder and strict decoder of protocol v1 messages (one msgpack map per packet).

Encoding and decoding share one validation path: :func:`encode_message` builds the wire map
and checks it with the same readers the decoder uses, so the relay can never emit a message
that a conforming receiver would reject. Decoding is bounded by the input size and by msgpack
limits, and either returns a complete value or raises :class:`ProtocolError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import msgpack  # type: ignore[import-untyped]  # msgpack ships no type information
import numpy as np

from .blendshapes import ARKIT_CODEC
from .constants import (
    MAX_MESSAGE_BYTES,
    MAX_PACKET_BYTES,
    PROTOCOL_VERSION,
    SUPPORTED_SAMPLE_RATES,
)
from .errors import ProtocolError, UnsupportedVersionError
from .limits import (
    MAX_CHANNELS,
    MAX_CONVERSATION_ID_CHARS,
    MAX_DEPTH,
    MAX_FPS,
    MAX_FRAGMENTS,
    MAX_FRAMES_PER_MESSAGE,
    MAX_INT,
    MAX_LOOKAHEAD_MS,
    MAX_MAP_ENTRIES,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    MIN_FPS,
)
from .messages import (
    AnimationFrames,
    AudioData,
    AudioOnly,
    AudioTransport,
    ConversationEnd,
    ConversationStart,
    Idle,
    Interrupt,
    Message,
)

T_START: Final = "start"
T_FRAMES: Final = "frames"
T_AUDIO: Final = "audio"
T_END: Final = "end"
T_INTERRUPT: Final = "interrupt"
T_AUDIO_ONLY: Final = "audio_only"
T_IDLE: Final = "idle"
T_FRAG: Final = "frag"

MESSAGE_TYPES: Final[Mapping[type, str]] = {
    ConversationStart: T_START,
    AnimationFrames: T_FRAMES,
    AudioData: T_AUDIO,
    ConversationEnd: T_END,
    Interrupt: T_INTERRUPT,
    AudioOnly: T_AUDIO_ONLY,
    Idle: T_IDLE,
}
"""Wire type name (key ``t``) of every message class."""

_TRANSPORTS: Final[Mapping[str, AudioTransport]] = {
    "track": "track",
    "data": "data",
    "both": "both",
}

_Wire = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Fragment:
    """One slice of an encoded message too large for a single packet (``t="frag"``)."""

    message_id: int
    """Sender-unique id shared by every fragment of one message (key ``id``)."""
    index: int
    """Position of this slice, 0..count-1 (key ``i``)."""
    count: int
    """Number of fragments of the message (key ``n``)."""
    data: bytes
    """Slice of the encoded message bytes (key ``d``)."""


# -- field readers: shared by encoding (validation) and decoding ---------------------------------


def _get(m: _Wire, key: str) -> object:
    try:
        return m[key]
    except KeyError:
        raise ProtocolError(f"missing key {key!r}") from None


def _int(m: _Wire, key: str, lo: int = 0, hi: int = MAX_INT) -> int:
    value = _get(m, key)
    if type(value) is not int:  # bool is an int subclass and is not accepted
        raise ProtocolError(f"key {key!r} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ProtocolError(f"key {key!r} = {value} is outside [{lo}, {hi}]")
    return value


def _str(m: _Wire, key: str, lo: int, hi: int) -> str:
    value = _get(m, key)
    if type(value) is not str:
        raise ProtocolError(f"key {key!r} must be a string, got {type(value).__name__}")
    if not lo <= len(value) <= hi:
        raise ProtocolError(f"key {key!r} must have {lo}..{hi} characters, has {len(value)}")
    return value


def _bin(m: _Wire, key: str, lo: int = 0) -> bytes:
    value = _get(m, key)
    if type(value) is not bytes:
        raise ProtocolError(f"key {key!r} must be binary, got {type(value).__name__}")
    if len(value) < lo:
        raise ProtocolError(f"key {key!r} must have at least {lo} bytes")
    return value


def _seq(m: _Wire, key: str, hi: int) -> list[object] | tuple[object, ...]:
    value = _get(m, key)
    if not isinstance(value, list | tuple):
        raise ProtocolError(f"key {key!r} must be an array, got {type(value).__name__}")
    if len(value) > hi:
        raise ProtocolError(f"key {key!r} has {len(value)} items, at most {hi} allowed")
    return value


def _frames(m: _Wire, lo: int) -> tuple[bytes, ...]:
    items = _seq(m, "d", MAX_FRAMES_PER_MESSAGE)
    if len(items) < lo:
        raise ProtocolError("key 'd' must hold at least one frame")
    for item in items:
        if type(item) is not bytes or not item:
            raise ProtocolError("every frame in 'd' must be non-empty binary")
    return tuple(items)  # type: ignore[arg-type]  # checked item by item above


def _channels(m: _Wire) -> tuple[str, ...]:
    items = _seq(m, "ch", MAX_CHANNELS)
    for item in items:
        if type(item) is not str or not 1 <= len(item) <= MAX_NAME_CHARS:
            raise ProtocolError(f"channel names must be strings of 1..{MAX_NAME_CHARS} characters")
    if len(set(items)) != len(items):
        raise ProtocolError("duplicate channel names in 'ch'")
    return tuple(items)  # type: ignore[arg-type]  # checked item by item above


def _fps(m: _Wire) -> float:
    value = _get(m, "fps")
    if type(value) not in (float, int):
        raise ProtocolError(f"key 'fps' must be a number, got {type(value).__name__}")
    fps = float(value)  # type: ignore[arg-type]  # int or float, checked above
    if not (math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        raise ProtocolError(f"fps {fps} is outside [{MIN_FPS}, {MAX_FPS}]")
    return fps


def _cid(m: _Wire) -> str:
    return _str(m, "c", 1, MAX_CONVERSATION_ID_CHARS)


def _check_frame_span(first: int, frames: tuple[bytes, ...]) -> None:
    if first + len(frames) - 1 > MAX_INT:
        raise ProtocolError("frame indexes exceed the integer range")


def _check_arkit(codec: str, channels: tuple[str, ...], frames: tuple[bytes, ...] = ()) -> None:
    if codec != ARKIT_CODEC:
        return
    if not channels:
        raise ProtocolError("codec arkit-u8 needs at least one channel")
    if any(len(f) != len(channels) for f in frames):
        raise ProtocolError(f"arkit-u8 frames must have {len(channels)} bytes (one per channel)")


# -- per-type readers ------------------------------------------------------------------------------


def _read_start(m: _Wire) -> ConversationStart:
    codec = _str(m, "codec", 1, MAX_NAME_CHARS)
    channels = _channels(m)
    _check_arkit(codec, channels)
    transport = _get(m, "at")
    if type(transport) is not str or transport not in _TRANSPORTS:
        raise ProtocolError(f"unknown audio transport {transport!r}")
    track = _str(m, "track", 0, MAX_TEXT_CHARS)
    if transport != "data" and not track:
        raise ProtocolError(f"audio transport {transport!r} needs a track name")
    rate = _int(m, "sr")
    if rate not in SUPPORTED_SAMPLE_RATES:
        raise ProtocolError(f"unsupported sample rate {rate}")
    return ConversationStart(
        conversation_id=_cid(m),
        seq=_int(m, "s", hi=0),  # a conversation's start is always its message 0
        codec=codec,
        fps=_fps(m),
        channels=channels,
        sample_rate=rate,
        audio_track=track,
        audio_transport=_TRANSPORTS[transport],
        lookahead_ms=_int(m, "la", hi=MAX_LOOKAHEAD_MS),
        sent_at_us=_int(m, "ts"),
    )


def _read_frames(m: _Wire) -> AnimationFrames:
    first = _int(m, "f")
    frames = _frames(m, lo=1)
    _check_frame_span(first, frames)
    return AnimationFrames(
        conversation_id=_cid(m),
        seq=_int(m, "s"),
        first_frame=first,
        frames=frames,
        sent_at_us=_int(m, "ts"),
    )


def _read_audio(m: _Wire) -> AudioData:
    pcm = _bin(m, "d", lo=2)
    if len(pcm) % 2:
        raise ProtocolError("audio 'd' must hold whole s16le samples (even byte count)")
    first = _int(m, "i")
    if first + len(pcm) // 2 - 1 > MAX_INT:
        raise ProtocolError("sample indexes exceed the integer range")
    return AudioData(
        conversation_id=_cid(m),
        seq=_int(m, "s"),
        first_sample=first,
        pcm=pcm,
        sent_at_us=_int(m, "ts"),
    )


def _read_end(m: _Wire) -> ConversationEnd:
    return ConversationEnd(
        conversation_id=_cid(m),
        seq=_int(m, "s"),
        frame_count=_int(m, "n"),
        audio_samples=_int(m, "ns"),
        sent_at_us=_int(m, "ts"),
    )


def _read_interrupt(m: _Wire) -> Interrupt:
    return Interrupt(conversation_id=_cid(m), seq=_int(m, "s"), sent_at_us=_int(m, "ts"))


def _read_audio_only(m: _Wire) -> AudioOnly:
    return AudioOnly(
        conversation_id=_cid(m),
        seq=_int(m, "s"),
        reason=_str(m, "r", 0, MAX_TEXT_CHARS),
        sent_at_us=_int(m, "ts"),
    )


def _read_idle(m: _Wire) -> Idle:
    codec = _str(m, "codec", 1, MAX_NAME_CHARS)
    channels = _channels(m)
    first = _int(m, "f")
    frames = _frames(m, lo=0)
    _check_arkit(codec, channels, frames)
    _check_frame_span(first, frames)
    return Idle(
        seq=_int(m, "s"),
        codec=codec,
        fps=_fps(m),
        channels=channels,
        first_frame=first,
        frames=frames,
        sent_at_us=_int(m, "ts"),
    )


def _read_fragment(m: _Wire) -> Fragment:
    count = _int(m, "n", lo=1, hi=MAX_FRAGMENTS)
    return Fragment(
        message_id=_int(m, "id"),
        index=_int(m, "i", hi=count - 1),
        count=count,
        data=_bin(m, "d", lo=1),
    )


_READERS: Final[Mapping[str, Callable[[_Wire], Message | Fragment]]] = {
    T_START: _read_start,
    T_FRAMES: _read_frames,
    T_AUDIO: _read_audio,
    T_END: _read_end,
    T_INTERRUPT: _read_interrupt,
    T_AUDIO_ONLY: _read_audio_only,
    T_IDLE: _read_idle,
    T_FRAG: _read_fragment,
}


# -- wire maps -------------------------------------------------------------------------------------


def _num(value: object) -> object:
    """Plain float for any real number (numpy scalars included); other values pass to the check."""
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return float(value)
    return value


def _whole(value: object) -> object:
    """Plain int for numpy integers, so callers may pass array elements as indexes."""
    return int(value) if isinstance(value, np.integer) else value


def _head(t: str, seq: int, sent_at_us: int) -> dict[str, object]:
    return {"v": PROTOCOL_VERSION, "t": t, "s": _whole(seq), "ts": _whole(sent_at_us)}


def _to_wire(msg: Message) -> dict[str, object]:
    """The wire map of ``msg``; key order is fixed so encoding is deterministic."""
    if isinstance(msg, Idle):
        m = _head(T_IDLE, msg.seq, msg.sent_at_us)
        m.update(
            codec=msg.codec,
            fps=_num(msg.fps),
            ch=msg.channels,
            f=_whole(msg.first_frame),
            d=msg.frames,
        )
        return m
    try:
        t = MESSAGE_TYPES[type(msg)]
    except KeyError:
        raise ProtocolError(f"not a protocol message: {type(msg).__name__}") from None
    m = _head(t, msg.seq, msg.sent_at_us)
    m["c"] = msg.conversation_id
    if isinstance(msg, ConversationStart):
        m.update(
            codec=msg.codec,
            fps=_num(msg.fps),
            ch=msg.channels,
            sr=_whole(msg.sample_rate),
            track=msg.audio_track,
            at=msg.audio_transport,
            la=_whole(msg.lookahead_ms),
        )
    elif isinstance(msg, AnimationFrames):
        m.update(f=_whole(msg.first_frame), d=msg.frames)
    elif isinstance(msg, AudioData):
        m.update(i=_whole(msg.first_sample), d=msg.pcm)
    elif isinstance(msg, ConversationEnd):
        m.update(n=_whole(msg.frame_count), ns=_whole(msg.audio_samples))
    elif isinstance(msg, AudioOnly):
        m["r"] = msg.reason
    return m


def _pack(m: Mapping[str, object]) -> bytes:
    packed: bytes = msgpack.packb(m, use_bin_type=True)
    return packed


def validate_message(msg: Message) -> None:
    """Raise :class:`ProtocolError` if ``msg`` has a value a receiver would reject."""
    m = _to_wire(msg)
    _READERS[str(m["t"])](m)


def encode_message(msg: Message) -> bytes:
    """Encode one message as a msgpack map (may exceed one packet; see ``Packetizer``)."""
    m = _to_wire(msg)
    _READERS[str(m["t"])](m)
    return _pack(m)


def encode_fragment(fragment: Fragment) -> bytes:
    """Encode one ``frag`` packet."""
    m: dict[str, object] = {
        "v": PROTOCOL_VERSION,
        "t": T_FRAG,
        "id": fragment.message_id,
        "i": fragment.index,
        "n": fragment.count,
        "d": fragment.data,
    }
    _read_fragment(m)
    return _pack(m)


# -- decoding --------------------------------------------------------------------------------------


_SCALARS: Final = frozenset({str, bytes, int, float, bool, type(None)})


def _map_pairs(pairs: list[tuple[object, object]]) -> dict[str, object]:
    """Every map, at any depth: string keys only, each key once."""
    m: dict[str, object] = {}
    for key, value in pairs:
        if type(key) is not str:
            raise ProtocolError("map keys must be strings")
        if key in m:
            raise ProtocolError(f"duplicate map key {key!r}")
        m[key] = value
    return m


def _no_ext(code: int, data: bytes) -> object:
    raise ProtocolError(f"msgpack extension type {code} is not allowed")


def _check_values(obj: dict[str, object]) -> None:
    """Arrays and maps nest at most MAX_DEPTH deep; values are plain msgpack types."""
    stack: list[tuple[dict[str, object] | list[object], int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        for item in value.values() if type(value) is dict else value:
            kind = type(item)
            if kind is dict or kind is list:
                if depth >= MAX_DEPTH:
                    raise ProtocolError(f"values nest deeper than {MAX_DEPTH} levels")
                stack.append((item, depth + 1))  # type: ignore[arg-type]  # dict or list
            elif kind not in _SCALARS:
                raise ProtocolError(f"{kind.__name__} values are not allowed")


def _unpack(data: bytes, max_bytes: int) -> _Wire:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"packet must be bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise ProtocolError(f"packet of {len(data)} bytes exceeds {max_bytes}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            object_pairs_hook=_map_pairs,
            ext_hook=_no_ext,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_ext_len=max_bytes,
            max_array_len=MAX_FRAMES_PER_MESSAGE,
            max_map_len=MAX_MAP_ENTRIES,
        )
    except ProtocolError:
        raise
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        # msgpack reports truncation, trailing bytes, bad UTF-8, limits and unhashable keys
        # with several exception types; all of them mean "not a packet".
        raise ProtocolError(f"undecodable msgpack: {exc}") from exc
    if type(obj) is not dict:
        raise ProtocolError(f"packet must be a msgpack map, got {type(obj).__name__}")
    _check_values(obj)
    return obj


def _decode(data: bytes, max_bytes: int) -> Message | Fragment | None:
    m = _unpack(data, max_bytes)
    version = _get(m, "v")
    if type(version) is not int:
        raise ProtocolError(f"key 'v' must be an integer, got {type(version).__name__}")
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersionError(version)
    t = _get(m, "t")
    if type(t) is not str:
        raise ProtocolError(f"key 't' must be a string, got {type(t).__name__}")
    reader = _READERS.get(t)
    if reader is None:
        return None  # an unknown message type: ignored for forward compatibility
    return reader(m)


def decode_any(data: bytes) -> Message | Fragment | None:
    """Decode one packet of at most MAX_PACKET_BYTES: a message, a fragment, or None.

    None means a well-formed packet of an unknown type, which receivers ignore.
    """
    return _decode(data, MAX_PACKET_BYTES)


def decode_packet(data: bytes) -> Message | None:
    """Decode one unfragmented packet; fragments must go through a ``Reassembler``."""
    result = _decode(data, MAX_PACKET_BYTES)
    if isinstance(result, Fragment):
        raise ProtocolError("fragment packet: feed packets to a Reassembler")
    return result


def decode_message(data: bytes) -> Message | None:
    """Decode a reassembled message of at most MAX_MESSAGE_BYTES (fragments may not nest)."""
    result = _decode(data, MAX_MESSAGE_BYTES)
    if isinstance(result, Fragment):
        raise ProtocolError("a fragment may not carry another fragment")
    return result
