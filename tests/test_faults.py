"""Issue 12's fault tests, through real servers and a real worker (reconciler running).

Each sends speech over a continuous quiet tone (``audio_timeline``), so every 10 ms chunk of
an utterance is audible and any quiet chunk while it plays is audio lost. Each asserts:
the only gaps lie inside the fault window (its start to the moment audio is heard again,
widened by :data:`EDGE_SLACK_S` for jitter buffers), the audio lost is at most the window,
the audio after the fault plays complete, and no receiver counted a protocol error.

Faults: a receiver in a network namespace partitioned for 5 s (veth link down); such a
receiver's link starved (``tbf`` far below the relay's rate: what must hold is that nobody
else notices, nothing crashes or grows, and the receiver takes the relay back and hears the
next utterance once the link is free); livekit-server paused (SIGSTOP) 5 s; livekit-server
SIGKILLed and restarted on the same ports. Job and worker SIGKILL are in test_failover.py.

One server, worker and namespace serve the whole module (each test has its own room and
receiver process); the restart, which replaces the server's process, runs last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from audio_timeline import HeardAudio, Run, gaps_outside, speech_over_tone_wav, wav_seconds
from conftest import LOG_DIR, make_token
from failover_helpers import RelayWatch, relay_identities, send_wav, wait_job_started
from livekit import api, rtc
from netns import NamespaceReceiver, VethNamespace, available
from relay_helpers import CONTROLLER, Listener
from test_failover import AGENT, WORKER_ENV

from agent.devserver import LocalLiveKitServer, WorkerProcess, dispatch_relay
from avatar_relay.protocol import ConversationEnd, ConversationStart, Interrupt

pytestmark = pytest.mark.e2e
PAUSE_S = 5.0
PARTITION_S = 5.0
EDGE_SLACK_S = 0.5
"""Chunks this close to a fault window's edges count as inside it (jitter buffer, PLC)."""
LOSS_SLACK_S = 0.5
"""Audio lost may exceed the fault window by this much (the chunks at its edges)."""
RECOVERY_BOUND_S = 10.0
"""After the fault ends, audio must be heard again within this."""
SETTLE_S = 1.0
"""Quiet time a receiver gets after a fault before the next utterance is measured."""
COMPLETE_S = 0.15
STUTTER_S = 0.3
"""An utterance after the fault is complete when at most this much of it is missing."""

LONG_TEXT = (
    "This sentence keeps playing through the fault, over a quiet tone that never stops, "
    "so that every moment of lost audio shows up as a gap in what the listener heard."
)
SHORT_TEXT = "The next utterance plays complete."
MEDIUM_TEXT = "While one link is congested, the other listener hears every word of this."
"""Congestion lasts this utterance: the longer, the more the starved link's reliable data
queues up, and the longer it takes to drain once the link is free."""


@pytest.fixture(scope="module")
def long_wav() -> bytes:
    return speech_over_tone_wav(LONG_TEXT)


@pytest.fixture(scope="module")
def short_wav() -> bytes:
    return speech_over_tone_wav(SHORT_TEXT)


@pytest.fixture(scope="module")
def medium_wav() -> bytes:
    return speech_over_tone_wav(MEDIUM_TEXT)


@dataclass
class Shared:
    """One server and one worker (reconciler running) for the whole module, and, where
    network namespaces are available, one namespace the server also serves."""

    server: LocalLiveKitServer
    worker: WorkerProcess
    ns: VethNamespace | None


@pytest.fixture(scope="module")
async def shared() -> AsyncIterator[Shared]:
    async with contextlib.AsyncExitStack() as stack:
        ns = (
            None
            if available() is not None
            else await stack.enter_async_context(VethNamespace.create())
        )  # deleted with both veth ends however the module ends
        server = LocalLiveKitServer(log_dir=LOG_DIR, extra_address=ns.host_ip if ns else None)
        ep = await server.start()
        stack.push_async_callback(server.aclose)
        worker = WorkerProcess(ep, env=WORKER_ENV, log_path=LOG_DIR / "worker-faults.log")
        stack.push_async_callback(worker.aclose)
        await worker.start()
        yield Shared(server, worker, ns)


