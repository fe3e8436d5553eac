"""The producer's side of one conversation: push audio, end it, interrupt it, await it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

import numpy as np
from livekit import rtc

from .conversation import Conversation, PlaybackResult
from .interfaces import Int16Array


class ConversationHandle:
    """What a producer (voice agent output, WAV, TTS) holds to feed one conversation.

    Use it as an async context manager: leaving the block ends the conversation, and leaving
    it by an exception (a cancelled RPC, a failed producer) interrupts it, so a conversation
    is never left open for everything queued behind it to wait on::

        async with relay.open_conversation() as handle:
            handle.push_pcm(pcm)
    """

    def __init__(
        self,
        conversation: Conversation,
        *,
        sample_rate: int,
        on_interrupt: Callable[[Conversation], None],
    ) -> None:
        self._conv = conversation
        self._rate = sample_rate
        self._on_interrupt = on_interrupt
        self._resampler: rtc.AudioResampler | None = None
        self._resampler_rate = 0

    @property
    def id(self) -> str:
        return self._conv.id

    def push_pcm(self, pcm: bytes | Int16Array) -> None:
        """PCM s16le mono at the relay's sample rate."""
        if isinstance(pcm, bytes | bytearray | memoryview):
            if len(pcm) % 2:
                raise ValueError("PCM s16le needs an even number of bytes")
            pcm = np.frombuffer(pcm, dtype=np.int16)
        self._conv.push(pcm)

    def push_frame(self, frame: rtc.AudioFrame) -> None:
        """Any rate and channel count; converted to the relay's mono rate."""
        data = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            data = data.reshape(-1, frame.num_channels).mean(axis=1).round().astype(np.int16)
        if frame.sample_rate == self._rate:
            self.push_pcm(data)
            return
        if self._resampler is None or self._resampler_rate != frame.sample_rate:
            self._resampler = rtc.AudioResampler(frame.sample_rate, self._rate, num_channels=1)
            self._resampler_rate = frame.sample_rate
        mono = rtc.AudioFrame(data.tobytes(), frame.sample_rate, 1, len(data))
        for out in self._resampler.push(mono):
            self.push_pcm(np.frombuffer(out.data, dtype=np.int16).copy())

    async def wait_queued_below(self, seconds: float) -> None:
        """Wait until less than ``seconds`` of the pushed audio waits to be played.

        For producers that hold their audio already (a file, a finished synthesis): pushing
        it all at once makes the motion source compute every frame in one go, on the loop
        that paces every room of the process.
        """
        await self._conv.wait_queued_below(max(1, round(seconds * self._rate)))

    def end(self) -> None:
        """No more audio: the conversation ends after what was pushed has played."""
        if self._resampler is not None:
            for out in self._resampler.flush():
                self.push_pcm(np.frombuffer(out.data, dtype=np.int16).copy())
            self._resampler = None
        self._conv.close_input()

    def interrupt(self) -> None:
        self._on_interrupt(self._conv)

    async def __aenter__(self) -> ConversationHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end()
        else:
            self.interrupt()

    async def wait_for_playout(self) -> PlaybackResult:
        return await asyncio.shield(self._conv.result)
