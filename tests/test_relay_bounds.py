"""Issue 13, defect 7: nothing the relay keeps may grow without bound, and nothing it starts
may outlive its caller. Unit tests: no LiveKit server is needed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc
from prometheus_client import CollectorRegistry

from avatar_relay.protocol import AnimationFrames, AudioData, ConversationEnd, ConversationStart
from avatar_relay.relay.metrics import RelayMetrics
from avatar_relay.relay.publisher import MessagePublisher
from avatar_relay.relay.tts import EspeakTts, TtsError
from avatar_relay.settings import TtsSettings, make_settings
from avatar_relay.worker import build_server

BOUND = 64 * 1024


class StalledPublisher(MessagePublisher):
    """The real publisher on a data channel that takes nothing until ``release`` is set."""

    def __init__(self, metrics: RelayMetrics) -> None:
        super().__init__(room=rtc.Room(), topic="t", metrics=metrics, max_queued_bytes=BOUND)
        self.release = asyncio.Event()
        self.published: list[bytes] = []

    async def _publish(self, packet: bytes, destinations: list[str]) -> None:
        await self.release.wait()
        self.published.append(packet)


def start_message(cid: str) -> ConversationStart:
    return ConversationStart(cid, 0, "arkit-u8", 25.0, ("jawOpen",), 24000, "avatar-audio")


class TestPublisherQueueIsBounded:
    """Audio as data (transport data/both) used to queue without limit behind a stalled
    data channel; now the oldest audio/animation makes room, counted and logged."""

    async def test_a_stalled_channel_keeps_the_queue_bounded_and_reports_every_drop(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        metrics = RelayMetrics("room", CollectorRegistry())
        publisher = StalledPublisher(metrics)
        publisher.start()
        audio = bytes(4800)  # 100 ms at 24 kHz
        caplog.set_level(logging.WARNING, logger="avatar_relay.relay")
        publisher.send(start_message("c1"))
        for i in range(200):  # 20 s of audio, about 1 MB
            publisher.send(AudioData("c1", i + 1, i * 2400, audio), expires_at=None)
            assert publisher.queued_bytes <= BOUND
        publisher.send(ConversationEnd("c1", 201, 0, 200 * 2400))
        dropped = metrics.packets_dropped._value.get()
        assert dropped > 150
        assert [r.getMessage() for r in caplog.records].count(
            "data channel backed up, dropping animation and audio messages"
        ) == 1  # once per backlog, not once per message
        publisher.release.set()
        await asyncio.wait_for(publisher.aclose(), 5)
        # The control messages survived the backlog; what was dropped is what was counted.
        assert len(publisher.published) == 2 + 200 - dropped
        assert any(r.getMessage() == "data channel caught up" for r in caplog.records)

    async def test_control_messages_are_never_dropped(self) -> None:
        metrics = RelayMetrics("room", CollectorRegistry())
        publisher = StalledPublisher(metrics)
        publisher.start()
        frame = bytes(60)
        for i in range(3000):
            publisher.send(AnimationFrames("c", i, i * 10, (frame,) * 10), expires_at=None)
        for i in range(50):
            publisher.send(start_message(f"c{i}"))
        publisher.release.set()
        await asyncio.wait_for(publisher.aclose(), 5)
        assert metrics.packets_dropped._value.get() > 0
        assert metrics.packets_sent._value.get() >= 50


class TestEspeakIsKilledWithItsCall:
    async def test_cancelling_synthesize_kills_the_process(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        started: asyncio.Future[asyncio.subprocess.Process] = asyncio.Future()
        real_exec = asyncio.create_subprocess_exec

        async def recording_exec(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
            # A stand-in espeak-ng that never answers.
            proc = await real_exec("sleep", "60", **kwargs)
            started.set_result(proc)
            return proc

        monkeypatch.setattr(asyncio, "create_subprocess_exec", recording_exec)
        tts = EspeakTts(TtsSettings())
        tts._binary = "espeak-ng"
        task = asyncio.create_task(tts.synthesize("hello"), name="test.tts")
        proc = await asyncio.wait_for(started, 10)
        try:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert proc.returncode is not None, "espeak-ng outlived its cancelled call"
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def test_a_missing_binary_is_a_tts_error(self) -> None:
        tts = EspeakTts(TtsSettings())
        tts._binary = None
        with pytest.raises(TtsError, match="not installed"):
            await tts.synthesize("hi")


class TestMetricsDirectoryIsDeleted:
    def test_the_temporary_metrics_directory_goes_when_the_server_closes(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
        server = build_server(make_settings(agent={"failover": False}))
        metrics_dir = server._prometheus_multiproc_dir
        assert metrics_dir is not None and Path(metrics_dir).is_dir()
        asyncio.run(server.aclose())
        assert not Path(metrics_dir).exists()

    def test_a_directory_given_by_the_user_is_kept(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        server = build_server(make_settings(agent={"failover": False}))
        asyncio.run(server.aclose())
        assert tmp_path.is_dir()

    def test_no_directory_without_metrics(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
        server = build_server(make_settings(agent={"metrics_port": None, "failover": False}))
        assert server._prometheus_multiproc_dir is None