@dataclass
class Stack:
    """The shared server and worker, a room with its relay, a controlling viewer that also
    listens, and the worker's output from this room's start on."""

    server: LocalLiveKitServer
    worker: WorkerProcess
    viewer: rtc.Room
    heard: HeardAudio
    room: str
    relay: str
    job_pid: int
    mark: int

    @property
    def worker_output(self) -> str:
        return self.worker.output_since(self.mark)


@contextlib.asynccontextmanager
async def stack(shared: Shared, tag: str) -> AsyncIterator[Stack]:
    ep = shared.server.endpoint
    viewer = rtc.Room()
    heard: HeardAudio | None = None
    room = f"fault-{tag}-{time.monotonic_ns() % 10**8}"
    mark = shared.worker.line_count
    try:
        await viewer.connect(ep.url, make_token(ep, "viewer", room, attributes=CONTROLLER))
        heard = HeardAudio.in_room(viewer)
        watch = RelayWatch(viewer)
        await dispatch_relay(ep, room, AGENT)
        async with asyncio.timeout(30):
            _, pid = await wait_job_started([shared.worker], room, [mark])
            relay = await watch.wait_relay()
        yield Stack(shared.server, shared.worker, viewer, heard, room, relay, pid, mark)
    finally:
        # How much silence the relay padded in because the speech came slower than real time.
        for line in shared.worker.output_since(mark).splitlines():
            if "conversation ended" in line:
                print(line[line.find("{") :])
        if heard is not None:
            await heard.aclose()
        await viewer.disconnect()
        # The job ends now rather than after its empty-room grace, while the next test runs.
        with contextlib.suppress(Exception):
            async with api.LiveKitAPI(ep.http_url, ep.api_key, ep.api_secret) as lk:
                await asyncio.wait_for(lk.room.delete_room(api.DeleteRoomRequest(room=room)), 10)


def assert_only_in_window(gaps: list[Run], window: tuple[float, float]) -> None:
    """No gap outside the fault window, except relay stutter under CPU starvation.

    On a shared 2-core machine at load 40 the relay's 100 ms audio queue sometimes runs dry
    for a few chunks (silence is inserted, nothing is dropped: the tone resumes where it
    was); seen at the start of an utterance, never on an idle machine. Those are allowed up
    to :data:`STUTTER_S` in total, and printed."""
    assert_no_gaps(gaps_outside(gaps, window, slack_s=EDGE_SLACK_S))


def assert_no_gaps(outside: list[Run]) -> None:
    """No gap, but for relay stutter (see :func:`assert_only_in_window`)."""
    if outside:
        print(f"stutter outside the fault window: {describe(outside)}")
    assert sum(g.span for g in outside) <= STUTTER_S, describe(outside)


def describe(gaps: list[Run]) -> str:
    """Each gap's span and start; ``(hole)``: nothing was presented (the listener's process
    or its audio stream stalled), else quiet audio was (silence inserted or concealed)."""
    return (
        ", ".join(f"{g.span:.2f}s@{g.t0:.2f}{'(hole)' if g.seconds == 0 else ''}" for g in gaps)
        or "none"
    )


