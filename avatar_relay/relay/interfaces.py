"""What the relay's time-critical core depends on: a clock, an audio sink and a publisher.

The core (conversations, pacer, player) takes these as arguments, so unit tests drive it on
virtual time with in-memory fakes, and the room wiring passes the real ones: the event loop's
clock, :class:`~avatar_relay.relay.audio_out.TrackAudioOut` and
:class:`~avatar_relay.relay.publisher.MessagePublisher`.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..protocol import Message

Int16Array = npt.NDArray[np.int16]

Clock = Callable[[], float]
"""Monotonic seconds. It must be the event loop's clock, which asyncio timeouts also use."""


def loop_clock() -> float:
    """The running event loop's clock (``time.monotonic`` on a default loop)."""
    return asyncio.get_running_loop().time()


@dataclass(frozen=True, slots=True)
class EmissionAnchor:
    """At clock time ``at``, sample ``position`` of the current conversation was leaving."""

    at: float
    position: int
    end: int | None = None
    """Position just after the last sample written (None: not known). Samples from here on
    are not in the queue yet, so no extrapolation from ``at`` says when they leave."""


class AudioSink(abc.ABC):
    """A real-time audio queue that is also the media clock: what leaves it is heard.

    Positions count samples of the current conversation (see :meth:`reset_position`).
    """

    sample_rate: int

    @abc.abstractmethod
    async def write(self, pcm: Int16Array) -> EmissionAnchor:
        """Queue int16 mono samples; returns when the queue has room again (pacing)."""

    @abc.abstractmethod
    def anchor(self) -> EmissionAnchor:
        """Which sample is leaving the queue now."""

    @abc.abstractmethod
    def queued_seconds(self) -> float:
        """Audio queued and not yet emitted."""

    @abc.abstractmethod
    def reset_position(self) -> None:
        """The next sample written is position 0; samples still queued count as negative."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Drop everything queued at once (an interrupt; the idle silence ahead of a
        conversation's first audio)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the sink."""


class Publisher(abc.ABC):
    """Sends protocol messages to the room, in order, without blocking the caller."""

    @abc.abstractmethod
    def send(
        self, msg: Message, *, to: list[str] | None = None, expires_at: float | None = None
    ) -> None:
        """Queue ``msg`` (to everyone, or to ``to``); dropped if still queued at ``expires_at``."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start sending."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Send what is queued (bounded), then stop."""
