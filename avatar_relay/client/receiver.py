"""AvatarReceiver: find the relay in a room, receive its audio and animation, play them in sync.

Room I/O only: finding the relay participant, subscribing to its audio track, reading data
packets and polling the track's jitter buffer. The mapping itself lives in :mod:`.sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

from livekit import rtc

from avatar_relay.protocol import (
    ANIMATION_TOPIC,
    ATTRIBUTE_AUDIO_TRACK,
    ATTRIBUTE_ROLE,
    AUDIO_TRACK_NAME,
    ROLE_RELAY,
    ProtocolError,
    Reassembler,
)

from .host_mode import HostModeController
from .sync import ConversationEvent, PlayoutSync, ReceiverStats, SyncedFrame

logger = logging.getLogger("avatar_relay.client")

HEARTBEAT_TIMEOUT_S = 1.0
"""A relay silent on the data topic this long is taken for dead (it sends every 200 ms)."""

STALL_FRACTION = 0.2
"""A heartbeat check that wakes this much of the timeout late means the receiver's own loop
was stalled (a starved machine): the stall does not count as the relay's silence."""
STALL_GRACE = 0.5
"""After such a stall the relay has this much of the timeout more to be heard (the packets
queued during the stall are read meanwhile)."""

ReceiverEvent = Literal["conversation", "relay_joined", "relay_left"]
"""``conversation`` gets a :class:`ConversationEvent`; the relay events get the participant."""

_RoomEvent = Literal[
    "participant_connected",
    "participant_disconnected",
    "participant_attributes_changed",
    "track_published",
    "track_subscribed",
    "track_unsubscribed",
    "data_received",
]

_END = object()


def is_relay(participant: rtc.RemoteParticipant) -> bool:
    """The relay is an agent participant that marks itself with the relay role attribute.

    The kind comes from the server (the token issuer), so a viewer whose token carries the
    role attribute is still not adopted as the relay (issue 14, finding 6).
    """
    return (
        participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        and participant.attributes.get(ATTRIBUTE_ROLE) == ROLE_RELAY
    )


