"""Drop-in avatar for livekit-agents voice agents.

``AvatarAudioOutput`` is the bottom sink of an ``AgentSession``'s audio chain: every segment
the session plays becomes one conversation of the relay. Playback accounting follows the
livekit-agents contract: ``playback_started`` when the segment's first sample leaves, and
exactly one ``playback_finished(position, interrupted)`` per segment, whatever happens, so
``wait_for_playout()`` and ``say()`` never hang.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from livekit import rtc
from livekit.agents import AgentSession, get_job_context, utils
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities
from livekit.rtc.participant import UnpublishTrackError

from ..motion import motion_source_from_settings
from ..motion.base import MotionSource
from ..settings import Settings, load_settings, make_settings
from .control import MotionFactory, RelayControl
from .handle import ConversationHandle
from .log import ctx, logger
from .player import ConversationPlayer, RelayBusyError, RelayClosedError
from .room_relay import RoomRelay


class AvatarAudioOutput(AudioOutput):
    """Turns the session's audio segments into relay conversations."""

    def __init__(self, relay: RoomRelay | ConversationPlayer) -> None:
        super().__init__(
            label="AvatarRelay",
            capabilities=AudioOutputCapabilities(pause=False),
            sample_rate=relay.sample_rate,
        )
        self._relay = relay
        self._handle: ConversationHandle | None = None
        self._dropping = False
        """The current segment was refused (relay busy or closed); its frames are dropped."""
        self._open: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        relay.on("playback_started", self._on_relay_started)

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self._dropping:
            return  # the rest of a refused segment: never start it mid-sentence
        if self._handle is None:
            try:
                handle = await self._relay.open_conversation()
            except (RelayBusyError, RelayClosedError) as exc:
                # Counting a segment we cannot play would leave wait_for_playout() hanging.
                # The whole segment is dropped, logged once, until flush() or clear_buffer().
                self._dropping = True
                logger.warning(
                    "agent audio segment dropped",
                    extra=ctx(self._relay.room_name, error=str(exc)),
                )
                return
            self._handle = handle
            self._open.add(handle.id)
            task = asyncio.create_task(
                self._report_finished(handle), name=f"avatar-output.finished.{handle.id}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await super().capture_frame(frame)
        self._handle.push_frame(frame)

    def flush(self) -> None:
        super().flush()
        self._dropping = False
        if self._handle is not None:
            self._handle.end()
            self._handle = None

    def clear_buffer(self) -> None:
        """Interrupt: stop what plays and drop what is queued for this session."""
        self._dropping = False
        if self._handle is not None:
            self._handle.end()
            self._handle = None
        for conversation_id in list(self._open):
            self._relay.interrupt_conversation(conversation_id)

    def _on_relay_started(self, conversation_id: str) -> None:
        if conversation_id in self._open:
            self.on_playback_started(created_at=time.time())

    async def _report_finished(self, handle: ConversationHandle) -> None:
        result = await handle.wait_for_playout()
        self._open.discard(handle.id)
        self.on_playback_finished(
            playback_position=result.played_seconds, interrupted=result.interrupted
        )

    async def aclose(self) -> None:
        """Interrupt what plays, report its playback_finished, and detach from the relay."""
        self.clear_buffer()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=5)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._relay.off("playback_started", self._on_relay_started)


AudioTransportName = Literal["track", "data", "both"]


