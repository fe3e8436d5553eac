"""Fuzz the protocol decoders and the receivers' state machines, Python against JavaScript.

Three runs, all seeded and reproducible (issue 14):

- ``decoder``: random, mutated and hostile packets through the Python decoder
  (:func:`decode_any`), and the same bytes through the JavaScript decoder (``bench/fuzz.mjs
  diff``, over a pipe): every input must decode to the same outcome (the same message, the
  same error class, or "ignored") in both. A crash is any exception other than
  ``ProtocolError``.
- ``receiver``: episodes of packets (valid, hostile values, fragments, garbage) and audio
  pulls through ``Reassembler`` + ``PlayoutSync`` + ``HostModeController``, checking after
  each episode that every buffer respects its bound.
- ``flood``: fragment floods (random ids, maximal slices) through one ``Reassembler``;
  records the bytes it holds and the process's memory afterwards.

The JavaScript receiver state machine is fuzzed by ``node bench/fuzz.mjs receiver``.

    python bench/fuzz.py --inputs 1000000 --steps 1000000 --seed 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgpack  # type: ignore[import-untyped]  # msgpack ships no type information
from livekit import rtc

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere: this checkout's library

from avatar_relay.client.sync import PlayoutSync  # noqa: E402
from avatar_relay.protocol import (  # noqa: E402
    MAX_INT,
    MAX_PACKET_BYTES,
    AnimationFrames,
    AudioData,
    AudioOnly,
    ConversationEnd,
    ConversationStart,
    Fragment,
    Idle,
    Interrupt,
    Message,
    Packetizer,
    ProtocolError,
    Reassembler,
    UnsupportedVersionError,
    decode_any,
    encode_message,
)

NODE_FUZZ = ROOT / "bench" / "fuzz.mjs"
VECTORS = ROOT / "tests" / "vectors"

# -- canonical outcome (the same text in bench/fuzz.mjs) --------------------------------------

_KEYS: dict[type, tuple[str, tuple[tuple[str, str], ...]]] = {
    ConversationStart: ("start", (("c", "conversation_id"), ("s", "seq"), ("ts", "sent_at_us"),
        ("codec", "codec"), ("fps", "fps"), ("ch", "channels"), ("sr", "sample_rate"),
        ("track", "audio_track"), ("at", "audio_transport"), ("la", "lookahead_ms"))),
    AnimationFrames: ("frames", (("c", "conversation_id"), ("s", "seq"), ("ts", "sent_at_us"),
        ("f", "first_frame"), ("d", "frames"))),
    AudioData: ("audio", (("c", "conversation_id"), ("s", "seq"), ("ts", "sent_at_us"),
        ("i", "first_sample"), ("d", "pcm"))),
    ConversationEnd: ("end", (("c", "conversation_id"), ("s", "seq"), ("ts", "sent_at_us"),
        ("n", "frame_count"), ("ns", "audio_samples"))),
    Interrupt: ("interrupt", (("c", "conversation_id"), ("s", "seq"), ("ts", "sent_at_us"))),
    AudioOnly: ("audio_only", (("c", "conversation_id"), ("s", "seq"), ("ts", "sent_at_us"),
        ("r", "reason"))),
    Idle: ("idle", (("s", "seq"), ("ts", "sent_at_us"), ("codec", "codec"), ("fps", "fps"),
        ("ch", "channels"), ("f", "first_frame"), ("d", "frames"))),
    Fragment: ("frag", (("id", "message_id"), ("i", "index"), ("n", "count"), ("d", "data"))),
}  # fmt: skip


def _canon_value(value: object) -> str:
    if isinstance(value, bool):
        raise TypeError("no booleans in decoded messages")
    if isinstance(value, int):
        return f"i{value}"
    if isinstance(value, float):
        return "f" + struct.pack(">d", value).hex()
    if isinstance(value, str):
        return "s" + value.encode("utf-8").hex()
    if isinstance(value, bytes):
        return "b" + value.hex()
    if isinstance(value, tuple | list):
        return "[" + ",".join(_canon_value(v) for v in value) + "]"
    raise TypeError(f"unexpected {type(value).__name__}")


def canonical(data: bytes) -> str:
    """The decoding outcome of one packet as text: ``E:protocol``, ``E:version``, ``I`` or
    ``M:<type>;<key>=<value>;...`` (fps as float64 hex, strings as UTF-8 hex)."""
    try:
        result = decode_any(data)
    except UnsupportedVersionError:
        return "E:version"
    except ProtocolError:
        return "E:protocol"
    if result is None:
        return "I"
    name, keys = _KEYS[type(result)]
    return f"M:{name};" + ";".join(f"{k}={_canon_value(getattr(result, a))}" for k, a in keys)


# -- input generation ---------------------------------------------------------------------------

INTERESTING_INTS = (0, 1, 2, 24, 25, 127, 128, 255, 256, 1023, 1024, 1025, 15360, 48000,
    2**31 - 1, 2**31, 2**32 - 1, 2**32, MAX_INT - 2, MAX_INT - 1, MAX_INT, MAX_INT + 1, 2**63 - 1,
    2**63, 2**64 - 1, -1, -32, -33, -(2**31), -MAX_INT, -MAX_INT - 1, -(2**63))  # fmt: skip
INTERESTING_FLOATS = (0.0, -0.0, 1.0, 0.999, 0.5, 5e-324, 25.0, 240.0, 240.00000000000003,
    float("nan"), float("inf"), -float("inf"), 1e308, 24.999999)  # fmt: skip
INTERESTING_STRS = ("", "x", "c0ffee00-talk-01", "\ufeff" + "x" * 250, "\ufeffabc", "__proto__",
    "\0key:int", "constructor", "jawOpen", "headYaw", "arkit-u8", "spatius", "track", "data",
    "both", "a,b", "é" * 64, "😀" * 64, "😀" * 65, "x" * 64, "x" * 65, "x" * 257)  # fmt: skip
KNOWN_KEYS = ("v", "t", "s", "ts", "c", "codec", "fps", "ch", "sr", "track", "at", "la", "f",
    "d", "i", "n", "ns", "r", "id")  # fmt: skip
TYPES = ("start", "frames", "audio", "end", "interrupt", "audio_only", "idle", "frag", "future")
RAW_HOSTILE = (
    b"\xc1", b"\xd4\x01\x00", b"\xd6\xff\x00\x00\x00\x00", b"\xc7\x00\x05", b"\xa2\xc3\x28",
    b"\xa3\xed\xa0\x80", b"\xa4\xf4\x90\x80\x80", b"\xcf\x00\x20\x00\x00\x00\x00\x00\x01",
    b"\xd3\xff\xe0\x00\x00\x00\x00\x00\x00", b"\xca\x41\xc8\x00\x00", b"\xca\x7f\xc0\x00\x00",
    b"\xcb\x00\x00\x00\x00\x00\x00\x00\x01", b"\x91" * 7 + b"\x00", b"\x91" * 8 + b"\x00",
    b"\x91" * 400 + b"\x00", b"\x81\xa1k" * 9 + b"\x00", b"\x81\x01\x02", b"\x81\xc4\x01a\x02",
    b"\x82\xa1k\x01\xa1k\x02", b"\xdc\x04\x01" + b"\xc0" * 1025, b"\xdd\x00\x00\x00\x00",
    b"\xde\x00\x41", b"\xc4\x00", b"\xc5\xff\xff", b"\xdb\xff\xff\xff\xff",
)  # fmt: skip


def _pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


class Inputs:
    """Seeded stream of packets: mutated seeds, hostile maps and random bytes."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seeds = [p.read_bytes() for p in sorted(VECTORS.glob("*.bin"))]
        self.seeds += [encode_message(random_message(self.rng)) for _ in range(300)]
        self.seeds = [s for s in self.seeds if len(s) <= MAX_PACKET_BYTES]

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        r = self.rng.random()
        if r < 0.45:
            return self.mutate(self.rng.choice(self.seeds))
        if r < 0.85:
            return self.hostile_map()
        if r < 0.95:
            return encode_message(random_message(self.rng))
        return self.rng.randbytes(self.rng.randrange(0, 64))

    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        b = bytearray(data)
        for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
            op = rng.randrange(8)
            pos = rng.randrange(len(b) + 1)
            if op == 0 and b:  # flip a bit
                i = min(pos, len(b) - 1)
                b[i] ^= 1 << rng.randrange(8)
            elif op == 1 and b:  # an interesting byte
                b[min(pos, len(b) - 1)] = rng.choice(
                    (0x00, 0x01, 0x7F, 0x80, 0x8F, 0x90, 0xA0, 0xC0, 0xC1, 0xC2, 0xCA, 0xCB, 0xCF,
                     0xD3, 0xD9, 0xDC, 0xDE, 0xFF))  # fmt: skip
            elif op == 2:  # insert
                b[pos:pos] = rng.randbytes(rng.randrange(1, 9))
            elif op == 3:  # delete
                del b[pos : pos + rng.randrange(1, 9)]
            elif op == 4:  # truncate
                del b[pos:]
            elif op == 5 and b:  # duplicate a range
                end = min(len(b), pos + rng.randrange(1, 32))
                b[pos:pos] = b[pos:end]
            elif op == 6:  # splice with another seed
                other = rng.choice(self.seeds)
                b[pos:] = other[rng.randrange(len(other) + 1) :]
            else:  # a hostile raw value
                b[pos:pos] = rng.choice(RAW_HOSTILE)
        return bytes(b)

    def value(self, depth: int = 0) -> bytes:
        """One msgpack value (raw bytes), often out of range or of the wrong type."""
        rng = self.rng
        k = rng.randrange(12)
        if k == 0:
            return _pack(rng.choice(INTERESTING_INTS))
        if k == 1:
            f = rng.choice(INTERESTING_FLOATS)
            if rng.random() < 0.3 and not (math.isfinite(f) and abs(f) > 3e38):
                return b"\xca" + struct.pack(">f", f)
            return b"\xcb" + struct.pack(">d", f)
        if k == 2:
            return _pack(rng.choice(INTERESTING_STRS))
        if k == 3:
            return _pack(rng.randbytes(rng.choice((0, 1, 2, 3, 28, 55))))
        if k == 4 and depth < 10:
            n = rng.choice((0, 1, 2, 3, 28)) if depth < 2 else rng.choice((0, 1, 1, 2))
            body = b"".join(self.value(depth + 1) for _ in range(n))
            return (bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)) + body
        if k == 5 and depth < 10:
            n = rng.randrange(0, 4)
            body = b"".join(self.key() + self.value(depth + 1) for _ in range(n))
            return bytes([0x80 | n]) + body
        if k == 6:
            return rng.choice(RAW_HOSTILE)
        if k == 7:
            return _pack(rng.choice((None, True, False)))
        if k == 8:
            return _pack(rng.randrange(-(2**63), 2**64))
        if k == 9:  # a list of frames, some of a channel count's length
            n = rng.choice((0, 1, 2, 1024, 1025))
            size = rng.choice((1, 2, 28))
            frames = [rng.randbytes(size)] * n
            if frames and rng.random() < 0.5:  # one frame of another length
                frames[rng.randrange(n)] = rng.randbytes(rng.choice((0, 3, size + 1)))
            return _pack(frames)
        if k == 10:  # channel lists
            names = rng.sample(
                ("jawOpen", "headYaw", "mouthClose", "a,b", "a", "b", "", "x" * 65), 3
            )
            return _pack(names + names[:1] if rng.random() < 0.2 else names)
        return _pack(rng.choice(INTERESTING_INTS) if rng.random() < 0.5 else rng.randrange(0, 100))

    def key(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.8:
            return _pack(rng.choice(KNOWN_KEYS))
        if r < 0.95:
            return _pack(rng.choice(INTERESTING_STRS))
        return self.value(8)

    def hostile_map(self) -> bytes:
        """A packet map: a plausible message with one or more keys given hostile values."""
        rng = self.rng
        base = (
            wire_map(random_message(rng))
            if rng.random() < 0.8
            else {"v": 1, "t": rng.choice(TYPES)}
        )
        if rng.random() < 0.1:
            base["v"] = rng.choice((0, 2, -1, 2**64 - 1, 1.0, "1"))
        entries = [(_pack(k), _pack(v)) for k, v in base.items()]
        for _ in range(rng.choice((0, 1, 1, 2, 4))):
            choice = rng.random()
            if choice < 0.5 and entries:  # replace a value
                i = rng.randrange(len(entries))
                entries[i] = (entries[i][0], self.value())
            elif choice < 0.7 and entries:  # drop a key
                entries.pop(rng.randrange(len(entries)))
            elif choice < 0.8 and entries:  # duplicate a key
                entries.append((entries[rng.randrange(len(entries))][0], self.value()))
            else:  # an extra (unknown or known) key
                entries.append((self.key(), self.value()))
        rng.shuffle(entries)
        n = len(entries)
        head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
        return head + b"".join(k + v for k, v in entries)


def wire_map(msg: Message) -> dict[str, object]:
    """The wire map of a (valid) message, to be corrupted."""
    decoded = msgpack.unpackb(encode_message(msg), raw=False)
    assert isinstance(decoded, dict)
    return decoded


def random_message(rng: random.Random, cids: tuple[str, ...] = ()) -> Message:
    """A valid message with random, often extreme, values."""
    cid = rng.choice(cids) if cids else rng.choice(("c", "conv-1", "c0ffee00-talk-01", "é" * 64))
    seq = rng.choice((0, 1, 2, 3, rng.randrange(100), MAX_INT))
    ts = rng.choice((0, 1_732_000_000_123_456, MAX_INT))
    idx = rng.choice((0, 1, 25, 48000, rng.randrange(1000), MAX_INT - 5000))
    arkit = rng.random() < 0.7
    channels = ("jawOpen", "headYaw", "mouthClose")[: rng.randrange(1, 4)] if arkit else ()
    codec = "arkit-u8" if arkit else rng.choice(("spatius", "opaque"))
    fps = rng.choice((1.0, 25.0, 30.0, 60.0, 240.0, 24.999))
    width = len(channels) if arkit else rng.randrange(1, 40)
    kind = rng.randrange(7)
    if kind == 0:
        transport = rng.choice(("track", "data", "both"))
        return ConversationStart(cid, 0, codec, fps, channels, rng.choice((16000, 24000, 48000)),
            "" if transport == "data" else "avatar-audio", transport, rng.choice((0, 200)), ts)  # type: ignore[arg-type]  # fmt: skip
    if kind == 1:
        n = rng.choice((1, 1, 2, 5, 30))
        size = width if rng.random() < 0.9 else width + 1
        return AnimationFrames(cid, seq, idx, tuple(rng.randbytes(size) for _ in range(n)), ts)
    if kind == 2:
        return AudioData(cid, seq, idx, rng.randbytes(2 * rng.choice((1, 160, 2400))), ts)
    if kind == 3:
        frames, samples = rng.choice((0, 5, 100, MAX_INT)), rng.choice((0, 4800, 48000))
        return ConversationEnd(cid, seq, frames, samples, ts)
    if kind == 4:
        return Interrupt(cid, seq, ts)
    if kind == 5:
        return AudioOnly(cid, seq, rng.choice(("motion_failed", "", "x" * 256)), ts)
    n = rng.choice((0, 1, 2, 10))
    return Idle(seq, codec, fps, channels, idx, tuple(rng.randbytes(width) for _ in range(n)), ts)


# -- the runs ----------------------------------------------------------------------------------


@dataclass
class Report:
    """What one run found."""

    name: str
    inputs: int = 0
    crashes: int = 0
    disagreements: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    max_ms: float = 0.0
    """Longest time one input (or one step) took, in milliseconds."""
    seconds: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    """Hex of the first few inputs that crashed or disagreed."""

    def percentiles(self, times_ms: list[float]) -> None:
        """Record the 99th and 99.9th percentile of per-input times in ``extra``."""
        if times_ms:
            times_ms.sort()
            for label, q in (("p99_ms", 0.99), ("p999_ms", 0.999)):
                self.extra[label] = round(times_ms[int(len(times_ms) * q)], 3)

    def note(self, example: bytes | str) -> None:
        if len(self.examples) < 5:
            self.examples.append(example.hex() if isinstance(example, bytes) else example)


class NodeDecoder:
    """``node bench/fuzz.mjs diff``: length-prefixed packets in, one outcome line each out."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            ["node", str(NODE_FUZZ), "diff"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )

    def send(self, batch: list[bytes]) -> None:
        """Start decoding ``batch`` (node works while Python decodes the same batch)."""
        assert self._proc.stdin is not None
        payload = b"".join(struct.pack(">I", len(p)) + p for p in batch)
        self._proc.stdin.write(struct.pack(">I", len(batch)) + payload)
        self._proc.stdin.flush()

    def receive(self, count: int) -> list[str]:
        assert self._proc.stdout is not None
        return [self._proc.stdout.readline().decode("ascii").rstrip("\n") for _ in range(count)]

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=30)


def run_decoder(n: int, seed: int, *, differential: bool = True, batch: int = 2000) -> Report:
    report = Report("decoder")
    inputs = Inputs(seed)
    node = NodeDecoder() if differential else None
    times: list[float] = []
    t0 = time.perf_counter()
    try:
        done = 0
        while done < n:
            packets = [next(inputs) for _ in range(min(batch, n - done))]
            if node is not None:
                node.send(packets)
            ours: list[str] = []
            for p in packets:
                start = time.perf_counter()
                try:
                    outcome = canonical(p)
                except Exception as exc:  # a crash: anything but ProtocolError
                    report.crashes += 1
                    report.note(p)
                    outcome = f"CRASH:{type(exc).__name__}"
                elapsed = (time.perf_counter() - start) * 1000
                report.max_ms = max(report.max_ms, elapsed)
                times.append(elapsed)
                ours.append(outcome)
                kind = outcome.split(";")[0]
                report.outcomes[kind] = report.outcomes.get(kind, 0) + 1
            if node is not None:
                for p, mine, theirs in zip(packets, ours, node.receive(len(packets)), strict=True):
                    if theirs.startswith("CRASH"):
                        report.crashes += 1
                        report.note("js " + p.hex())
                    if mine != theirs:
                        report.disagreements += 1
                        report.note(f"{p.hex()} py={mine[:80]} js={theirs[:80]}")
            done += len(packets)
    finally:
        if node is not None:
            node.close()
    report.inputs = n
    report.seconds = time.perf_counter() - t0
    report.percentiles(times)
    report.extra["differential"] = differential
    report.extra["outcomes"] = report.outcomes
    return report


class Episode:
    """One receiver lifetime: packets and audio pulls on a virtual clock."""

    CIDS = ("a", "b", "c", "d") + tuple(f"x{i}" for i in range(20))
    SR = 48000
    CHUNK = 480

    def __init__(self, rng: random.Random, inputs: Inputs) -> None:
        self.rng = rng
        self.inputs = inputs
        self.reassembler = Reassembler()
        self.sync = PlayoutSync(sample_rate=self.SR)
        self.packetizer = Packetizer()
        self.now = 1000.0
        self.silence = rtc.AudioFrame(bytes(self.CHUNK * 2), self.SR, 1, self.CHUNK)
        self.seqs: dict[str, int] = {}

    def packets(self) -> list[bytes]:
        rng = self.rng
        r = rng.random()
        if r < 0.75:
            msg = random_message(rng, self.CIDS[: rng.choice((1, 2, 4, 24))])
            if not isinstance(msg, ConversationStart | Idle) and rng.random() < 0.7:
                cid = msg.conversation_id
                self.seqs[cid] = self.seqs.get(cid, 0) + 1
                object.__setattr__(msg, "seq", self.seqs[cid])
            if isinstance(msg, AnimationFrames) and rng.random() < 0.05:  # a fragmented message
                frames = tuple(rng.randbytes(3) for _ in range(1024))
                body = AnimationFrames(msg.conversation_id, msg.seq, msg.first_frame % 1000, frames)
                return self.packetizer.packetize(body) + [rng.randbytes(8)] * rng.randrange(2)
            return [encode_message(msg)]
        if r < 0.85:
            return [self.inputs.hostile_map()]
        if r < 0.95:  # a stray or oversized fragment
            size = rng.choice((1, 9000))
            frag = {"v": 1, "t": "frag", "id": rng.randrange(8), "i": rng.randrange(3),
                    "n": rng.choice((1, 2, 3, 1024)), "d": rng.randbytes(size)}  # fmt: skip
            return [_pack(frag)]
        return [self.inputs.mutate(rng.choice(self.inputs.seeds))]

    def step(self) -> None:
        """One packet (or one fragmented message) or one audio pull."""
        if self.rng.random() < 0.4:
            self.now += 0.01
            self.sync.on_audio(self.silence, self.now)
            return
        for packet in self.packets():
            try:
                msg = self.reassembler.push(packet)
            except ProtocolError:
                continue
            if msg is not None:
                arrival = self.now - self.rng.choice((0.0, 0.0, 0.02, 5.0))
                self.sync.on_message(msg, arrival)

    def check(self) -> None:
        sync = self.sync
        ctrl = sync.controller
        assert len(sync._convs) <= 16, "conversations unbounded"
        assert ctrl.buffered_samples <= ctrl.max_buffered_samples, "audio buffer unbounded"
        assert ctrl.buffered_frames <= 2048, "frame buffer unbounded"
        assert self.reassembler.buffered_bytes <= 2 * 2**20, "reassembly unbounded"
        for conv in sync._convs.values():
            assert len(conv.pending) <= 1024 and len(conv.arrivals) <= 1024


def run_receiver(steps: int, seed: int, *, episode_steps: int = 400) -> Report:
    report = Report("receiver")
    rng = random.Random(seed)
    inputs = Inputs(seed + 1)
    t0 = time.perf_counter()
    done = 0
    episodes = 0
    times: list[float] = []
    while done < steps:
        episode = Episode(rng, inputs)
        episodes += 1
        for _ in range(min(episode_steps, steps - done)):
            start = time.perf_counter()
            try:
                episode.step()
            except Exception as exc:
                report.crashes += 1
                report.note(f"episode {episodes}: {type(exc).__name__}: {exc}")
                break
            finally:
                elapsed = (time.perf_counter() - start) * 1000
                report.max_ms = max(report.max_ms, elapsed)
                times.append(elapsed)
                done += 1
        try:
            episode.check()
        except AssertionError as exc:
            report.crashes += 1
            report.note(f"episode {episodes}: {exc}")
    report.inputs = done
    report.seconds = time.perf_counter() - t0
    report.extra["episodes"] = episodes
    report.percentiles(times)
    return report


def run_flood(fragments: int, seed: int) -> Report:
    """Fragment floods as fast as they come: 8 messages growing in turns towards 1 MiB each,
    restarted at random, plus strays of random ids (the worst case for the byte bounds)."""
    report = Report("flood")
    rng = random.Random(seed)
    reassembler = Reassembler()
    slice_ = rng.randbytes(MAX_PACKET_BYTES - 64)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    peak = 0
    next_index: dict[int, int] = {}
    for _ in range(fragments):
        if rng.random() < 0.1:
            mid, index = rng.randrange(2**20), rng.choice((0, 1))
        else:
            mid = rng.randrange(8)
            index = next_index.get(mid, 0)
            next_index[mid] = 0 if index >= 1022 or rng.random() < 0.002 else index + 1
        packet = _pack({"v": 1, "t": "frag", "id": mid, "i": index, "n": 1024, "d": slice_})
        start = time.perf_counter()
        try:
            reassembler.push(packet)
        except ProtocolError:
            pass
        except Exception as exc:
            report.crashes += 1
            report.note(f"{type(exc).__name__}: {exc}")
        report.max_ms = max(report.max_ms, (time.perf_counter() - start) * 1000)
        peak = max(peak, reassembler.buffered_bytes)
    report.inputs = fragments
    report.seconds = time.perf_counter() - t0
    report.extra.update(
        held_bytes_after=reassembler.buffered_bytes,
        held_bytes_peak=peak,
        partials_after=reassembler.pending,
        dropped_partials=reassembler.stats.dropped_partials,
        rss_growth_mib=round(
            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, 1
        ),
    )
    return report


def run_node(mode: str, n: int, seed: int) -> Report:
    """The JavaScript side's own run (``receiver`` or ``flood``), as a report."""
    out = subprocess.run(
        ["node", "--expose-gc", str(NODE_FUZZ), mode, "--count", str(n), "--seed", str(seed)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    data = json.loads(out.stdout)
    return Report(**data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=100_000, help="decoder inputs")
    parser.add_argument("--steps", type=int, default=100_000, help="receiver steps (each side)")
    parser.add_argument("--flood", type=int, default=20_000, help="fragments per flood")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-node", action="store_true", help="Python only (no differential)")
    parser.add_argument("--json", type=Path, help="write the reports here")
    parser.add_argument(
        "--only",
        default="decoder,receiver,flood,js-receiver,js-flood",
        help="comma-separated runs (to run them as parallel processes)",
    )
    args = parser.parse_args(argv)
    available: dict[str, Callable[[], Report]] = {
        "decoder": lambda: run_decoder(args.inputs, args.seed, differential=not args.no_node),
        "receiver": lambda: run_receiver(args.steps, args.seed),
        "flood": lambda: run_flood(args.flood, args.seed),
        "js-receiver": lambda: run_node("receiver", args.steps, args.seed),
        "js-flood": lambda: run_node("flood", args.flood, args.seed),
    }
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    if args.no_node:
        chosen = [name for name in chosen if not name.startswith("js-")]
    runs = [available[name] for name in chosen]
    reports = []
    print(f"{'run':<16} {'inputs':>9} {'crashes':>7} {'disagree':>8} {'max ms':>8} {'s':>7}  extra")
    for run in runs:
        r = run()
        reports.append(r)
        label = (
            r.name
            if r.name not in ("receiver", "flood") or not r.extra.get("js")
            else f"js {r.name}"
        )
        print(f"{label:<16} {r.inputs:>9} {r.crashes:>7} {r.disagreements:>8} {r.max_ms:>8.2f} "
              f"{r.seconds:>7.1f}  {json.dumps(r.extra)}", flush=True)  # fmt: skip
        for ex in r.examples:
            print("    example:", ex[:300])
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=1, default=str))
    failed = any(r.crashes or r.disagreements for r in reports)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
