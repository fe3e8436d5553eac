"""Sends protocol messages on the room's data channel, in order, from one owned task.

Senders enqueue without awaiting, so the frame pacer's timing is never held up by the
network; the single sender task keeps every packet in the order it was enqueued.

Packets go to the rtc SDK through :mod:`.rtc_calls`: up to ``MAX_IN_FLIGHT`` are handed over
before their replies are read (the native side sends a room's packets in order, from a queue
of its own that has no bound, so this one stays the queue that backs up). Each is counted sent
or failed when its reply has been seen.

The queue is bounded (issue 13, defect 7): when the data channel backs up, the oldest
animation, audio and idle messages are dropped first, counted (``packets_dropped``) and
logged; conversation control messages (start, end, interrupt, audio-only) are never dropped.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from dataclasses import dataclass

from livekit import rtc
from livekit.agents.utils.aio import cancel_and_wait

from ..protocol import AnimationFrames, AudioData, Idle, Message, Packetizer
from .interfaces import Clock, Publisher, loop_clock
from .log import ctx, logger
from .metrics import RelayMetrics
from .rtc_calls import RtcCall, call_tracker

MAX_QUEUED_BYTES = 2 * 1024 * 1024
"""Most packet bytes waiting to be sent: about 40 s of 24 kHz audio sent as data."""
CLOSE_TIMEOUT_S = 5.0
"""How long aclose() lets what is queued leave."""
MAX_IN_FLIGHT = 8
"""Packets handed to the SDK whose reply has not been seen; the next waits for the oldest."""

_DROPPABLE = (AnimationFrames, AudioData, Idle)
"""Messages whose loss costs a stretch of motion or audio, not the conversation's state."""


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class _Outgoing:
    packets: list[bytes]
    destinations: list[str]
    expires_at: float | None
    droppable: bool
    size: int


class MessagePublisher(Publisher):
    """Encodes messages to packets (fragmenting when needed) and publishes them reliably."""

    def __init__(
        self,
        *,
        room: rtc.Room,
        topic: str,
        metrics: RelayMetrics,
        clock: Clock = loop_clock,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
    ) -> None:
        self._room = room
        self._clock = clock
        self._topic = topic
        self._metrics = metrics
        self._max_queued_bytes = max_queued_bytes
        # A random first fragment id: receivers never splice fragments across relay restarts.
        self._packetizer = Packetizer(first_message_id=secrets.randbelow(2**31))
        self._queue: deque[_Outgoing] = deque()
        self._queued_bytes = 0
        self._queued_changed = asyncio.Event()
        self._closing = False
        self._dropped_in_backlog = 0
        self._send_atask: asyncio.Task[None] | None = None
        self._in_flight: deque[tuple[RtcCall, int]] = deque()

    @property
    def queued_bytes(self) -> int:
        """Packet bytes waiting to be sent."""
        return self._queued_bytes

    def start(self) -> None:
        if self._send_atask is None:
            self._send_atask = asyncio.create_task(self._send_loop(), name="relay.publisher")

    def send(
        self, msg: Message, *, to: list[str] | None = None, expires_at: float | None = None
    ) -> None:
        """Queue a message for sending now (to everyone, or to ``to``); never blocks.

        A message still queued at clock time ``expires_at`` is dropped (counted): when the
        data channel backs up, animation whose audio has already played is worthless, and
        dropping it keeps the delay of everything behind it bounded. When the queue holds
        ``max_queued_bytes``, the oldest animation, audio and idle messages make room (counted
        and logged); control messages always get in.
        """
        if self._closing:
            logger.debug("message after close not sent", extra=ctx(self._room.name))
            return
        packets = self._packetizer.packetize(msg)
        item = _Outgoing(
            packets,
            to or [],
            expires_at,
            droppable=isinstance(msg, _DROPPABLE),
            size=sum(len(p) for p in packets),
        )
        while self._queued_bytes + item.size > self._max_queued_bytes:
            if not self._drop_oldest():
                break
        if item.droppable and self._queued_bytes + item.size > self._max_queued_bytes:
            self._drop(item)
            return
        self._queue.append(item)
        self._queued_bytes += item.size
        self._queued_changed.set()

    def _drop_oldest(self) -> bool:
        for item in self._queue:
            if item.droppable:
                self._queue.remove(item)
                self._queued_bytes -= item.size
                self._drop(item)
                return True
        return False

    def _drop(self, item: _Outgoing) -> None:
        self._metrics.packets_dropped.inc(len(item.packets))
        if self._dropped_in_backlog == 0:
            logger.warning(
                "data channel backed up, dropping animation and audio messages",
                extra=ctx(self._room.name, queued_bytes=self._queued_bytes),
            )
        self._dropped_in_backlog += len(item.packets)

    def _dequeued(self, item: _Outgoing) -> None:
        self._queued_bytes -= item.size
        if self._dropped_in_backlog and self._queued_bytes <= self._max_queued_bytes // 2:
            logger.warning(
                "data channel caught up",
                extra=ctx(self._room.name, packets_dropped=self._dropped_in_backlog),
            )
            self._dropped_in_backlog = 0

    async def _send_loop(self) -> None:
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._queued_changed.clear()
                await self._queued_changed.wait()
            item = self._queue.popleft()
            self._dequeued(item)
            if item.expires_at is not None and self._clock() > item.expires_at:
                self._metrics.packets_expired.inc(len(item.packets))
                continue
            for packet in item.packets:
                try:
                    call = await self._publish(packet, item.destinations)
                except Exception as exc:  # the room is going away; nothing to resend to
                    self._failed(repr(exc))
                    continue
                if call is None:
                    self._sent(len(packet))
                else:
                    self._in_flight.append((call, len(packet)))

    def _failed(self, error: str) -> None:
        logger.warning("data packet not sent", extra=ctx(self._room.name, error=error))
        self._metrics.packets_failed.inc()

    def _sent(self, size: int) -> None:
        self._metrics.packets_sent.inc()
        self._metrics.bytes_sent.inc(size)

    async def _publish(self, packet: bytes, destinations: list[str]) -> RtcCall | None:
        """Put one packet on the room's reliable data channel: the call whose reply will say
        whether it left, or None when it already has."""
        calls = call_tracker()
        if calls is None:
            await self._room.local_participant.publish_data(
                packet, reliable=True, topic=self._topic, destination_identities=destinations
            )
            return None
        self._settle()
        while len(self._in_flight) >= MAX_IN_FLIGHT:
            await self._in_flight[0][0].wait()
            self._settle()
        return calls.publish(
            self._room.local_participant, packet, topic=self._topic, destinations=destinations
        )

    def _settle(self) -> None:
        """Count the packets whose replies have been seen, in order."""
        while self._in_flight and self._in_flight[0][0].done:
            call, size = self._in_flight.popleft()
            if call.error is None:
                self._sent(size)
            else:
                self._failed(call.error)

    async def _settle_all(self) -> None:
        while self._in_flight:
            await self._in_flight[0][0].wait()
            self._settle()

    async def aclose(self) -> None:
        """Send what is queued (for at most CLOSE_TIMEOUT_S), then stop."""
        self._closing = True
        self._queued_changed.set()
        if self._send_atask is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.shield(self._send_atask)
                await self._settle_all()
        except TimeoutError:
            await cancel_and_wait(self._send_atask)
        self._send_atask = None
