"""Data-channel bandwidth of a speaking avatar with the embedded arkit-u8 codec.

Encodes a 60 s conversation at 25 fps exactly as the relay would (real msgpack envelopes with
a 16-character conversation id, growing seq and frame indexes, microsecond timestamps) and
prints bytes per second of LiveKit data-packet payload for several frames-per-packet choices.
Transport overhead below the data packet (SCTP/DTLS/UDP, about 50-80 bytes per packet) is
listed separately because LiveKit, not the protocol, decides it.

    .venv/bin/python bench/bandwidth.py            # print the table
    .venv/bin/python bench/bandwidth.py --write    # also update docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from avatar_relay.protocol import (  # noqa: E402  # the repository root is put on sys.path first
    ARKIT_52,
    HEAD_POSE,
    AnimationFrames,
    ArkitU8Codec,
    ConversationEnd,
    ConversationStart,
    Packetizer,
    encode_message,
)

FPS = 25
SECONDS = 60
CID = "c0ffee00-talk-01"  # 16 characters
TS0 = 1_732_000_000_000_000
PER_PACKET_TRANSPORT = 64  # rough SCTP + DTLS + UDP/IP bytes per data packet, for context
HEADING = "## Data-channel bandwidth"
SPEAKING = (
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp", "browDownLeft", "browDownRight",
    "cheekPuff", "tongueOut",
) + HEAD_POSE  # fmt: skip
"""28 channels: the face blendshapes speech moves, blinks, brows, and head pose."""


def _frames(channels: tuple[str, ...], count: int) -> list[bytes]:
    codec = ArkitU8Codec(channels)
    rng = np.random.default_rng(7)
    weights = rng.random((count, len(channels)), dtype=np.float32)
    signed = np.array([c.startswith("head") for c in channels])
    weights[:, signed] = weights[:, signed] * 2 - 1
    return [codec.encode(w) for w in weights]


def measure(channels: tuple[str, ...], per_packet: int) -> dict[str, float]:
    """Payload bytes of one conversation sending ``per_packet`` frames in each packet."""
    count = FPS * SECONDS
    frames = _frames(channels, count)
    packetizer = Packetizer()
    start = ConversationStart(CID, 0, "arkit-u8", float(FPS), channels, 16000, "avatar-audio",
                              "track", 120, TS0)  # fmt: skip
    total = sum(map(len, packetizer.packetize(start)))
    packets = 1
    seq = 1
    for first in range(0, count, per_packet):
        chunk = tuple(frames[first : first + per_packet])
        ts = TS0 + first * 1_000_000 // FPS
        msg = AnimationFrames(CID, seq, first, chunk, ts)
        out = packetizer.packetize(msg)
        total += sum(map(len, out))
        packets += len(out)
        seq += 1
    end = ConversationEnd(CID, seq, count, SECONDS * 16000, TS0 + SECONDS * 1_000_000)
    total += len(encode_message(end))
    packets += 1
    frame_bytes = len(channels) * count
    return {
        "bytes_per_s": total / SECONDS,
        "packets_per_s": packets / SECONDS,
        "overhead": (total - frame_bytes) / total,
        "per_packet_bytes": total / packets,
        "wire_bytes_per_s": (total + packets * PER_PACKET_TRANSPORT) / SECONDS,
    }


def table() -> str:
    rows = [
        "| channels | frames/packet | packets/s | bytes/packet | payload B/s | envelope share "
        "| + transport (~64 B/packet) B/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    layouts = [
        ("28 (speech + head pose)", SPEAKING),
        ("55 (ARKit-52 + head pose)", ARKIT_52 + HEAD_POSE),
    ]
    for label, channels in layouts:
        for per_packet in (1, 2, 5):
            r = measure(channels, per_packet)
            cells = [
                label,
                str(per_packet),
                f"{r['packets_per_s']:.1f}",
                f"{r['per_packet_bytes']:.0f}",
                f"{r['bytes_per_s']:,.0f}",
                f"{r['overhead']:.0%}",
                f"{r['wire_bytes_per_s']:,.0f}",
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def section(result: str) -> str:
    latency = {n: math.ceil(1000 * (n - 1) / FPS) for n in (1, 2, 5)}
    return f"""{HEADING}

Command: `.venv/bin/python bench/bandwidth.py --write`

A {SECONDS} s conversation at {FPS} fps with the embedded `arkit-u8` codec, encoded exactly as the
relay sends it: one msgpack `frames` message per packet with a 16-character conversation id,
growing `s`/`f`, a microsecond `ts`, plus the `start` and `end` messages. "payload B/s" is what
`publish_data` carries; the last column adds a rough 64 bytes of SCTP/DTLS/UDP per packet.
Batching n frames per packet delays the first of them by up to {latency[2]} ms (n=2) or
{latency[5]} ms (n=5) before it can be sent.

{result}

Goal: <= 3 KB/s of payload; the vendor's motion stream is 10-20 KB/s. At one frame per packet
the envelope (59 bytes: `v`, `t`, `s`, `ts`, `c`, `f`, `d` headers) outweighs the 28 frame
bytes; the conversation id (19 bytes) and the timestamp (12 bytes) are its largest parts.
"""


def write(doc: Path, text: str) -> None:
    """Replace (or append) only this section of docs/BENCHMARKS.md; others own the rest."""
    old = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    start = old.find(HEADING + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(HEADING))
        new = old[:start] + text + ("\n" + old[nxt + 1 :] if nxt >= 0 else "")
    doc.write_text(new, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description="data-channel bandwidth of arkit-u8 animation")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    result = table()
    print(result)
    if args.write:
        write(ROOT / "docs" / "BENCHMARKS.md", section(result))
        print("updated docs/BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
