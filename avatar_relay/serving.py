"""One room's avatar service on a connected room: relay, control, heartbeat, empty-room watch.

The same service runs in a livekit-agents job process (``agent.job_executor = "process"``)
and, many rooms to a process, in a room host (``"shared"``, :mod:`avatar_relay.hosting`).
It does not import livekit-agents.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from livekit import rtc

from .failover import RelayHeartbeat
from .motion import motion_source_from_settings
from .relay import RoomRelay
from .relay.control import RelayControl
from .relay.event_routing import route_room_events
from .settings import Settings

logger = logging.getLogger("avatar_relay.worker")

EMPTY_ROOM_GRACE_S = 5.0
"""How long the relay stays after the last human participant left (they may reconnect)."""


def rtc_configuration(settings: Settings) -> rtc.RtcConfiguration:
    """ICE gathered once by default: a relay runs on a server whose networks do not change.

    Continual gathering (the SDK's default) keeps re-enumerating the host's networks for the
    life of the room, and the SDK forwards every line libwebrtc logs about it to Python.
    """
    policy = (
        rtc.ContinualGatheringPolicy.GATHER_ONCE
        if settings.agent.ice_gathering == "once"
        else rtc.ContinualGatheringPolicy.GATHER_CONTINUALLY
    )
    return rtc.RtcConfiguration(continual_gathering_policy=policy)


def room_options(settings: Settings) -> rtc.RoomOptions:
    """How a room host joins a room: subscribing to nothing, with :func:`rtc_configuration`.

    Incoming data streams are bounded where they are decompressed, in the SDK, at the largest
    speak-audio WAV: the relay's own check comes only after the SDK has buffered a stream, and
    a small compressed stream could expand to hundreds of MB (issue 14, finding 9).
    """
    return rtc.RoomOptions(
        auto_subscribe=False,
        rtc_config=rtc_configuration(settings),
        single_peer_connection=settings.agent.single_peer_connection,
        data_stream=rtc.DataStreamOptions(
            max_payload_byte_length=settings.relay.max_speak_audio_bytes
        ),
    )


def humans(room: rtc.Room) -> list[rtc.RemoteParticipant]:
    return [
        p
        for p in room.remote_participants.values()
        if p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    ]


class RoomService:
    """The avatar in one connected room, until :meth:`aclose`.

    ``on_empty`` is called once no human has been in the room for ``empty_grace_s``, or once
    the room has been unreachable for longer than the SDK's reconnection (the owner then ends
    the job or the hosted room).
    """

    def __init__(
        self,
        room: rtc.Room,
        settings: Settings,
        *,
        on_empty: Callable[[], None],
        empty_grace_s: float = EMPTY_ROOM_GRACE_S,
    ) -> None:
        self._room = room
        self._settings = settings
        self._on_empty = on_empty
        self._empty_grace_s = empty_grace_s
        self._relay = RoomRelay(
            room=room, settings=settings, motion_source=motion_source_from_settings(settings)
        )
        self._control = RelayControl(
            room=room,
            relay=self._relay,
            settings=settings,
            motion_factory=lambda name: motion_source_from_settings(settings, name),
        )
        self._heartbeat = RelayHeartbeat(room, on_lost=on_empty)
        self._empty_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    @property
    def relay(self) -> RoomRelay:
        return self._relay

    async def start(self) -> None:
        """Publish the avatar and serve control requests."""
        route_room_events(self._room)
        # Handlers first: the role attribute published by start() tells participants they
        # may speak to us, and a WAV sent before the handler exists is dropped by the SDK.
        self._control.register()
        await self._relay.start()
        # A source with a session to open (Spatius) opens it now, not at the first utterance.
        self._relay.motion_source.prewarm(self._settings.audio.sample_rate)
        self._heartbeat.start()
        self._room.on("participant_connected", self._check_empty)
        self._room.on("participant_disconnected", self._check_empty)
        logger.info("relay job started", extra={"room": self._room.name, "pid": os.getpid()})

    def _check_empty(self, *_: object) -> None:
        if self._closed:
            return
        if humans(self._room):
            if self._empty_timer is not None:
                self._empty_timer.cancel()
                self._empty_timer = None
        elif self._empty_timer is None:
            loop = asyncio.get_running_loop()
            self._empty_timer = loop.call_later(self._empty_grace_s, self._on_empty)

    async def aclose(self) -> None:
        """End the playing conversation (Interrupt/End), withdraw the track, stop serving.

        Every call waits for the same close: a caller cancelled half-way (a room host told its
        worker died) does not stop it, and a second caller does not return before it is done.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._closed = True
        if self._empty_timer is not None:
            self._empty_timer.cancel()
        self._room.off("participant_connected", self._check_empty)
        self._room.off("participant_disconnected", self._check_empty)
        await self._heartbeat.aclose()
        await self._control.aclose()
        source = self._relay.motion_source
        await self._relay.aclose()
        await source.aclose()
        logger.info("relay job ended", extra={"room": self._room.name})