async def assert_complete(heard: HeardAudio, wav: bytes, since: float) -> None:
    """The utterance sent at ``since`` is heard whole: no gap, nothing missing."""
    seconds = wav_seconds(wav)
    async with asyncio.timeout(seconds + 15):
        await heard.wait_heard(seconds - COMPLETE_S, since=since)
    assert_no_gaps(heard.timeline.gaps(since=since))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def hold(seconds: float) -> None:
    """The fault window itself: nothing to await but time."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), seconds)


# -- network faults on one receiver ---------------------------------------------------------------

needs_netns = pytest.mark.skipif(available() is not None, reason=str(available()))


@contextlib.asynccontextmanager
async def namespaced(
    shared: Shared, tag: str
) -> AsyncIterator[tuple[Stack, VethNamespace, NamespaceReceiver]]:
    """A room on the shared stack and a receiver in the shared namespace, its link clear."""
    ns = shared.ns
    assert ns is not None
    await ns.heal()  # whatever an earlier test left, the link starts up and unlimited
    await ns.unlimit()
    async with stack(shared, tag) as s:
        ep = s.server.endpoint
        rx = NamespaceReceiver(
            ns,
            s.server.url_at(ns.host_ip),
            make_token(ep, "netns-receiver", s.room),
            log_path=LOG_DIR / f"netns-receiver-{tag}.log",
        )
        try:
            async with asyncio.timeout(30):
                await rx.start()
                await rx.wait_for(lambda r: r.seen("relay_joined", id=s.relay) and r.seen("stats"))
            yield s, ns, rx
        finally:
            final = await rx.aclose()
            print(f"namespace receiver final report: {final}")
            lags = [float(e.get("lag_s", 0.0)) for e in rx.events if e["ev"] == "stats"]
            print(f"receiver loop lag: max {max(lags, default=0.0):.2f} s")
            for e in rx.events:
                if e["ev"] != "stats" or e is rx.events[-1] or float(e.get("lag_s", 0)) > 0.1:
                    print("  ", e)


def rx_relay_drops(rx: NamespaceReceiver) -> str:
    return ", ".join(
        f"{e['ev']}@{e['t']:.2f}" for e in rx.events if e["ev"] in ("relay_left", "relay_joined")
    )


@needs_netns
async def test_receiver_partitioned_5s_recovers_and_hears_the_next_audio(
    shared: Shared, long_wav: bytes, short_wav: bytes
) -> None:
    async with namespaced(shared, "partition") as (s, ns, rx):
        t_send = time.monotonic()
        await send_wav(s.viewer, s.relay, long_wav)
        async with asyncio.timeout(20):
            await rx.wait_for(lambda r: r.full_timeline().heard_s(since=t_send) >= 1.5)
        await ns.partition()
        t_down = time.monotonic()
        try:
            await hold(PARTITION_S)
        finally:
            await ns.heal()
        t_up = time.monotonic()
        async with asyncio.timeout(30):
            # The long utterance is over for both, and the receiver's jitter buffer has had
            # a second of the relay's silence to catch up the delay it built while cut off
            # (NetEq shortens what it plays until then: that is not audio lost).
            await s.heard.wait_quiet_after(t_up)
            await rx.wait_for(lambda r: r.full_timeline().went_quiet_after(t_up, SETTLE_S))
        t_next = time.monotonic()
        await send_wav(s.viewer, s.relay, short_wav)
        short_s = wav_seconds(short_wav)
        async with asyncio.timeout(short_s + 20):
            await rx.wait_for(
                lambda r: r.full_timeline().heard_s(since=t_next) >= short_s - COMPLETE_S
            )
            await s.heard.wait_heard(short_s - COMPLETE_S, since=t_next)
        tl = rx.full_timeline()
        t_back = tl.first_loud_after(t_up)
        assert t_back is not None
        gaps = tl.gaps(since=t_send, until=t_next)
        lost = wav_seconds(long_wav) - tl.heard_s(since=t_send) + tl.heard_s(since=t_next)
        print(
            f"receiver partitioned {t_up - t_down:.2f} s: audio again {t_back - t_up:.2f} s after "
            f"the link came up; gaps {describe(gaps)}; long utterance lost {lost:.2f} s; "
            f"relay {rx_relay_drops(rx)}"
        )
        assert_only_in_window(gaps, (t_down, t_back))
        assert lost <= t_back - t_down + LOSS_SLACK_S
        assert t_back - t_up < RECOVERY_BOUND_S
        assert_no_gaps(tl.gaps(since=t_next))
        assert rx.last_stats["protocol_errors"] == 0
        assert rx.last_stats["relay"] == s.relay  # the same relay, adopted again

        # Nobody else noticed: the viewer heard both utterances whole; the relay stayed.
        vt = s.heard.timeline
        assert_no_gaps(vt.gaps(since=t_send, until=t_next))
        assert_no_gaps(vt.gaps(since=t_next))
        viewer_long = vt.heard_s(since=t_send) - vt.heard_s(since=t_next)
        viewer_short = vt.heard_s(since=t_next)
        print(f"viewer heard {viewer_long:.2f} + {viewer_short:.2f} s")
        assert viewer_long >= wav_seconds(long_wav) - COMPLETE_S, viewer_long
        assert viewer_short >= short_s - COMPLETE_S, viewer_short
        assert relay_identities(s.viewer) == {s.relay}
        assert "dispatching again" not in s.worker_output
        assert s.heard.protocol_errors == 0


CONGESTED_KBIT = 40
"""Below the relay's audio (Opus + RTP) plus its animation packets: the link must drop."""
RSS_GROWTH_BOUND_MB = 60.0


