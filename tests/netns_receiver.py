"""A receiver participant for the network fault tests, run inside a network namespace.

``ip netns exec NS python -m netns_receiver URL TOKEN`` joins the room, runs the real
:class:`AvatarReceiver` and reports on stdout, one JSON object per line:

- ``{"ev": "connected"}`` once joined;
- ``{"ev": "relay_joined" | "relay_left", "id": ...}``;
- ``{"ev": "run", "loud", "t0", "t1", "seconds"}`` for each finished loud or quiet run of
  presented audio (see ``audio_timeline``);
- ``{"ev": "stats", "open": run, "protocol_errors", "rss_mb", "lag_s", ...}`` every 0.25 s
  (``lag_s``: how late its event loop woke for that report, i.e. CPU starvation);
- ``{"ev": "closed", ...}`` with the final stats, once stdin is closed (its stop signal).

Times are ``time.monotonic()``, which the namespace shares with the test process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import asdict
from typing import Any

from audio_timeline import HeardAudio, Run
from livekit import rtc

from avatar_relay.client import AvatarReceiver

STATS_INTERVAL_S = 0.25


def emit(ev: str, **fields: Any) -> None:
    print(json.dumps({"ev": ev, "t": time.monotonic(), **fields}), flush=True)


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stats(heard: HeardAudio, room: rtc.Room, lag_s: float = 0.0) -> dict[str, Any]:
    runs = heard.timeline.runs
    return {
        "lag_s": round(lag_s, 3),
        "open": asdict(runs[-1]) if runs else None,
        "protocol_errors": heard.protocol_errors,
        "dropped_chunks": heard.receiver.dropped_chunks,
        "relay": heard.receiver.relay_identity,
        "rss_mb": round(rss_mb(), 1),
        "state": int(room.connection_state),
    }


async def main(url: str, token: str) -> None:
    room = rtc.Room()
    await room.connect(url, token)
    emit("connected")
    heard = HeardAudio(AvatarReceiver(room))
    heard.timeline.on_run_closed = lambda run: emit("run", **asdict(run))
    heard.receiver.on("relay_joined", lambda p: emit("relay_joined", id=p.identity))
    heard.receiver.on("relay_left", lambda p: emit("relay_left", id=p.identity))
    room.on("reconnecting", lambda: emit("reconnecting"))
    room.on("reconnected", lambda: emit("reconnected"))
    heard.receiver.start()
    heard.start()

    async def report() -> None:
        lag = 0.0  # how late the previous report's wake-up was: this process was starved
        while True:
            emit("stats", **stats(heard, room, lag))
            due = time.monotonic() + STATS_INTERVAL_S
            await asyncio.sleep(STATS_INTERVAL_S)
            lag = time.monotonic() - due

    report_atask = asyncio.create_task(report(), name="netns-receiver.report")
    try:
        await asyncio.to_thread(sys.stdin.read)  # the parent closes stdin to stop us
    finally:
        report_atask.cancel()
        await asyncio.gather(report_atask, return_exceptions=True)
        final = stats(heard, room)
        await heard.aclose()
        await room.disconnect()
        emit("closed", **final)


def parse_run(fields: dict[str, Any]) -> Run:
    return Run(
        loud=bool(fields["loud"]),
        t0=float(fields["t0"]),
        t1=float(fields["t1"]),
        seconds=float(fields["seconds"]),
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