class AvatarRelay:
    """Give a voice agent a synchronized avatar in a few lines.

    ``await AvatarRelay().start(agent_session, room)`` publishes the avatar's audio track,
    sends the animation and takes over the session's audio output. Nothing global is read:
    the options below start from the packaged defaults (see ``avatar_relay/defaults.toml``);
    use :meth:`from_settings` for a deployment configured by files and environment.
    """

    def __init__(
        self,
        *,
        motion_source: NotGivenOr[str | MotionSource] = NOT_GIVEN,
        lookahead_ms: NotGivenOr[int] = NOT_GIVEN,
        topic: NotGivenOr[str] = NOT_GIVEN,
        audio_transport: NotGivenOr[AudioTransportName] = NOT_GIVEN,
        sample_rate: NotGivenOr[int] = NOT_GIVEN,
        control: bool = False,
        settings: NotGivenOr[Settings] = NOT_GIVEN,
        motion_factory: NotGivenOr[MotionFactory] = NOT_GIVEN,
    ) -> None:
        """
        Args:
            motion_source: ``"embedded"`` (default, offline), ``"clapperboard"``,
                ``"spatius"``, or a :class:`MotionSource` instance.
            lookahead_ms: audio the motion source sees ahead; the avatar's audio is delayed by
                exactly this (default 100).
            topic: data topic of the animation messages (default ``avatar-relay.animation``).
            audio_transport: ``"track"`` (default), ``"data"`` or ``"both"``.
            sample_rate: rate of the avatar's audio track (default 24000).
            control: let authorized participants speak, interrupt and switch the motion
                source through RPCs (off by default; who is authorized comes from
                ``settings.auth``).
            settings: a complete settings object; the options above override it.
            motion_factory: builds a motion source by name for the control RPC.

        Raises:
            ValueError: (:class:`SettingsError`) an option is invalid; the message names it.
        """
        base = settings if is_given(settings) else Settings()
        sections = base.model_dump()
        if is_given(motion_source) and isinstance(motion_source, str):
            sections["motion"]["source"] = motion_source
        if is_given(lookahead_ms):
            sections["motion"]["lookahead_ms"] = lookahead_ms
        if is_given(topic):
            sections["relay"]["topic"] = topic
        if is_given(audio_transport):
            sections["audio"]["transport"] = audio_transport
        if is_given(sample_rate):
            sections["audio"]["sample_rate"] = sample_rate
        self._settings = make_settings(**sections)
        self._motion_source: MotionSource | None = (
            motion_source if isinstance(motion_source, MotionSource) else None
        )
        self._motion_factory = motion_factory
        self._control_enabled = control
        self._session: AgentSession[Any] | None = None
        self._room: rtc.Room | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._withdrawing = asyncio.Lock()
        self._relay: RoomRelay | None = None
        self._control: RelayControl | None = None
        self._output: AvatarAudioOutput | None = None
        self._closed = False

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, control: bool = False
    ) -> AvatarRelay:
        """An avatar configured like the worker: ``load_settings()`` (files, environment)."""
        return cls(settings=settings if settings is not None else load_settings(), control=control)

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def output(self) -> AvatarAudioOutput:
        """The audio sink installed in the session (for playback events)."""
        if self._output is None:
            raise RuntimeError("AvatarRelay.start() has not been called")
        return self._output

    @property
    def relay(self) -> RoomRelay:
        if self._relay is None:
            raise RuntimeError("AvatarRelay.start() has not been called")
        return self._relay

    async def start(self, agent_session: AgentSession[Any], room: rtc.Room) -> None:
        """Publish the avatar in ``room`` and route ``agent_session``'s audio through it.

        Call it before or after ``agent_session.start()``: either way the room ends up with
        one agent audio track, the avatar's. Inside a job, closing is registered as a job
        shutdown callback; elsewhere call :meth:`aclose`.
        """
        if self._relay is not None:
            raise RuntimeError("AvatarRelay.start() was already called")
        settings = self._settings
        source = self._motion_source or motion_source_from_settings(settings)
        self._relay = RoomRelay(room=room, settings=settings, motion_source=source)
        await self._relay.start()
        if self._control_enabled:
            factory: MotionFactory = (
                self._motion_factory
                if is_given(self._motion_factory)
                else (lambda name: motion_source_from_settings(settings, name))
            )
            self._control = RelayControl(
                room=room, relay=self._relay, settings=settings, motion_factory=factory
            )
            self._control.register()
        self._output = AvatarAudioOutput(self._relay)
        self._session = agent_session
        took_over_session_output = agent_session.output.audio is not None
        agent_session.output.replace_audio_tail(self._output)
        if took_over_session_output:
            # The session's RoomIO publishes its own audio track once a participant is
            # there, possibly later than now: withdraw it now and whenever it appears.
            self._room = room
            room.on("local_track_published", self._on_local_track_published)
            await self._withdraw_other_audio_tracks(room)
        job = get_job_context(required=False)
        if job is not None:
            job.add_shutdown_callback(self.aclose)
        logger.info("avatar relay attached to agent session", extra=ctx(room.name))

    def _on_local_track_published(
        self, publication: rtc.LocalTrackPublication, track: rtc.Track
    ) -> None:
        if self._room is not None and publication.kind == rtc.TrackKind.KIND_AUDIO:
            task = asyncio.create_task(
                self._withdraw_other_audio_tracks(self._room), name="avatar-relay.withdraw-track"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _withdraw_other_audio_tracks(self, room: rtc.Room) -> None:
        """The session has an audio track of its own: withdraw it so that participants hear
        the agent once, through the avatar."""
        async with self._withdrawing:  # start() and a publish event may both get here
            for sid, publication in list(room.local_participant.track_publications.items()):
                if publication.kind == rtc.TrackKind.KIND_AUDIO and sid != self.relay.track_sid:
                    await self._withdraw(room, sid, publication)

    async def _withdraw(
        self, room: rtc.Room, sid: str, publication: rtc.LocalTrackPublication
    ) -> None:
        try:
            await room.local_participant.unpublish_track(sid)
        except UnpublishTrackError:
            if sid in room.local_participant.track_publications:
                raise
            return  # gone meanwhile (its publisher withdrew it): nothing to do
        logger.info(
            "withdrew the session's own audio track; the avatar speaks instead",
            extra=ctx(room.name, track=publication.name),
        )

    def _detach(self) -> None:
        """Stop the session's audio from reaching the closed avatar."""
        session, output = self._session, self._output
        if session is None or output is None:
            return
        sink: AudioOutput | None = session.output.audio
        while sink is not None and sink is not output:
            sink = sink.next_in_chain
        if sink is output:
            session.output.audio = None

    async def aclose(self) -> None:
        """Detach from the session, end what plays (reported as interrupted), leave the room's
        avatar track and stop the motion source. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._room is not None:
            self._room.off("local_track_published", self._on_local_track_published)
            self._room = None
        await utils.aio.cancel_and_wait(*self._tasks)
        self._detach()
        if self._output is not None:
            await self._output.aclose()
        if self._control is not None:
            await self._control.aclose()
        if self._relay is not None:
            source = self._relay.motion_source
            await self._relay.aclose()
            await source.aclose()
