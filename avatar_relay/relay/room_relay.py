"""The relay of one room: the room's side of the avatar.

It publishes the audio track and the relay role, serves late joiners, sends idle motion, and
hands the conversations to the :class:`ConversationPlayer` (the time-critical core, which
knows nothing of rooms).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from livekit import rtc

from ..motion.base import MotionSource
from ..protocol.constants import ATTRIBUTE_AUDIO_TRACK, ATTRIBUTE_ROLE, AUDIO_TRACK_NAME, ROLE_RELAY
from ..settings import Settings
from .audio_out import TrackAudioOut
from .conversation import Conversation, PlaybackResult
from .handle import ConversationHandle
from .idle import IdleSender
from .log import ctx, logger
from .metrics import RelayMetrics
from .player import ConversationPlayer, PlayerOptions, RelayBusyError, RelayClosedError
from .publisher import MessagePublisher
from .tasks import OwnedTasks

CLOSE_INTERRUPT_TIMEOUT = 1.0
"""How long aclose() lets the playing conversation end with its Interrupt message."""
UNPUBLISH_TIMEOUT = 2.0
"""How long aclose() tries to withdraw the track and the relay role from the room."""

__all__ = ["RelayBusyError", "RelayClosedError", "RoomRelay"]

RelayEvent = Literal["playback_started", "playback_finished"]


class RoomRelay(rtc.EventEmitter[RelayEvent]):
    """Owns the room's avatar track, its conversations, the pacing and the idle motion.

    Emits ``playback_started`` (conversation id) and ``playback_finished``
    (:class:`PlaybackResult`).
    """

    def __init__(
        self,
        *,
        room: rtc.Room,
        settings: Settings,
        motion_source: MotionSource,
        metrics: RelayMetrics | None = None,
    ) -> None:
        super().__init__()
        self._room = room
        self._settings = settings
        self._motion_source = motion_source
        self.sample_rate = settings.audio.sample_rate
        self.metrics = metrics or RelayMetrics(room.name)
        self._out = TrackAudioOut(sample_rate=self.sample_rate, queue_ms=settings.audio.queue_ms)
        self._publisher = MessagePublisher(
            room=room, topic=settings.relay.topic, metrics=self.metrics
        )
        self._player = ConversationPlayer(
            options=PlayerOptions.from_settings(settings),
            sink=self._out,
            publisher=self._publisher,
            motion_source=lambda: self._motion_source,
            metrics=self.metrics,
            room_name=room.name,
        )
        self._player.on("playback_started", self._forward_started)
        self._player.on("playback_finished", self._forward_finished)
        self._idle = IdleSender(
            publisher=self._publisher,
            interval_s=settings.relay.idle_interval_ms / 1000,
            motion_source=lambda: self._motion_source,
            busy=lambda: self._player.busy,
        )
        self._tasks = OwnedTasks(room.name)
        self._closed = False
        self._publication: rtc.LocalTrackPublication | None = None

    def _forward_started(self, conversation_id: str) -> None:
        self.emit("playback_started", conversation_id)

    def _forward_finished(self, result: PlaybackResult) -> None:
        self.emit("playback_finished", result)

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def room_name(self) -> str:
        return self._room.name

    @property
    def player(self) -> ConversationPlayer:
        return self._player

    @property
    def motion_source(self) -> MotionSource:
        return self._motion_source

    @property
    def track_sid(self) -> str | None:
        """The avatar audio track's sid once published."""
        return self._publication.sid if self._publication is not None else None

    def set_motion_source(self, source: MotionSource) -> MotionSource:
        """Use ``source`` from the next conversation on; returns the previous source.

        Conversations already playing or queued keep the streams they opened; the previous
        source is closed once they have all finished.
        """
        old, self._motion_source = self._motion_source, source
        if old is not source:
            users = self._player.conversations()
            self._tasks.spawn(self._retire_source(old, users), f"relay.retire-source.{old.name}")
        return old

    async def _retire_source(self, source: MotionSource, users: list[Conversation]) -> None:
        if users:
            await asyncio.gather(*(asyncio.shield(c.result) for c in users))
        await source.aclose()

    async def start(self) -> None:
        """Publish the avatar's track, announce the relay role, start pacing and idle motion."""
        self._publisher.start()
        # The role goes first, so a receiver that sees the track already knows whose it is.
        await self._room.local_participant.set_attributes(
            {ATTRIBUTE_ROLE: ROLE_RELAY, ATTRIBUTE_AUDIO_TRACK: AUDIO_TRACK_NAME}
        )
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        self._publication = await self._room.local_participant.publish_track(
            self._out.track, options
        )
        self._room.on("participant_connected", self._on_participant_connected)
        self._player.start()
        self._tasks.spawn(self._idle.run(), "relay.idle")

    async def aclose(self) -> None:
        """End every conversation (with end/interrupt messages), stop all tasks, free the track."""
        if self._closed:
            return
        self._closed = True
        self._room.off("participant_connected", self._on_participant_connected)
        await self._player.aclose(interrupt_timeout=CLOSE_INTERRUPT_TIMEOUT)
        await self._tasks.aclose()
        await self._publisher.aclose()
        await self._unpublish()
        await self._out.aclose()
        self.metrics.remove()

    async def _unpublish(self) -> None:
        """Leave the room as we found it, so no receiver picks up a dead relay track."""
        lp = self._room.local_participant
        if not self._room.isconnected():
            return

        async def _undo() -> None:
            if self._publication is not None:
                await lp.unpublish_track(self._publication.sid)
            await lp.set_attributes({ATTRIBUTE_ROLE: "", ATTRIBUTE_AUDIO_TRACK: ""})

        try:
            # Bounded: when the room is closing under us these calls can wait forever.
            await asyncio.wait_for(_undo(), UNPUBLISH_TIMEOUT)
        except Exception as exc:  # the room may be closing under us; nothing left to undo
            logger.debug("relay track not unpublished", extra=ctx(self.room_name, error=repr(exc)))

    # -- producer API -----------------------------------------------------------------------
    def check_capacity(self) -> None:
        """Raise RelayClosedError or RelayBusyError if a conversation cannot be opened now."""
        if self._closed:
            raise RelayClosedError("the relay is closed")
        self._player.check_capacity()

    async def open_conversation(self) -> ConversationHandle:
        """Start a conversation; it plays after the ones already queued.

        Use the handle as an async context manager (see :class:`ConversationHandle`).
        """
        self.check_capacity()
        return await self._player.open_conversation()

    @property
    def current_conversation_id(self) -> str | None:
        return self._player.current_conversation_id

    def interrupt_all(self) -> str | None:
        """Stop what plays and drop what is queued; returns the id that was playing."""
        return self._player.interrupt_all()

    def interrupt_conversation(self, conversation_id: str) -> bool:
        """Interrupt one conversation, playing or queued; False if it is not known."""
        return self._player.interrupt_conversation(conversation_id)

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        """A late joiner needs the current conversation's start (codec, channels, fps)."""
        self._player.repeat_start(to=[participant.identity])
