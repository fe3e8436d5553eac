"""Audio/animation sync through a real livekit-server, measured with the clapperboard.

The worker (a real subprocess, motion source ``clapperboard``) speaks tone bursts at known
media times; its animation marks exactly the frames where a burst starts. Real participants
running ``AvatarReceiver`` record when each burst is heard (audio pulled from the track)
and when its marker frame is presented, plus when each marker frame's packet arrived.

    .venv/bin/python bench/sync.py [--conversations 4] [--receivers 1] [--seconds 10]

Prints p50/p95/p99/max of |presentation - playout|, the margin by which frames arrive
before their audio plays (late frames counted), and first-audio / first-frame latency.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livekit import api, rtc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.devserver import (  # noqa: E402
    LiveKitEndpoint,
    LocalLiveKitServer,
    WorkerProcess,
    dispatch_relay,
)
from avatar_relay.client import AvatarReceiver  # noqa: E402
from avatar_relay.motion import clapperboard_audio, detect_tone_onsets  # noqa: E402
from avatar_relay.motion.clapperboard import burst_onset_samples  # noqa: E402
from avatar_relay.protocol import (  # noqa: E402
    AnimationFrames,
    ArkitU8Codec,
    ConversationEnd,
    ConversationStart,
    Idle,
    Reassembler,
)
from avatar_relay.protocol.constants import ANIMATION_TOPIC, SPEAK_AUDIO_STREAM_TOPIC  # noqa: E402

WAV_RATE = 24000
PERIOD_S = 0.52
OFFSET_S = 0.2


def token(ep: LiveKitEndpoint, identity: str, room: str) -> str:
    return (
        api.AccessToken(ep.api_key, ep.api_secret)
        .with_identity(identity)
        .with_attributes({"avatar-relay.controller": "true"})
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


@dataclass
class Recording:
    """What one receiver saw."""

    chunk_times: list[float] = field(default_factory=list)
    chunk_audio: list[np.ndarray] = field(default_factory=list)
    marker_presented: list[float] = field(default_factory=list)
    marker_arrived: dict[tuple[str, int], float] = field(default_factory=dict)
    marker_frame_presented: list[tuple[str, int, float]] = field(default_factory=list)
    first_frame_arrival: dict[str, float] = field(default_factory=dict)
    sample_rate: int = 48000


class Viewer:
    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self.rec = Recording()
        self.receiver = AvatarReceiver(room)
        self.rec.sample_rate = 48000
        self._reassembler = Reassembler()
        self._codecs: dict[str, ArkitU8Codec] = {}
        self.relay_ready = asyncio.Event()
        self.new_conversation = asyncio.Event()
        self.conversation_ended = asyncio.Event()
        self.relay_idle = asyncio.Event()
        """Set by each Idle message: the relay sends them only when nothing plays."""
        self._markers_changed = asyncio.Event()
        self.receiver.on("relay_joined", lambda *_: self.relay_ready.set())
        room.on("data_received", self._on_data)
        self._task: asyncio.Task[None] | None = None

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != ANIMATION_TOPIC:
            return
        now = time.monotonic()
        msg = self._reassembler.push(packet.data)
        if isinstance(msg, ConversationEnd):
            self.conversation_ended.set()
        if isinstance(msg, Idle):
            self.relay_idle.set()
        if isinstance(msg, ConversationStart) and msg.codec == "arkit-u8":
            self._codecs[msg.conversation_id] = ArkitU8Codec(msg.channels)
        if isinstance(msg, AnimationFrames):
            if msg.conversation_id not in self.rec.first_frame_arrival:
                self.rec.first_frame_arrival[msg.conversation_id] = now
                self.new_conversation.set()
            codec = self._codecs.get(msg.conversation_id)
            if codec is None:
                return
            blink = codec.channels.index("eyeBlinkLeft")
            for i, payload in enumerate(msg.frames):
                if payload[blink] > 127:
                    self.rec.marker_arrived[(msg.conversation_id, msg.first_frame + i)] = now

    async def start(self) -> None:
        self.receiver.start()
        self._task = asyncio.create_task(self._consume(), name="bench.viewer")

    async def _consume(self) -> None:
        previous_marker = False
        async for synced in self.receiver:
            self.rec.chunk_times.append(synced.presented_at)
            self.rec.chunk_audio.append(np.frombuffer(synced.audio.data, dtype=np.int16).copy())
            if len(self.rec.chunk_times) % 10 == 0:
                self._markers_changed.set()
            self.rec.sample_rate = synced.audio.sample_rate
            w = synced.weights
            marker = bool(w and not synced.idle and w.get("eyeBlinkLeft", 0.0) > 0.5)
            if marker and not previous_marker and synced.conversation_id is not None:
                self.rec.marker_frame_presented.append(
                    (synced.conversation_id, synced.frame_index or 0, synced.presented_at)
                )
                self._markers_changed.set()
            previous_marker = marker

    async def wait_audio_flowing(self, chunks: int = 100) -> None:
        """Wait until the track has delivered ``chunks`` chunks: a new AudioStream delivers
        its first chunks in a burst, so pull times only mean "heard now" after that."""
        while len(self.rec.chunk_times) < chunks:
            self._markers_changed.clear()
            await self._markers_changed.wait()

    async def wait_markers(self, count: int) -> None:
        """Wait until ``count`` marker frames have been presented."""
        while len(self.rec.marker_frame_presented) < count:
            self._markers_changed.clear()
            await self._markers_changed.wait()

    async def aclose(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.receiver.aclose()


def heard_onsets(rec: Recording) -> list[float]:
    """Times at which each burst's first sample was played (pulled) at the receiver."""
    if not rec.chunk_audio:
        return []
    audio = np.concatenate(rec.chunk_audio)
    starts = np.cumsum([0] + [len(a) for a in rec.chunk_audio[:-1]])
    times = []
    for onset_s in detect_tone_onsets(audio, rec.sample_rate):
        sample = int(round(onset_s * rec.sample_rate))
        j = int(np.searchsorted(starts, sample, side="right") - 1)
        times.append(rec.chunk_times[j] + (sample - starts[j]) / rec.sample_rate)
    return times


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def run(args: argparse.Namespace) -> None:
    server = LocalLiveKitServer()
    ep = await server.start()
    worker = WorkerProcess(
        ep,
        env={
            "AVATAR_RELAY_MOTION__SOURCE": "clapperboard",
            "AVATAR_RELAY_AGENT__METRICS_PORT": "0",
        },
        log_path=Path("/tmp/avatar-relay-bench-worker.log"),
    )
    await worker.start()
    room_name = f"bench-{uuid.uuid4().hex[:6]}"
    viewers: list[Viewer] = []
    try:
        for i in range(args.receivers):
            room = rtc.Room()
            await room.connect(ep.url, token(ep, f"viewer-{i}", room_name))
            v = Viewer(room)
            await v.start()
            viewers.append(v)
        await dispatch_relay(ep, room_name, "avatar-relay")
        controller = viewers[0].room
        async with asyncio.timeout(30):
            await viewers[0].relay_ready.wait()
            for v in viewers:
                await v.wait_audio_flowing()
        agent_identity = viewers[0].receiver.relay_identity
        assert agent_identity is not None
        pcm = clapperboard_audio(WAV_RATE, args.seconds, period_s=PERIOD_S, offset_s=OFFSET_S)
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(WAV_RATE)
            w.writeframes(pcm)
        latencies_audio: list[float] = []
        latencies_frame: list[float] = []
        bursts = len(burst_onset_samples(WAV_RATE, len(pcm) // 2, PERIOD_S, OFFSET_S))
        for n in range(1, args.conversations + 1):
            viewers[0].new_conversation.clear()
            sent_at = time.monotonic()
            await controller.local_participant.send_bytes(
                buf.getvalue(), topic=SPEAK_AUDIO_STREAM_TOPIC,
                destination_identities=[agent_identity],
            )  # fmt: skip
            async with asyncio.timeout(args.seconds + 20):
                await viewers[0].new_conversation.wait()
                first_frame = list(viewers[0].rec.first_frame_arrival.values())[-1]
                latencies_frame.append(first_frame - sent_at)
                # Wait until every viewer has presented all of this conversation's markers.
                for v in viewers:
                    await v.wait_markers(n * bursts)
                # Latency is measured from an idle relay: wait for its next idle message.
                viewers[0].relay_idle.clear()
                await viewers[0].relay_idle.wait()
            onsets = [t for t in heard_onsets(viewers[0].rec) if t > sent_at]
            if onsets:
                latencies_audio.append(onsets[0] - OFFSET_S - sent_at)
        report(viewers, latencies_audio, latencies_frame, args)
    finally:
        for v in viewers:
            await v.aclose()
            await v.room.disconnect()
        await worker.aclose()
        await server.aclose()


def report(
    viewers: list[Viewer], lat_audio: list[float], lat_frame: list[float], args: argparse.Namespace
) -> None:
    offsets: list[float] = []
    margins: list[float] = []
    late = 0
    unmatched = 0
    for v in viewers:
        heard = heard_onsets(v.rec)
        presented = v.rec.marker_frame_presented
        for cid, k, t_presented in presented:
            if not heard:
                break
            nearest = min(heard, key=lambda t: abs(t - t_presented))
            if abs(nearest - t_presented) > 0.2:
                unmatched += 1
                continue
            offsets.append((t_presented - nearest) * 1000)
            arrived = v.rec.marker_arrived.get((cid, k))
            if arrived is not None:
                margin = (nearest - arrived) * 1000
                margins.append(margin)
                late += margin < 0
    abs_off = [abs(o) for o in offsets]
    print(f"\nconversations={args.conversations} receivers={args.receivers} seconds={args.seconds}")
    print(f"markers matched={len(offsets)} unmatched={unmatched}")
    print("\n| measure | n | p50 | p95 | p99 | max |")
    print("|---|---|---|---|---|---|")
    row = "| {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} |"
    print(
        row.format(
            "|offset| ms (frame shown - audio heard)",
            len(abs_off),
            pct(abs_off, 50),
            pct(abs_off, 95),
            pct(abs_off, 99),
            max(abs_off, default=float("nan")),
        )
    )  # noqa: E501
    print(
        row.format(
            "signed offset ms",
            len(offsets),
            pct(offsets, 50),
            pct(offsets, 95),
            pct(offsets, 99),
            max(offsets, default=float("nan")),
        )
    )  # noqa: E501
    print(
        row.format(
            "frame margin ms (audio heard - frame arrived)",
            len(margins),
            pct(margins, 50),
            pct(margins, 5),
            pct(margins, 1),
            min(margins, default=float("nan")),
        ).replace("| p95", "| p5")
    )  # noqa: E501
    la = [x * 1000 for x in lat_audio]
    lf = [x * 1000 for x in lat_frame]
    print(
        row.format(
            "WAV sent -> first audio heard ms",
            len(la),
            pct(la, 50),
            pct(la, 95),
            pct(la, 99),
            max(la, default=float("nan")),
        )
    )  # noqa: E501
    print(
        row.format(
            "WAV sent -> first frame arrived ms",
            len(lf),
            pct(lf, 50),
            pct(lf, 95),
            pct(lf, 99),
            max(lf, default=float("nan")),
        )
    )  # noqa: E501
    print(f"\nlate frames (arrived after their audio was heard): {late} of {len(margins)}")
    if margins:
        print(f"min margin {min(margins):.1f} ms; mean offset {statistics.mean(offsets):+.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--receivers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.4)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
