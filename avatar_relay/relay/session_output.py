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
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities

from ..motion import motion_source_from_settings
from ..motion.base import MotionSource
from ..settings import Settings, load_settings
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


class AvatarRelay:
    """Give a voice agent a synchronized avatar in a few lines.

    ``await AvatarRelay().start(agent_session, room)`` publishes the avatar's audio track,
    sends the animation, serves the control RPCs and takes over the session's audio output.
    """

    def __init__(
        self,
        *,
        settings: NotGivenOr[Settings] = NOT_GIVEN,
        motion_source: NotGivenOr[MotionSource] = NOT_GIVEN,
        motion_factory: NotGivenOr[MotionFactory] = NOT_GIVEN,
    ) -> None:
        self._settings = settings if is_given(settings) else load_settings()
        self._motion_source = motion_source
        self._motion_factory = motion_factory
        self._relay: RoomRelay | None = None
        self._control: RelayControl | None = None
        self._output: AvatarAudioOutput | None = None

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
        settings = self._settings
        source = (
            self._motion_source
            if is_given(self._motion_source)
            else motion_source_from_settings(settings)
        )
        factory: MotionFactory = (
            self._motion_factory
            if is_given(self._motion_factory)
            else (lambda name: motion_source_from_settings(settings, name))
        )
        self._relay = RoomRelay(room=room, settings=settings, motion_source=source)
        await self._relay.start()
        self._control = RelayControl(
            room=room, relay=self._relay, settings=settings, motion_factory=factory
        )
        self._control.register()
        self._output = AvatarAudioOutput(self._relay)
        agent_session.output.replace_audio_tail(self._output)
        logger.info("avatar relay attached to agent session", extra=ctx(room.name))

    async def aclose(self) -> None:
        if self._output is not None:
            await self._output.aclose()
        if self._control is not None:
            await self._control.aclose()
        if self._relay is not None:
            source = self._relay.motion_source
            await self._relay.aclose()
            await source.aclose()
