"""Test audio and a Listener that can await any condition on what it received."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
from livekit import rtc
from relay_helpers import LISTEN_RATE, Listener

from avatar_relay.protocol import AnimationFrames, AudioOnly, ConversationEnd, Message


def tone_pcm(seconds: float, rate: int = 24000, freq: float = 440.0) -> np.ndarray:
    """A steady tone: loud from its first to its last sample, so its duration is measurable."""
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 9000).astype(np.int16)


class WatchingListener(Listener):
    """A Listener whose every received message wakes :meth:`wait_until`."""

    def __init__(self, room: rtc.Room) -> None:
        self.updated = asyncio.Event()
        super().__init__(room)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        super()._on_data(packet)
        self.updated.set()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self.updated.clear()
            await self.updated.wait()

    def frame_messages(self, conversation_id: str) -> list[AnimationFrames]:
        return [
            m for m in self.of(AnimationFrames, conversation_id) if isinstance(m, AnimationFrames)
        ]

    def frame_indices(self, conversation_id: str) -> list[int]:
        return [
            i
            for m in self.frame_messages(conversation_id)
            for i in range(m.first_frame, m.first_frame + len(m.frames))
        ]

    def after(self, msg: Message) -> list[Message]:
        """Messages received after ``msg``."""
        return self.messages[self.messages.index(msg) + 1 :]

    def loud_seconds_since(self, first_chunk: int, threshold: int = 300) -> float:
        """Span of loud audio in the chunks received from ``first_chunk`` on."""
        chunks = self.audio[first_chunk:]
        if not chunks:
            return 0.0
        audio = np.concatenate(chunks)
        loud = np.flatnonzero(np.abs(audio) > threshold)
        return 0.0 if len(loud) == 0 else float(loud[-1] - loud[0]) / LISTEN_RATE


def expected_frames(samples: int, rate: int = 24000, fps: int = 25) -> int:
    """One frame per started 1/fps of audio."""
    return -(-samples * fps // rate)


__all__ = [
    "AudioOnly",
    "ConversationEnd",
    "WatchingListener",
    "expected_frames",
    "tone_pcm",
]
