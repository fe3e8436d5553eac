"""Soak: N rooms speaking for M minutes through one real worker; do its resources grow?

A real livekit-server on loopback, one real worker process (the shipped worker plus a
task-count log line, ``bench/soak_worker.py``), and one listening participant per room that
sends the relay a WAV (speech over a tone) again each time the previous one has ended.
Every ``--interval`` seconds it prints, for the worker's main process and the sum over its
relay job processes: RSS, open file descriptors and asyncio task counts; at the end, the
growth from the first sample after ``--warmup`` to the last (goal: < 5 %).

    nice .venv/bin/python bench/soak.py [--rooms 20] [--minutes 30] [--interval 30] [--warmup 120]

A benchmark, not a test: it asserts nothing and exits 0 unless the stack fails.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from livekit import api, rtc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.devserver import LiveKitEndpoint, LocalLiveKitServer, WorkerProcess  # noqa: E402
from avatar_relay.protocol import ConversationEnd, ProtocolError, Reassembler  # noqa: E402
from avatar_relay.protocol.constants import (  # noqa: E402
    ANIMATION_TOPIC,
    ATTRIBUTE_ROLE,
    ROLE_RELAY,
    SPEAK_AUDIO_STREAM_TOPIC,
)

AGENT = "avatar-relay"
UTTERANCE_S = 6.0


def utterance_wav(seconds: float = UTTERANCE_S, rate: int = 24000) -> bytes:
    """A syllable-like amplitude pattern over a steady tone (no espeak needed)."""
    t = np.arange(round(seconds * rate)) / rate
    envelope = 0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    pcm = (np.sin(2 * np.pi * 180 * t) * 8000 * envelope).astype(np.int16)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def token(ep: LiveKitEndpoint, identity: str, room: str) -> str:
    return (
        api.AccessToken(ep.api_key, ep.api_secret)
        .with_identity(identity)
        .with_attributes({"avatar-relay.controller": "true"})
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


@dataclass
class Speaker:
    """One room's listener: sends the next WAV whenever the relay ended the last one."""

    room: rtc.Room
    name: str
    utterances: int = 0
    ended: int = 0

    def __post_init__(self) -> None:
        self._ended = asyncio.Event()
        self._reassembler = Reassembler()
        self.room.on("data_received", self._on_data)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != ANIMATION_TOPIC:
            return
        try:
            msg = self._reassembler.push(packet.data)
        except ProtocolError:
            return
        if isinstance(msg, ConversationEnd):
            self.ended += 1
            self._ended.set()

    def relay(self) -> str | None:
        for p in self.room.remote_participants.values():
            if p.attributes.get(ATTRIBUTE_ROLE) == ROLE_RELAY:
                return p.identity
        return None

    async def run(self, wav: bytes, until: float) -> None:
        while time.monotonic() < until:
            relay = self.relay()
            if relay is None:
                await asyncio.sleep(0.5)  # polling for the relay's attribute: a benchmark
                continue
            self._ended.clear()
            await self.room.local_participant.send_bytes(
                wav, topic=SPEAK_AUDIO_STREAM_TOPIC, destination_identities=[relay]
            )
            self.utterances += 1
            try:
                await asyncio.wait_for(self._ended.wait(), UTTERANCE_S * 4)
            except TimeoutError:
                print(f"{self.name}: no end after {UTTERANCE_S * 4:.0f} s", flush=True)


def proc_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def proc_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def latest_tasks(worker: WorkerProcess) -> dict[int, int]:
    """pid -> asyncio task count, from each process's latest ``soak tasks`` line."""
    tasks: dict[int, int] = {}
    for line in worker.output.splitlines():
        if "soak tasks" in line and "{" in line:
            with_fields = json.loads(line[line.index("{") :])
            tasks[int(with_fields["pid"])] = int(with_fields["tasks"])
    return tasks


def job_pids(worker: WorkerProcess) -> list[int]:
    pids = []
    for line in worker.output.splitlines():
        if "relay job started" in line and "{" in line:
            pids.append(int(json.loads(line[line.index("{") :])["pid"]))
    return pids


@dataclass(frozen=True)
class Sample:
    t: float
    main_rss: float
    jobs_rss: float
    main_fds: int
    jobs_fds: int
    main_tasks: int
    jobs_tasks: int
    jobs: int
    utterances: int