@needs_netns
async def test_congested_receiver_degrades_alone_and_recovers(
    shared: Shared, medium_wav: bytes, short_wav: bytes
) -> None:
    """A link far below the relay's rate starves one receiver. What must hold: the relay and
    the other (host) viewer do not notice, nothing crashes or grows without bound, and once
    the link is free the starved receiver takes the same relay back and hears the next
    utterance whole."""
    async with namespaced(shared, "congest") as (s, ns, rx):
        assert s.server.pid is not None
        job_rss0, server_rss0 = rss_mb(s.job_pid), rss_mb(s.server.pid)
        rx_rss0 = float(rx.last_stats["rss_mb"])
        await ns.limit_rate(CONGESTED_KBIT)
        t_send = time.monotonic()
        try:
            await send_wav(s.viewer, s.relay, medium_wav)
            async with asyncio.timeout(wav_seconds(medium_wav) + 20):
                await s.heard.wait_heard(wav_seconds(medium_wav) - COMPLETE_S, since=t_send)
                await s.heard.wait_quiet_after(t_send)
            qdisc = await ns.qdisc_stats()
        finally:
            await ns.unlimit()
        t_free = time.monotonic()
        congested_heard = rx.full_timeline().heard_s(since=t_send)
        rx_rss_max = max(float(e["rss_mb"]) for e in rx.events if e["ev"] == "stats")
        job_rss, server_rss = rss_mb(s.job_pid), rss_mb(s.server.pid)
        print(
            f"tbf {CONGESTED_KBIT} kbit: congested receiver heard {congested_heard:.2f} of "
            f"{wav_seconds(medium_wav):.2f} s; RSS growth MB: receiver {rx_rss_max - rx_rss0:.1f}, "
            f"job {job_rss - job_rss0:.1f}, server {server_rss - server_rss0:.1f}\n{qdisc}"
        )
        assert " dropped 0," not in qdisc or " overlimits 0 " not in qdisc, "the link never limited"

        # The relay and the other receiver are unaffected.
        vt = s.heard.timeline
        assert_no_gaps(vt.gaps(since=t_send))
        assert relay_identities(s.viewer) == {s.relay}
        assert s.worker.returncode is None
        assert "dispatching again" not in s.worker_output
        assert "Traceback" not in s.worker_output, s.worker_output[-3000:]
        # Bounded memory everywhere, and no crash of the congested receiver.
        assert rx_rss_max - rx_rss0 < RSS_GROWTH_BOUND_MB
        assert job_rss - job_rss0 < RSS_GROWTH_BOUND_MB
        assert server_rss - server_rss0 < RSS_GROWTH_BOUND_MB
        assert not rx.exited

        # Once the link is free again, the receiver takes the relay back (its messages
        # arrive again) and hears the next utterance whole.
        async with asyncio.timeout(RECOVERY_BOUND_S):
            await rx.wait_for(lambda r: r.last_stats.get("relay") == s.relay)
        t_adopted = time.monotonic()
        t_next = time.monotonic()
        await send_wav(s.viewer, s.relay, short_wav)
        short_s = wav_seconds(short_wav)
        async with asyncio.timeout(short_s + 20):
            await rx.wait_for(
                lambda r: r.full_timeline().heard_s(since=t_next) >= short_s - COMPLETE_S
            )
        tl = rx.full_timeline()
        print(
            f"relay adopted again {t_adopted - t_free:.2f} s after the limit was lifted; "
            f"relay {rx_relay_drops(rx)}; next utterance gaps {describe(tl.gaps(since=t_next))}"
        )
        assert_no_gaps(tl.gaps(since=t_next))
        assert rx.last_stats["protocol_errors"] == 0
        assert s.heard.protocol_errors == 0


