"""Cost per room: N rooms speaking at once through one real worker, measured end to end.

A real livekit-server and one real worker (``python -m agent start``, clapperboard motion so
sync is measurable) serve N rooms. Every room speaks the same long WAV at once: clapperboard
bursts over a continuous quiet tone, so any silence inside the speech is a gap. K rooms
(default 2) have a subscribing listener (``AvatarReceiver``) in a separate process; every room
has one non-subscribing controller (this process) that sends the WAV.

    nice .venv/bin/python bench/load.py --rooms 1,5,10,20 [--listened 2] [--seconds 20]
        [--env AVATAR_RELAY_AUDIO__CHUNK_MS=10 ...]

Prints, per N: the worker's CPU over all its processes (cores), its increase per room over
the idle worker, summed USS/PSS of its processes, livekit-server CPU, and at the listeners:
gaps (10 ms chunks of silence inside the speech), late frames (a marker frame's packet
arriving after its audio was heard) with p99 lateness, and |A/V offset| percentiles. The
slope between the smallest and largest N is printed last (the per-room cost).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from livekit import api, rtc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.devserver import (  # noqa: E402
    LiveKitEndpoint,
    LocalLiveKitServer,
    WorkerProcess,
    dispatch_relay,
)
from avatar_relay.motion import clapperboard_audio  # noqa: E402
from avatar_relay.protocol.constants import (  # noqa: E402
    ATTRIBUTE_ROLE,
    ROLE_RELAY,
    SPEAK_AUDIO_STREAM_TOPIC,
)
from avatar_relay.relay.event_routing import route_room_events  # noqa: E402
from avatar_relay.rtc_logs import stop_forwarding_rtc_logs  # noqa: E402

WAV_RATE = 24000
PERIOD_S = 0.52
OFFSET_S = 0.2
TONE_HZ = 300.0
TONE_AMPLITUDE = 400
"""The quiet tone under the speech (about -38 dBFS): a 10 ms chunk below GAP_RMS is silence."""
GAP_RMS = 60.0
WARMUP_S = 3.0
"""CPU is measured from this long after the WAVs were sent ..."""
TAIL_S = 3.0
"""... until this long before the speech ends."""


def token(ep: LiveKitEndpoint, identity: str, room: str, *, subscribe: bool) -> str:
    return (
        api.AccessToken(ep.api_key, ep.api_secret)
        .with_identity(identity)
        .with_attributes({"avatar-relay.controller": "true"})
        .with_grants(api.VideoGrants(room_join=True, room=room, can_subscribe=subscribe))
        .to_jwt()
    )


def speech_wav(seconds: float) -> bytes:
    """Clapperboard bursts over a continuous quiet tone, as a WAV file."""
    bursts = np.frombuffer(
        clapperboard_audio(WAV_RATE, seconds, period_s=PERIOD_S, offset_s=OFFSET_S),
        dtype=np.int16,
    )
    t = np.arange(len(bursts)) / WAV_RATE
    tone = TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)
    pcm = np.clip(bursts.astype(np.float64) + tone, -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(WAV_RATE)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def analyse(viewer: Any) -> dict[str, Any]:
    """A listened room's figures: gaps (silent 10 ms chunks between the first and the last
    chunk of speech), each marker's |A/V offset| and lateness (its packet's arrival after
    its burst was heard; negative: before), with the local times they happened at."""
    from sync import heard_onsets  # bench/sync.py (this script's directory)

    rec = viewer.rec
    rms = [float(np.sqrt(np.mean(a.astype(np.float64) ** 2))) if len(a) else 0.0
           for a in rec.chunk_audio]  # fmt: skip
    loud = [i for i, r in enumerate(rms) if r >= GAP_RMS]
    gap_chunks: list[int] = []
    gap_first: list[int] = []
    run = 0
    if loud:
        for i in range(loud[0], loud[-1] + 1):
            if rms[i] < GAP_RMS:
                run += 1
            elif run:
                gap_chunks.append(run)
                gap_first.append(i - run)
                run = 0
    chunk_ms = 1000 * len(rec.chunk_audio[0]) / rec.sample_rate if rec.chunk_audio else 10
    heard = heard_onsets(rec)
    offsets: list[float] = []
    lateness: list[float] = []
    late_at: list[float] = []
    marker_times: list[float] = []
    for cid, k, presented in rec.marker_frame_presented:
        if not heard:
            break
        nearest = min(heard, key=lambda t, p=presented: abs(t - p))  # type: ignore[misc]
        if abs(nearest - presented) > 0.25:
            continue
        offsets.append((presented - nearest) * 1000)
        arrived = rec.marker_arrived.get((cid, k))
        if arrived is not None:
            lateness.append((arrived - nearest) * 1000)
            marker_times.append(nearest)
            if arrived > nearest:
                late_at.append(round(nearest - heard[0], 2))
    return {
        "gaps": len(gap_chunks),
        "gap_ms": sum(gap_chunks) * chunk_ms,
        "longest_gap_ms": max(gap_chunks, default=0) * chunk_ms,
        "gaps_at_s": [round((g - loud[0]) * chunk_ms / 1000, 2) for g in gap_first],
        "gap_times": [rec.chunk_times[g] for g in gap_first],
        "late_at_s": late_at,
        "markers": len(offsets),
        "offsets": offsets,
        "lateness": lateness,
        "marker_times": marker_times,
    }


# -- the listener process --------------------------------------------------------------------
async def listen(args: argparse.Namespace) -> None:
    """Join ``args.listen`` rooms with AvatarReceiver; report each room's figures as JSON."""
    from sync import Viewer  # bench/sync.py (this script's directory)

    ep = LiveKitEndpoint(args.url, args.api_key, args.api_secret, "")
    viewers: list[Viewer] = []
    for name in args.listen.split(","):
        room = rtc.Room()
        await room.connect(ep.url, token(ep, f"listener-{name}", name, subscribe=True))
        route_room_events(room)
        viewer = Viewer(room)
        await viewer.start()
        viewers.append(viewer)
    async with asyncio.timeout(60):
        for v in viewers:
            await v.relay_ready.wait()
            await v.wait_audio_flowing()
    print("ready", flush=True)
    ended: set[str] = set()
    try:
        async with asyncio.timeout(args.seconds * 3 + 30):
            for v in viewers:
                await v.conversation_ended.wait()
                v.relay_idle.clear()
                await v.relay_idle.wait()
                ended.add(v.room.name)
    except TimeoutError:
        pass  # a collapsed relay: report what was received ("ended": false)
    results = [dict(analyse(v), room=v.room.name, ended=v.room.name in ended) for v in viewers]
    print("result " + json.dumps(results), flush=True)
    for v in viewers:
        await v.aclose()
        await v.room.disconnect()