def sample(worker: WorkerProcess, t0: float, speakers: list[Speaker]) -> Sample:
    assert worker.pid is not None
    jobs = [p for p in job_pids(worker) if os.path.exists(f"/proc/{p}")]
    tasks = latest_tasks(worker)
    return Sample(
        t=time.monotonic() - t0,
        main_rss=proc_rss_mb(worker.pid),
        jobs_rss=sum(proc_rss_mb(p) for p in jobs),
        main_fds=proc_fds(worker.pid),
        jobs_fds=sum(proc_fds(p) for p in jobs),
        main_tasks=tasks.get(worker.pid, 0),
        jobs_tasks=sum(tasks.get(p, 0) for p in jobs),
        jobs=len(jobs),
        utterances=sum(s.utterances for s in speakers),
    )


HEADER = (
    "| t (s) | jobs | utterances | main RSS MB | jobs RSS MB | main fds | jobs fds "
    "| main tasks | jobs tasks |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def row(s: Sample) -> str:
    return (
        f"| {s.t:.0f} | {s.jobs} | {s.utterances} | {s.main_rss:.1f} | {s.jobs_rss:.1f} "
        f"| {s.main_fds} | {s.jobs_fds} | {s.main_tasks} | {s.jobs_tasks} |"
    )


def growth(first: Sample, last: Sample) -> str:
    def pct(a: float, b: float) -> str:
        return "n/a" if a == 0 else f"{(b - a) / a * 100:+.1f} %"

    parts = [
        f"{name} {pct(getattr(first, attr), getattr(last, attr))}"
        for name, attr in [
            ("main RSS", "main_rss"),
            ("jobs RSS", "jobs_rss"),
            ("main fds", "main_fds"),
            ("jobs fds", "jobs_fds"),
            ("main tasks", "main_tasks"),
            ("jobs tasks", "jobs_tasks"),
        ]
    ]
    return f"growth after warm-up (t={first.t:.0f} s -> {last.t:.0f} s): " + ", ".join(parts)


async def soak(rooms: int, minutes: float, interval: float, warmup: float) -> None:
    server = LocalLiveKitServer()
    ep = await server.start()
    worker = WorkerProcess(
        ep,
        env={
            "AVATAR_RELAY_AGENT__MAX_ROOMS": str(max(rooms * 2, 8)),
            "AVATAR_RELAY_SOAK_REPORT_S": str(min(interval / 2, 10.0)),
        },
        command=(sys.executable, str(Path(__file__).with_name("soak_worker.py")), "start"),
    )
    listeners: list[rtc.Room] = []
    try:
        await worker.start()
        stamp = time.monotonic_ns() % 10**8
        speakers = []
        async with api.LiveKitAPI(ep.http_url, ep.api_key, ep.api_secret) as lk:
            for i in range(rooms):
                name = f"soak-{i}-{stamp}"
                room = rtc.Room()
                await room.connect(ep.url, token(ep, "listener", name))
                listeners.append(room)
                speakers.append(Speaker(room, name))
                await lk.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(agent_name=AGENT, room=name)
                )
        t0 = time.monotonic()
        until = t0 + minutes * 60
        wav = utterance_wav()
        runs = [asyncio.create_task(s.run(wav, until), name=f"soak.{s.name}") for s in speakers]
        print(f"soak: {rooms} rooms x {minutes} min, sample every {interval} s", flush=True)
        print(HEADER, flush=True)
        samples: list[Sample] = []
        while time.monotonic() < until:
            await asyncio.sleep(min(interval, max(until - time.monotonic(), 0)))
            samples.append(sample(worker, t0, speakers))
            print(row(samples[-1]), flush=True)
            if worker.returncode is not None:
                raise RuntimeError(f"worker exited with {worker.returncode}")
        await asyncio.gather(*runs)
        after = [s for s in samples if s.t >= warmup]
        if len(after) >= 2:
            print(growth(after[0], after[-1]), flush=True)
        ended = sum(s.ended for s in speakers)
        print(f"utterances sent {samples[-1].utterances}, ended {ended}", flush=True)
    finally:
        for room in listeners:
            await room.disconnect()
        await worker.aclose()
        await server.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds before the baseline")
    args = parser.parse_args()
    asyncio.run(soak(args.rooms, args.minutes, args.interval, args.warmup))


if __name__ == "__main__":
    main()