# -- server faults (last: the restart replaces the shared server's process) --------------------


async def test_server_paused_5s_loses_only_the_pause(shared: Shared, long_wav: bytes) -> None:
    """SIGSTOP of livekit-server stops every heartbeat at once; when it resumes, the
    reconciler must not remove the (live) relay nor dispatch the room again, the
    conversation completes, and the audio lost is the pause and nothing else."""
    async with stack(shared, "pause") as s:
        listener = Listener(s.viewer)
        t_send = time.monotonic()
        await send_wav(s.viewer, s.relay, long_wav)
        async with asyncio.timeout(20):
            start = await listener.wait_for(ConversationStart)
            await s.heard.wait_heard(1.0, since=t_send)
        assert s.server.pid is not None
        os.kill(s.server.pid, signal.SIGSTOP)
        t_stop = time.monotonic()
        try:
            await hold(PAUSE_S)
        finally:
            os.kill(s.server.pid, signal.SIGCONT)
        t_cont = time.monotonic()
        async with asyncio.timeout(30):
            assert isinstance(start, ConversationStart)
            await listener.wait_for(ConversationEnd, start.conversation_id)
            await s.heard.wait_quiet_after(t_cont)
        await listener.aclose()

        tl = s.heard.timeline
        gaps = tl.gaps(since=t_send)
        lost = wav_seconds(long_wav) - tl.heard_s(since=t_send)
        print(f"server paused {t_cont - t_stop:.2f} s: gaps {describe(gaps)}; lost {lost:.2f} s")
        assert_only_in_window(gaps, (t_stop, t_cont))
        assert lost <= t_cont - t_stop + LOSS_SLACK_S
        assert not listener.of(Interrupt)
        assert relay_identities(s.viewer) == {s.relay}
        assert "dispatching again" not in s.worker_output
        assert "heartbeat lost" not in s.worker_output
        assert s.heard.protocol_errors == 0


async def test_server_restart_relay_rejoins_and_the_next_utterance_plays(
    shared: Shared, long_wav: bytes, short_wav: bytes
) -> None:
    """SIGKILL of livekit-server, restarted at once on the same ports: the worker
    re-registers, the relay job rejoins the room, the viewer hears it again; the next
    utterance plays complete. Audio is lost only from the kill to the relay heard again."""
    async with stack(shared, "restart") as s:
        t_send = time.monotonic()
        await send_wav(s.viewer, s.relay, long_wav)
        async with asyncio.timeout(20):
            await s.heard.wait_heard(1.0, since=t_send)
        t_kill = time.monotonic()
        await s.server.kill()
        await s.server.restart()
        t_up = time.monotonic()
        async with asyncio.timeout(30):
            await s.heard.wait_until(lambda tl: tl.first_loud_after(t_up) is not None)
            await s.heard.wait_quiet_after(t_up)
        t_back = s.heard.timeline.first_loud_after(t_up)
        assert t_back is not None
        print(
            f"server SIGKILL + restart: up again after {t_up - t_kill:.2f} s, "
            f"relay heard again {t_back - t_kill:.2f} s after the kill"
        )
        tl = s.heard.timeline
        gaps = tl.gaps(since=t_send, until=t_back + wav_seconds(long_wav))
        assert_only_in_window(gaps, (t_kill, t_back))
        assert t_back - t_up < RECOVERY_BOUND_S

        async with asyncio.timeout(20):
            relay = await RelayWatch(s.viewer).wait_relay()
        t_next = time.monotonic()
        await send_wav(s.viewer, relay, short_wav)
        await assert_complete(s.heard, short_wav, t_next)
        assert s.worker.returncode is None
        assert "Traceback" not in s.worker_output, s.worker_output[-3000:]
        assert s.heard.protocol_errors == 0
