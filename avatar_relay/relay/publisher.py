"""Sends protocol messages on the room's data channel, in order, from one owned task.

Senders enqueue without awaiting, so the frame pacer's timing is never held up by the
network; the single sender task keeps every packet in the order it was enqueued.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

from livekit import rtc

from ..protocol import Message, Packetizer
from .interfaces import Clock, Publisher, loop_clock
from .log import ctx, logger
from .metrics import RelayMetrics


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class _Outgoing:
    packets: list[bytes]
    destinations: list[str]
    expires_at: float | None


class MessagePublisher(Publisher):
    """Encodes messages to packets (fragmenting when needed) and publishes them reliably."""

    def __init__(
        self, *, room: rtc.Room, topic: str, metrics: RelayMetrics, clock: Clock = loop_clock
    ) -> None:
        self._room = room
        self._clock = clock
        self._topic = topic
        self._metrics = metrics
        # A random first fragment id: receivers never splice fragments across relay restarts.
        self._packetizer = Packetizer(first_message_id=secrets.randbelow(2**31))
        self._queue: asyncio.Queue[_Outgoing | None] = asyncio.Queue()
        self._send_atask: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._send_atask is None:
            self._send_atask = asyncio.create_task(self._send_loop(), name="relay.publisher")

    def send(
        self, msg: Message, *, to: list[str] | None = None, expires_at: float | None = None
    ) -> None:
        """Queue a message for sending now (to everyone, or to ``to``); never blocks.

        A message still queued at clock time ``expires_at`` is dropped (counted): when the
        data channel backs up, animation whose audio has already played is worthless, and
        dropping it keeps the queue, and the delay of everything behind it, bounded.
        """
        packets = self._packetizer.packetize(msg)
        self._queue.put_nowait(_Outgoing(packets, to or [], expires_at))

    async def _send_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if item.expires_at is not None and self._clock() > item.expires_at:
                self._metrics.packets_expired.inc(len(item.packets))
                continue
            destinations = item.destinations
            for packet in item.packets:
                try:
                    await self._room.local_participant.publish_data(
                        packet,
                        reliable=True,
                        topic=self._topic,
                        destination_identities=destinations,
                    )
                except Exception as exc:  # the room is going away; nothing to resend to
                    logger.warning(
                        "data packet not sent", extra=ctx(self._room.name, error=repr(exc))
                    )
                    self._metrics.packets_failed.inc()
                else:
                    self._metrics.packets_sent.inc()
                    self._metrics.bytes_sent.inc(len(packet))

    async def aclose(self) -> None:
        if self._send_atask is None:
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(self._send_atask, 5)
        except TimeoutError:
            self._send_atask.cancel()
        self._send_atask = None
