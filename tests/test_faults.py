"""Issue 12's server faults, with the failover reconciler running: no false failover."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from conftest import LOG_DIR, make_token
from failover_helpers import RelayWatch, relay_identities, send_wav
from livekit import rtc
from relay_helpers import CONTROLLER, Listener, espeak_wav
from test_failover import AGENT, WORKER_ENV

from agent.devserver import LocalLiveKitServer, WorkerProcess, dispatch_relay
from avatar_relay.protocol import ConversationEnd, ConversationStart, Interrupt

pytestmark = pytest.mark.e2e
PAUSE_S = 5.0


async def test_server_paused_5s_is_not_taken_for_dead_relays() -> None:
    """SIGSTOP of livekit-server stops every heartbeat at once; when it resumes, the
    reconciler must not remove the (live) relay nor dispatch the room again, and the
    conversation playing through the pause completes."""
    server = LocalLiveKitServer(log_dir=LOG_DIR)
    ep = await server.start()
    worker = WorkerProcess(ep, env=WORKER_ENV, log_path=LOG_DIR / "worker-fault-pause.log")
    viewer = rtc.Room()
    try:
        await worker.start()
        await viewer.connect(ep.url, make_token(ep, "viewer", "pause", attributes=CONTROLLER))
        watch = RelayWatch(viewer)
        await dispatch_relay(ep, "pause", AGENT)
        async with asyncio.timeout(30):
            relay = await watch.wait_relay()
        listener = Listener(viewer)
        wav = espeak_wav(
            "This sentence keeps playing while the server is paused for five seconds, "
            "and it still ends properly after the pause."
        )
        await send_wav(viewer, relay, wav)
        async with asyncio.timeout(20):
            start = await listener.wait_for(ConversationStart)
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        try:
            await asyncio.wait_for(asyncio.Event().wait(), PAUSE_S)  # the fault window itself
        except TimeoutError:
            pass
        finally:
            os.kill(server.pid, signal.SIGCONT)
        async with asyncio.timeout(30):
            await listener.wait_for(ConversationEnd, start.conversation_id)  # type: ignore[attr-defined]
        await listener.aclose()
        assert not listener.of(Interrupt)
        assert relay_identities(viewer) == {relay}
        assert "dispatching again" not in worker.output
        assert "heartbeat lost" not in worker.output
    finally:
        await viewer.disconnect()
        await worker.aclose()
        await server.aclose()
