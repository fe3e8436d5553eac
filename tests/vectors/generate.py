"""Generate the protocol v1 test vectors: exact packet bytes plus a JSON description.

Run ``python tests/vectors/generate.py`` to rewrite ``tests/vectors/*.bin`` and ``vectors.json``.
The output is deterministic; tests/test_protocol_vectors.py checks that the committed files
equal what this script produces and that the decoder agrees with the JSON. Every client
implementation (Python, JavaScript, ...) is tested against the same files.

JSON format: ``{"protocol_version", "max_packet_bytes", "vectors": [...]}``; each vector has
``name``, ``description``, ``files`` (packets to feed, in order, to one fresh receiver),
``expect`` (``ok``: the last packet completes ``message``; ``ignored``: no message and no
error; ``error``: the last packet is rejected, ``error`` says ``protocol`` or
``unsupported_version``). ``message`` uses the wire keys without ``v``; binary values (``d``)
are lowercase hex strings, ``d`` of ``frames``/``idle`` is a list of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no type information shipped

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from avatar_relay.protocol import (  # noqa: E402  # the repository root is put on sys.path first
    ARKIT_52,
    HEAD_POSE,
    MAX_PACKET_BYTES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    AnimationFrames,
    ArkitU8Codec,
    AudioData,
    AudioOnly,
    ConversationEnd,
    ConversationStart,
    Idle,
    Interrupt,
    Message,
    Packetizer,
    encode_message,
)

HERE = Path(__file__).resolve().parent
JSON_NAME = "vectors.json"

FIELD_KEYS = {
    "conversation_id": "c",
    "seq": "s",
    "sent_at_us": "ts",
    "codec": "codec",
    "fps": "fps",
    "channels": "ch",
    "sample_rate": "sr",
    "audio_track": "track",
    "audio_transport": "at",
    "lookahead_ms": "la",
    "first_frame": "f",
    "frames": "d",
    "first_sample": "i",
    "pcm": "d",
    "frame_count": "n",
    "audio_samples": "ns",
    "reason": "r",
}
"""Dataclass field -> wire key, for the language-neutral JSON form of a message."""

CID = "c0ffee00-talk-01"  # 16 characters, like the relay's conversation ids
TS = 1_732_000_000_123_456  # sender wall clock in microseconds
SPEAKING = (
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp", "browDownLeft", "browDownRight",
    "cheekPuff", "tongueOut",
) + HEAD_POSE  # fmt: skip
"""28 channels a speaking avatar animates (25 face blendshapes and head pose)."""


def message_json(msg: Message) -> dict[str, Any]:
    """The JSON description of a message: wire keys, binary as hex."""
    out: dict[str, Any] = {"t": MESSAGE_TYPES[type(msg)]}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, tuple):
            value = [v.hex() if isinstance(v, bytes) else v for v in value]
        elif f.name == "fps":
            value = float(value)
        out[FIELD_KEYS[f.name]] = value
    return out


def _pack(m: object) -> bytes:
    packed: bytes = msgpack.packb(m, use_bin_type=True)
    return packed


def _wire(msg: Message, **changes: Any) -> dict[Any, Any]:
    """The wire map of a valid message, then altered (a value of None deletes the key)."""
    m: dict[Any, Any] = msgpack.unpackb(encode_message(msg), raw=False)
    for key, value in changes.items():
        if value is None:
            m.pop(key, None)
        else:
            m[key] = value
    return m


def _with_raw(m: dict[Any, Any], key: str, raw_value: bytes) -> bytes:
    """``m`` packed with one more entry, whose value is given as raw msgpack bytes."""
    body = _pack(m)
    assert 0x80 <= body[0] < 0x8F, "a fixmap of at most 14 entries"
    return bytes([body[0] + 1]) + body[1:] + _pack(key) + raw_value


def _arkit_frames(n: int, phase: float = 0.0) -> tuple[bytes, ...]:
    codec = ArkitU8Codec(SPEAKING)
    frames = []
    for k in range(n):
        weights = [((j * 37 + k * 11) % 101) / 100.0 for j in range(len(SPEAKING))]
        weights[-3:] = [((k + phase) % 9 - 4) / 4.0, -0.5, 0.25]  # head pose in [-1, 1]
        frames.append(codec.encode(weights))
    return tuple(frames)


def _pcm(samples: int) -> bytes:
    return b"".join(
        ((k * 997) % 65536 - 32768).to_bytes(2, "little", signed=True) for k in range(samples)
    )


class _Builder:
    def __init__(self) -> None:
        self.vectors: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}

    def add(
        self,
        name: str,
        description: str,
        packets: list[bytes],
        expect: str,
        message: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        number = len(self.vectors) + 1
        stem = f"{number:02d}_{name}"
        names = (
            [f"{stem}.bin"]
            if len(packets) == 1
            else [f"{stem}.{i}.bin" for i in range(len(packets))]
        )
        for file, packet in zip(names, packets, strict=True):
            self.files[file] = packet
        vector: dict[str, Any] = {
            "name": name,
            "description": description,
            "files": names,
            "expect": expect,
        }
        if message is not None:
            vector["message"] = message
        if error is not None:
            vector["error"] = error
        self.vectors.append(vector)

    def ok(self, name: str, description: str, msg: Message) -> None:
        packets = Packetizer().packetize(msg)
        self.add(name, description, packets, "ok", message_json(msg))

    def raw_ok(self, name: str, description: str, m: dict[Any, Any], msg: Message) -> None:
        self.add(name, description, [_pack(m)], "ok", message_json(msg))

    def error(
        self, name: str, description: str, packets: list[bytes], kind: str = "protocol"
    ) -> None:
        self.add(name, description, packets, "error", error=kind)

    def ignored(self, name: str, description: str, packets: list[bytes]) -> None:
        self.add(name, description, packets, "ignored")


def build() -> tuple[dict[str, Any], dict[str, bytes]]:
    """All vectors: the JSON document and the packet files by name."""
    b = _Builder()
    start = ConversationStart(
        conversation_id=CID,
        seq=0,
        codec="arkit-u8",
        fps=25.0,
        channels=SPEAKING,
        sample_rate=16000,
        audio_track="avatar-audio",
        audio_transport="track",
        lookahead_ms=120,
        sent_at_us=TS,
    )
    frames = AnimationFrames(CID, 1, 0, _arkit_frames(5), TS + 200_000)
    audio = AudioData(CID, 2, 1600, _pcm(160), TS + 210_000)
    idle = Idle(7, "arkit-u8", 25.0, HEAD_POSE, 250, (b"\x80\x70\x90", b"\x81\x71\x8f"), TS)

    # -- every message type, as the Python encoder writes it --
    b.ok("start_arkit", "conversation start, arkit-u8, 28 channels, audio on the track", start)
    b.ok(
        "start_opaque_both",
        "conversation start with an opaque vendor codec (no channels), audio on track and data",
        ConversationStart(CID, 0, "spatius", 25.0, (), 24000, "avatar-audio", "both", 0, TS),
    )
    b.ok(
        "start_data_only",
        "conversation start with audio only as data messages (empty track name allowed)",
        ConversationStart("x", 0, "arkit-u8", 30.0, ARKIT_52, 48000, "", "data", 0, 0),
    )
    b.ok("frames_arkit", "five arkit-u8 frames 0..4", frames)
    b.ok(
        "frames_opaque",
        "two opaque frames passed through unchanged",
        AnimationFrames(CID, 3, 17, (bytes(range(256)) * 2, b"\x08\x01\x12\x00"), TS),
    )
    b.ok("audio", "160 samples of PCM s16le mono starting at sample 1600", audio)
    b.ok(
        "end", "conversation end: 57 frames, 36480 samples", ConversationEnd(CID, 9, 57, 36480, TS)
    )
    b.ok("interrupt", "conversation interrupted", Interrupt(CID, 4, TS))
    b.ok("audio_only", "switch to audio-only", AudioOnly(CID, 5, "motion_failed", TS))
    b.ok("idle_frames", "idle message with two head-pose frames", idle)
    b.ok("idle_heartbeat", "idle heartbeat without frames", Idle(8, "arkit-u8", 25.0, HEAD_POSE, 0))
    b.ok(
        "unicode_id_64",
        "conversation id of 64 code points (multi-byte UTF-8)",
        Interrupt("\u00e9" * 63 + "\U0001f600", 0, 0),
    )
    b.ok("max_int", "largest wire integer 2^53-1", ConversationEnd(CID, 2**53 - 1, 0, 2**53 - 1, 0))

    # -- forms another encoder may write, which a decoder must accept --
    b.raw_ok(
        "fps_integer",
        "fps encoded as a msgpack integer",
        _wire(start, fps=25),
        start,
    )
    b.raw_ok(
        "extra_keys",
        "unknown keys (nested map, array, nil) are ignored",
        _wire(frames, zz={"a": [1, 2]}, x=[None, True, 1.5], y=None) | {"y": None},
        frames,
    )
    b.raw_ok(
        "key_order",
        "keys in another order",
        dict(reversed(list(_wire(audio).items()))),
        audio,
    )

    # -- fragmentation --
    big = AnimationFrames(CID, 6, 40, (bytes(k % 251 for k in range(40_000)),), TS)
    packets = Packetizer(first_message_id=3).packetize(big)
    assert len(packets) == 3
    b.add(
        "fragmented", "one 40000-byte opaque frame in 3 fragments", packets, "ok", message_json(big)
    )
    single = _pack({"v": 1, "t": "frag", "id": 9, "i": 0, "n": 1, "d": encode_message(idle)})
    b.add("fragment_single", "a message in one fragment (n=1)", [single], "ok", message_json(idle))

    # -- ignored --
    b.ignored(
        "unknown_type",
        "unknown message type",
        [_pack({"v": 1, "t": "gesture", "s": 1, "g": "wave"})],
    )
    b.ignored("unknown_type_bare", "unknown type with no other keys", [_pack({"v": 1, "t": "x"})])
    b.ignored("orphan_fragment", "fragment 1 of 3 without fragment 0", packets[1:2])

    # -- errors --
    b.error("version_2", "unsupported version", [_pack(_wire(frames, v=2))], "unsupported_version")
    b.error(
        "version_0", "unsupported version 0", [_pack(_wire(frames, v=0))], "unsupported_version"
    )
    b.error("version_missing", "no version key", [_pack(_wire(frames, v=None))])
    b.error("version_string", "version as a string", [_pack(_wire(frames, v="1"))])
    b.error("truncated", "start packet cut short", [encode_message(start)[:-7]])
    b.error("garbage", "not msgpack (reserved byte 0xc1)", [b"\xc1\x00\x01"])
    b.error("empty", "zero bytes", [b""])
    b.error(
        "trailing_bytes",
        "a valid packet followed by more bytes",
        [encode_message(frames) + b"\x00"],
    )
    b.error("not_a_map", "an array instead of a map", [_pack([1, "frames"])])
    b.error("int_key", "a non-string top-level key", [_pack({**_wire(audio), 7: "x"})])
    b.error("type_not_string", "t as an integer", [_pack(_wire(audio, t=3))])
    b.error("missing_key", "frames without f", [_pack(_wire(frames, f=None))])
    b.error("seq_string", "s as a string", [_pack(_wire(frames, s="1"))])
    b.error("seq_bool", "s as a boolean", [_pack(_wire(frames, s=True))])
    b.error(
        "pcm_as_string", "audio d as a string instead of binary", [_pack(_wire(audio, d="abcd"))]
    )
    b.error(
        "frames_not_array",
        "frames d as binary instead of an array",
        [_pack(_wire(frames, d=b"\x01"))],
    )
    b.error("channels_not_array", "ch as a string", [_pack(_wire(start, ch="jawOpen"))])
    b.error("negative_frame", "negative first frame index", [_pack(_wire(frames, f=-1))])
    b.error("negative_sample", "negative first sample index", [_pack(_wire(audio, i=-5))])
    b.error("int_too_large", "seq above 2^53-1", [_pack(_wire(frames, s=2**53))])
    b.error("fps_zero", "fps 0", [_pack(_wire(start, fps=0.0))])
    b.error("fps_too_high", "fps 240.5", [_pack(_wire(start, fps=240.5))])
    b.error("fps_nan", "fps NaN", [_pack(_wire(start, fps=float("nan")))])
    b.error("sample_rate", "unsupported sample rate 12345", [_pack(_wire(start, sr=12345))])
    b.error("cid_empty", "empty conversation id", [_pack(_wire(frames, c=""))])
    b.error("cid_too_long", "conversation id of 65 characters", [_pack(_wire(frames, c="a" * 65))])
    b.error("transport_unknown", "unknown audio transport", [_pack(_wire(start, at="udp"))])
    b.error(
        "track_missing", "audio on the track but no track name", [_pack(_wire(start, track=""))]
    )
    b.error(
        "duplicate_channels",
        "a channel named twice",
        [_pack(_wire(start, ch=["jawOpen", "jawOpen"]))],
    )
    b.error("arkit_no_channels", "arkit-u8 without channels", [_pack(_wire(start, ch=[]))])
    b.error("frames_empty", "frames message without frames", [_pack(_wire(frames, d=[]))])
    b.error("frame_empty", "a zero-length frame payload", [_pack(_wire(frames, d=[b"\x01", b""]))])
    b.error(
        "too_many_frames", "1025 frames in one message", [_pack(_wire(frames, d=[b"\x01"] * 1025))]
    )
    b.error(
        "idle_frame_length",
        "arkit-u8 idle frame of the wrong length",
        [_pack(_wire(idle, d=[b"\x01"]))],
    )
    b.error("pcm_odd", "audio with an odd byte count", [_pack(_wire(audio, d=b"\x00\x01\x02"))])
    b.error(
        "oversized",
        f"a valid message in one packet of more than {MAX_PACKET_BYTES} bytes",
        [encode_message(AnimationFrames(CID, 1, 0, (bytes(MAX_PACKET_BYTES),)))],
    )
    b.error(
        "fragment_count_changes",
        "fragment 1 declares a different count than fragment 0",
        [packets[0], _pack({**msgpack.unpackb(packets[1]), "n": 4})],
    )
    b.error("fragment_skipped", "fragment 2 follows fragment 0", [packets[0], packets[2]])
    b.error(
        "fragment_index_range",
        "fragment index not below the count",
        [_pack({"v": 1, "t": "frag", "id": 1, "i": 2, "n": 2, "d": b"\x00"})],
    )
    nested = _pack({"v": 1, "t": "frag", "id": 2, "i": 0, "n": 1, "d": single})
    b.error("fragment_nested", "a fragment whose message is itself a fragment", [nested])
    b.error(
        "fragment_garbage",
        "fragments that reassemble to bytes that are not msgpack",
        [_pack({"v": 1, "t": "frag", "id": 4, "i": 0, "n": 1, "d": b"\xc1\xc1"})],
    )

    # -- issue 14: rules a spec-only client had to guess ------------------------------------
    interrupt = Interrupt(CID, 4, TS)
    deep_ok = _with_raw(_wire(interrupt), "x", b"\x91" * 7 + b"\x00")
    b.add(
        "depth_8",
        "an unknown key holding arrays nested to depth 8 (the packet map is depth 1)",
        [deep_ok], "ok", message_json(interrupt),
    )  # fmt: skip
    b.error(
        "depth_9",
        "arrays nested one level deeper than the limit of 8",
        [_with_raw(_wire(interrupt), "x", b"\x91" * 8 + b"\x00")],
    )
    b.error(
        "depth_deep_maps",
        "5000 nested maps in 15 KB (a recursion bomb)",
        [_with_raw(_wire(interrupt), "x", b"\x81\xa1k" * 5000 + b"\x00")],
    )
    b.error(
        "nested_int_key",
        "a non-string key in a nested map (keys are strings at every depth)",
        [_with_raw(_wire(interrupt), "x", b"\x81\x01\x02")],
    )
    b.error("duplicate_key", "the key s twice", [_with_raw(_wire(interrupt), "s", _pack(5))])
    b.error(
        "nested_duplicate_key",
        "a nested map with a key twice",
        [_with_raw(_wire(interrupt), "x", b"\x82\xa1k\x01\xa1k\x02")],
    )
    b.error(
        "extension_type",
        "a msgpack extension value (fixext 1) in an unknown key",
        [_with_raw(_wire(interrupt), "x", b"\xd4\x01\x00")],
    )
    b.error(
        "timestamp_extension",
        "a msgpack timestamp (extension -1) in an unknown key",
        [_with_raw(_wire(interrupt), "x", b"\xd6\xff\x00\x00\x00\x00")],
    )
    b.error(
        "invalid_utf8_unknown_key",
        "invalid UTF-8 in the value of an unknown key",
        [_with_raw(_wire(interrupt), "x", b"\xa2\xc3\x28")],
    )
    b.error(
        "surrogate_utf8",
        "a UTF-16 surrogate encoded as UTF-8 in a conversation id",
        [_with_raw(_wire(interrupt, c=None), "c", b"\xa3\xed\xa0\x80")],
    )  # fmt: skip
    b.raw_ok(
        "negative_unknown",
        "negative integers (and other values) are allowed in unknown keys only",
        _wire(interrupt, x=-5, y=[-(2**63), 2**64 - 1, -1.5]),
        interrupt,
    )
    b.raw_ok(
        "proto_key",
        "keys named __proto__ and constructor are ordinary unknown keys",
        _wire(interrupt, __proto__={"a": 1}, constructor="x"),
        interrupt,
    )
    reason = AudioOnly(CID, 5, "\ufeff" + "r" * 250, TS)
    b.ok("bom_kept", "a leading U+FEFF in a string is kept (251 code points)", reason)
    b.error("start_seq_1", "a start with s = 1 (always 0)", [_pack(_wire(start, s=1))])
    b.error("fps_below_one", "fps 0.5 (the floor is 1)", [_pack(_wire(start, fps=0.5))])
    b.error("fps_denormal", "fps 5e-324", [_pack(_wire(start, fps=5e-324))])
    slowest = ConversationStart(
        CID, 0, "arkit-u8", 1.0, SPEAKING, 16000, "avatar-audio", "track", 120, TS
    )
    b.raw_ok("fps_one", "fps 1, the lowest allowed", _wire(start, fps=1.0), slowest)
    b.error(
        "sample_span_rounding",
        "i = 2^53 - 2 with 3 samples: the last index 2^53 is out of range (exact arithmetic)",
        [_pack(_wire(audio, i=2**53 - 2, d=bytes(6)))],
    )
    b.error(
        "frame_span_rounding",
        "f = 2^53 - 2 with 3 frames: the last index is out of range",
        [_pack(_wire(frames, f=2**53 - 2, d=[b"\x01"] * 3))],
    )
    b.error(
        "uint64_above_max",
        "s = 2^53 + 1 as uint64 (a float64 would round it)",
        [_with_raw(_wire(interrupt, s=None), "s", b"\xcf\x00\x20\x00\x00\x00\x00\x00\x01")],
    )
    b.error(
        "idle_arkit_no_channels",
        "an arkit-u8 idle message with an empty channel list",
        [_pack(_wire(idle, ch=[], d=[]))],
    )

    doc = {
        "protocol_version": PROTOCOL_VERSION,
        "max_packet_bytes": MAX_PACKET_BYTES,
        "vectors": b.vectors,
    }
    return doc, b.files


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = parser.parse_args()
    doc, files = build()
    wanted = dict(files)
    wanted[JSON_NAME] = render(doc).encode()
    existing = {p.name for p in HERE.glob("*.bin")}
    stale = existing - set(wanted)
    if args.check:
        different = [
            n for n, d in wanted.items() if not (HERE / n).exists() or (HERE / n).read_bytes() != d
        ]
        if different or stale:
            print(f"vectors out of date: {sorted(different)} stale: {sorted(stale)}")
            return 1
        print(f"{len(doc['vectors'])} vectors up to date")
        return 0
    for name in stale:
        (HERE / name).unlink()
    for name, data in wanted.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(doc['vectors'])} vectors in {len(files)} packet files to {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