class AvatarReceiver(rtc.EventEmitter[ReceiverEvent]):
    """Async iterator of :class:`SyncedFrame`, one per 10 ms chunk of the relay's audio.

    Copes with the relay joining after the receiver, leaving, and coming back: every
    (re)appearance starts from a clean protocol state. Only packets of the relay on ``topic``
    are read; malformed ones are counted and logged at debug level.
    """

    def __init__(
        self,
        room: rtc.Room,
        *,
        topic: str = ANIMATION_TOPIC,
        sample_rate: int = 48000,
        default_jitter_delay: float = 0.04,
        audio_path_delay: float = 0.02,
        stats_interval: float = 0.5,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT_S,
        max_queued: int = 100,
        controller: HostModeController | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if stats_interval <= 0 or max_queued < 1 or heartbeat_timeout <= 0:
            raise ValueError("stats_interval, heartbeat_timeout and max_queued must be positive")
        self._heartbeat_timeout = heartbeat_timeout
        self._last_heard = 0.0
        self._heard = asyncio.Event()
        self._silent: set[str] = set()
        """Relays dropped for silence; adopted again only if they speak again."""
        self._watchdog_atask: asyncio.Task[None] | None = None
        self._room = room
        self._topic = topic
        self._sample_rate = sample_rate
        self._stats_interval = stats_interval
        self._clock = clock
        self._sync = PlayoutSync(
            sample_rate=sample_rate,
            default_jitter_delay=default_jitter_delay,
            audio_path_delay=audio_path_delay,
            controller=controller,
        )
        self._reassembler = Reassembler()
        self._relay: rtc.RemoteParticipant | None = None
        self._track: rtc.RemoteAudioTrack | None = None
        self._queue: asyncio.Queue[SyncedFrame | object] = asyncio.Queue(maxsize=max_queued)
        self._pump_atask: asyncio.Task[None] | None = None
        self._stats_atask: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._handlers: list[tuple[_RoomEvent, Callable[..., Any]]] = []
        self._failure: BaseException | None = None
        self._started = False
        self._closed = False
        self.dropped_chunks = 0
        """Chunks discarded because the consumer did not keep up (oldest first)."""

    # -- public surface ------------------------------------------------------------------------

    @property
    def stats(self) -> ReceiverStats:
        return self._sync.stats

    @property
    def controller(self) -> HostModeController:
        return self._sync.controller

    @property
    def relay_identity(self) -> str | None:
        return self._relay.identity if self._relay is not None else None

    @property
    def protocol_errors(self) -> int:
        return self._reassembler.stats.errors

    def start(self) -> None:
        """Attach to the room and look for the relay among the current participants."""
        if self._started:
            raise RuntimeError("receiver already started")
        self._started = True
        self._listen("participant_connected", self._on_participant_connected)
        self._listen("participant_disconnected", self._on_participant_disconnected)
        self._listen("participant_attributes_changed", self._on_attributes_changed)
        self._listen("track_published", self._on_track_published)
        self._listen("track_subscribed", self._on_track_subscribed)
        self._listen("track_unsubscribed", self._on_track_unsubscribed)
        self._listen("data_received", self._on_data)
        self._stats_atask = asyncio.create_task(self._poll_jitter(), name="avatar-receiver.stats")
        self._watchdog_atask = asyncio.create_task(
            self._watch_heartbeat(), name="avatar-receiver.heartbeat"
        )
        self._find_relay()

    async def aclose(self) -> None:
        """Detach from the room, stop every task and end the iteration."""
        if self._closed:
            return
        self._closed = True
        for event, handler in self._handlers:
            self._room.off(event, handler)
        self._handlers.clear()
        self._stop_stream()
        tasks = [
            t for t in (self._stats_atask, self._watchdog_atask, *self._closing) if t is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._put(_END)

    async def __aenter__(self) -> AvatarReceiver:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AvatarReceiver:
        return self

    async def __anext__(self) -> SyncedFrame:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later call ends too
            if self._failure is not None:
                raise self._failure
            raise StopAsyncIteration
        assert isinstance(item, SyncedFrame)
        return item

    # -- relay discovery -----------------------------------------------------------------------

    def _listen(self, event: _RoomEvent, handler: Callable[..., Any]) -> None:
        self._room.on(event, handler)
        self._handlers.append((event, handler))

    def _find_relay(self) -> None:
        if self._relay is not None:
            return
        for participant in self._room.remote_participants.values():
            if is_relay(participant) and participant.identity not in self._silent:
                self._adopt(participant)
                return

    def _adopt(self, participant: rtc.RemoteParticipant) -> None:
        logger.info("relay found", extra={"relay": participant.identity})
        self._relay = participant
        self._last_heard = self._clock()
        self._heard.set()
        self._reassembler = Reassembler()
        self._sync.reset()
        self.emit("relay_joined", participant)
        for publication in participant.track_publications.values():
            self._consider_publication(publication, participant)

    def _drop_relay(self, reason: str) -> None:
        relay = self._relay
        if relay is None:
            return
        logger.info("relay lost", extra={"relay": relay.identity, "reason": reason})
        self._relay = None
        self._stop_stream()
        self._reassembler.reset()
        self._sync.reset()
        self.emit("relay_left", relay)
        self._find_relay()

    def _track_name(self) -> str:
        assert self._relay is not None
        return self._relay.attributes.get(ATTRIBUTE_AUDIO_TRACK) or AUDIO_TRACK_NAME

    def _consider_publication(
        self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if participant is not self._relay or publication.name != self._track_name():
            return
        track = publication.track
        if isinstance(track, rtc.RemoteAudioTrack):
            self._start_stream(track)
        elif not publication.subscribed:
            publication.set_subscribed(True)  # the room may not auto-subscribe

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        self._silent.discard(participant.identity)  # a new session under an old identity
        if self._relay is None and is_relay(participant):
            self._adopt(participant)

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        self._silent.discard(participant.identity)
        if self._relay is not None and participant.identity == self._relay.identity:
            self._drop_relay("disconnected")

    def _on_attributes_changed(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if not isinstance(participant, rtc.RemoteParticipant):
            return
        if participant is self._relay and not is_relay(participant):
            self._drop_relay("role removed")
        elif (
            self._relay is None
            and is_relay(participant)
            and participant.identity not in self._silent
        ):
            self._adopt(participant)

    def _on_track_published(
        self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        self._consider_publication(publication, participant)

    def _on_track_subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        self._consider_publication(publication, participant)

    def _on_track_unsubscribed(
        self,
        track: rtc.Track | None,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if self._track is not None and track is self._track:
            self._stop_stream()

    # -- audio ---------------------------------------------------------------------------------

    def _start_stream(self, track: rtc.RemoteAudioTrack) -> None:
        if self._track is track or self._closed:
            return
        self._stop_stream()
        self._track = track
        stream = rtc.AudioStream(
            track, sample_rate=self._sample_rate, num_channels=1, frame_size_ms=10
        )
        self._pump_atask = asyncio.create_task(
            self._pump(stream), name=f"avatar-receiver.audio.{track.sid}"
        )
        logger.debug("receiving relay audio", extra={"track": track.sid})

    def _stop_stream(self) -> None:
        self._track = None
        self._sync.set_jitter_delay(None)
        task, self._pump_atask = self._pump_atask, None
        if task is not None:
            task.cancel()
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _pump(self, stream: rtc.AudioStream) -> None:
        """Present every chunk of the relay's track the moment it is pulled."""
        try:
            async for event in stream:
                self._put(self._sync.on_audio(event.frame, self._clock()))
        except Exception as exc:
            logger.exception("audio pump failed")
            self._failure = exc
            self._put(_END)  # re-raised to the consumer by __anext__
        finally:
            await stream.aclose()

    def _put(self, item: SyncedFrame | object) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self._queue.get_nowait()
                    self.dropped_chunks += 1

    async def _poll_jitter(self) -> None:
        """Track the jitter-buffer delay J from the subscribed track's inbound-rtp stats."""
        last: tuple[rtc.RemoteAudioTrack, float, int] | None = None
        while True:
            await asyncio.sleep(self._stats_interval)
            track = self._track
            if track is None:
                last = None
                continue
            try:
                stats = await track.get_stats()
            except Exception as exc:  # the FFI raises a bare Exception; the track may be gone
                logger.debug("track stats unavailable", extra={"error": str(exc)})
                continue
            inbound = [
                s.inbound_rtp.inbound
                for s in stats
                if s.WhichOneof("stats") == "inbound_rtp" and s.inbound_rtp.stream.kind == "audio"
            ]
            if not inbound:
                continue
            delay, count = inbound[0].jitter_buffer_delay, inbound[0].jitter_buffer_emitted_count
            if last is not None and last[0] is track and count > last[2]:
                self._sync.set_jitter_delay((delay - last[1]) / (count - last[2]))
            last = (track, delay, count)

    async def _watch_heartbeat(self) -> None:
        """Drop a relay that sent nothing for ``heartbeat_timeout`` (idle messages come every
        200 ms, conversation messages more often): it died, and its participant may stay
        listed for ~20 s. Its conversation ends as interrupted; another relay is adopted."""
        graced: float | None = None  # the _last_heard a grace set; one grace per silence
        while True:
            if self._relay is None:
                self._heard.clear()
                await self._heard.wait()
                continue
            now = self._clock()
            left = self._last_heard + self._heartbeat_timeout - now
            if left > 0:
                await asyncio.sleep(left)  # a deadline: woken to re-check it
                woke = self._clock()
                stalled = woke - (now + left) > self._heartbeat_timeout * STALL_FRACTION
                if stalled and graced != self._last_heard:
                    # This process was starved (its loop ran nothing for a while): packets
                    # that came meanwhile may still wait in the queue behind us. Time we
                    # could not look is no proof of silence; the relay gets a grace, once:
                    # without a packet since, a second late wake-up does not extend it (a
                    # loaded machine wakes late every time, and a dead relay must go).
                    self._last_heard = max(
                        self._last_heard, woke - self._heartbeat_timeout * (1 - STALL_GRACE)
                    )
                    graced = self._last_heard
                continue
            identity = self._relay.identity
            logger.warning(
                "relay heartbeat lost",
                extra={"relay": identity, "silent_s": round(self._clock() - self._last_heard, 2)},
            )
            self._silent.add(identity)
            self._drop_relay("heartbeat lost")

    # -- data ----------------------------------------------------------------------------------

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != self._topic or packet.participant is None:
            return
        if self._relay is None and packet.participant.identity in self._silent:
            # A relay we took for dead speaks again (e.g. the server was paused): take it back.
            self._silent.discard(packet.participant.identity)
            if is_relay(packet.participant):
                self._adopt(packet.participant)
        if self._relay is None or packet.participant.identity != self._relay.identity:
            return
        now = self._clock()
        self._last_heard = now
        self.stats.packets += 1
        try:
            message = self._reassembler.push(packet.data)
        except ProtocolError as exc:
            self.stats.packets_dropped += 1
            logger.debug(
                "dropped malformed packet",
                extra={"relay": self._relay.identity, "error": str(exc)},
            )
            return
        if message is None:
            return
        event: ConversationEvent | None = self._sync.on_message(message, now)
        if event is not None:
            self.emit("conversation", event)