# -- measuring processes ---------------------------------------------------------------------
def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_snapshot(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots (a process born in between counts from 0)."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def memory(procs: list[psutil.Process]) -> tuple[float, float, int]:
    """Summed USS and PSS (MiB) and the number of processes."""
    uss = pss = 0.0
    n = 0
    for p in procs:
        try:
            m = p.memory_full_info()
        except psutil.Error:
            continue
        uss += m.uss
        pss += getattr(m, "pss", 0)
        n += 1
    return uss / 2**20, pss / 2**20, n


@dataclass
class Row:
    rooms: int
    worker_cores: float
    server_cores: float
    uss_mib: float
    pss_mib: float
    processes: int
    listened: list[dict[str, Any]]


# -- one scenario ----------------------------------------------------------------------------
class Controller:
    """A non-subscribing participant that waits for the relay and sends it the WAV."""

    def __init__(self, room_name: str) -> None:
        self.name = room_name
        self.room = rtc.Room()
        self._relay_changed = asyncio.Event()
        self.room.on("participant_connected", lambda *_: self._relay_changed.set())
        self.room.on("participant_attributes_changed", lambda *_: self._relay_changed.set())

    def relay(self) -> str | None:
        for p in self.room.remote_participants.values():
            if p.attributes.get(ATTRIBUTE_ROLE) == ROLE_RELAY:
                return p.identity
        return None

    async def wait_relay(self) -> str:
        while (identity := self.relay()) is None:
            self._relay_changed.clear()
            await self._relay_changed.wait()
        return identity


async def scenario(
    ep: LiveKitEndpoint,
    worker: WorkerProcess,
    server_pid: int,
    n: int,
    args: argparse.Namespace,
    wav: bytes,
) -> Row:
    tag = uuid.uuid4().hex[:5]
    names = [f"load-{tag}-{i}" for i in range(n)]
    controllers = [Controller(name) for name in names]
    await asyncio.gather(
        *(c.room.connect(ep.url, token(ep, f"ctl-{c.name}", c.name, subscribe=False),
                         rtc.RoomOptions(auto_subscribe=False))
          for c in controllers)
    )  # fmt: skip
    for c in controllers:
        route_room_events(c.room)  # the bench's own cost is not what it measures
    ended_before = worker.output.count("relay job ended")
    for name in names:
        await dispatch_relay(ep, name, "avatar-relay")
    async with asyncio.timeout(120):
        relays = await asyncio.gather(*(c.wait_relay() for c in controllers))
    listened = names[: min(args.listened, n)]
    listener = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--listen", ",".join(listened), "--url", ep.url,
        "--api-key", ep.api_key, "--api-secret", ep.api_secret, "--seconds", str(args.seconds),
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert listener.stdout is not None
    try:
        async with asyncio.timeout(90):
            line = (await listener.stdout.readline()).decode()
        if line.strip() != "ready":
            raise RuntimeError(f"listener failed: {line!r}")
        server = psutil.Process(server_pid)
        await asyncio.gather(
            *(c.room.local_participant.send_bytes(
                wav, topic=SPEAK_AUDIO_STREAM_TOPIC, destination_identities=[relay])
              for c, relay in zip(controllers, relays, strict=True))
        )  # fmt: skip
        await asyncio.sleep(WARMUP_S)  # a measurement window, not a wait for an event
        procs = tree(worker.pid or 0)
        w0, s0, t0 = cpu_snapshot(procs), cpu_snapshot([server]), time.monotonic()
        await asyncio.sleep(max(args.seconds - WARMUP_S - TAIL_S, 1.0))
        procs = tree(worker.pid or 0)
        w1, s1, t1 = cpu_snapshot(procs), cpu_snapshot([server]), time.monotonic()
        async with asyncio.timeout(args.seconds * 3 + 120):
            while not (line := (await listener.stdout.readline()).decode()).startswith("result"):
                if not line:
                    raise RuntimeError("listener exited without a result")
        results = json.loads(line.split(" ", 1)[1])
        # Rooms still joined; read after the speech because reading PSS walks the processes'
        # page tables under their memory-map lock, which stalled the relay mid-speech.
        uss, pss, count = memory(procs)
        if args.verbose:
            for r in results:
                print(
                    f"  {r['room']}: gaps at s {r['gaps_at_s']}, late markers at s "
                    f"{r['late_at_s']} ({[round(x) for x in r['lateness'] if x > 0]} ms)",
                    flush=True,
                )
    finally:
        if listener.returncode is None:
            listener.kill()
        await listener.wait()
        async with api.LiveKitAPI(ep.http_url, ep.api_key, ep.api_secret) as lk:
            for name in names:
                await lk.room.delete_room(api.DeleteRoomRequest(room=name))
        for c in controllers:
            await c.room.disconnect()
        async with asyncio.timeout(60):
            while worker.output.count("relay job ended") < ended_before + n:
                await worker.wait_for_output("relay job ended", after=worker.line_count)
    span = t1 - t0
    return Row(n, cpu_between(w0, w1) / span, cpu_between(s0, s1) / span, uss, pss, count, results)


def print_row(row: Row, idle: float, file: Any = sys.stdout) -> None:
    rooms = row.listened
    offsets = [abs(o) for r in rooms for o in r["offsets"]]
    lateness = [x for r in rooms for x in r["lateness"]]
    late = sum(x > 0 for x in lateness)
    gaps = ", ".join(
        f"{r['gaps']}/{r['gap_ms']:.0f}/{r['longest_gap_ms']:.0f}"
        + ("" if r["ended"] else " (no end)")
        for r in rooms
    )
    per_room = (row.worker_cores - idle) / row.rooms
    print(
        f"| {row.rooms} | {row.worker_cores:.3f} | {per_room:.3f} | {row.uss_mib:.0f} / "
        f"{row.pss_mib:.0f} ({row.processes}) | {row.server_cores:.3f} | {gaps} | "
        f"{late}/{len(lateness)}, p99 {pct(lateness, 99):+.0f} | "
        f"{pct(offsets, 50):.1f} / {pct(offsets, 95):.1f} / {pct(offsets, 99):.1f} |",
        file=file,
        flush=True,
    )


HEADER = (
    "| rooms | worker cores | per room over idle | USS / PSS MiB (procs) | server cores "
    "| gaps n/ms/longest per listened room | late frames, p99 lateness ms "
    "| \\|offset\\| p50 / p95 / p99 ms |\n|---|---|---|---|---|---|---|---|"
)


async def run(args: argparse.Namespace) -> None:
    counts = [int(x) for x in args.rooms.split(",")]
    env = {"AVATAR_RELAY_MOTION__SOURCE": "clapperboard", "AVATAR_RELAY_AGENT__METRICS_PORT": "0"}
    env.update(dict(kv.split("=", 1) for kv in args.env))
    wav = speech_wav(args.seconds)
    print(f"uptime: {os.getloadavg()} env: {args.env}", flush=True)
    server = LocalLiveKitServer()
    ep = await server.start()
    worker = WorkerProcess(ep, env=env, log_path=Path(args.worker_log))
    await worker.start()
    try:
        assert worker.pid is not None and server.pid is not None
        procs = tree(worker.pid)
        await asyncio.sleep(2)  # let the warm processes settle
        before, t0 = cpu_snapshot(procs), time.monotonic()
        await asyncio.sleep(5)
        procs = tree(worker.pid)
        idle = cpu_between(before, cpu_snapshot(procs)) / (time.monotonic() - t0)
        uss, pss, count = memory(procs)
        print(f"idle worker: {idle:.3f} cores, USS/PSS {uss:.0f}/{pss:.0f} MiB ({count} procs)")
        print(HEADER, flush=True)
        rows = []
        for n in counts:
            row = await scenario(ep, worker, server.pid, n, args, wav)
            rows.append(row)
            print_row(row, idle)
        if len(rows) > 1:
            lo, hi = rows[0], rows[-1]
            slope = (hi.worker_cores - lo.worker_cores) / (hi.rooms - lo.rooms)
            srv = (hi.server_cores - lo.server_cores) / (hi.rooms - lo.rooms)
            print(f"\nworker slope {lo.rooms}->{hi.rooms} rooms: {slope:.3f} core per room; "
                  f"livekit-server {srv:.3f}")  # fmt: skip
        offsets_all = [o for r in rows for x in r.listened for o in x["offsets"]]
        if offsets_all:
            print(f"mean signed offset {statistics.mean(offsets_all):+.1f} ms")
        print(f"uptime after: {os.getloadavg()}")
    finally:
        await worker.aclose()
        await server.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", default="1,5,10,20", help="comma-separated room counts")
    parser.add_argument("--listened", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.8)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the worker")
    parser.add_argument("--worker-log", default="/tmp/avatar-relay-load-worker.log")
    parser.add_argument("--verbose", action="store_true", help="print where the gaps were")
    parser.add_argument("--listen", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--api-secret", help=argparse.SUPPRESS)
    args = parser.parse_args()
    stop_forwarding_rtc_logs()  # the bench's own participants: keep their cost down
    asyncio.run(listen(args) if args.listen else run(args))


if __name__ == "__main__":
    main()
