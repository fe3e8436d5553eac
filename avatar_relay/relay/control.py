"""Direct control of the avatar by participants: speak a WAV or text, interrupt, switch motion.

Every request is authorized first; a refused or malformed request gets a clear RPC error and
one log line, and changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from livekit import rtc
from livekit.agents.utils.aio import cancel_and_wait
from livekit.agents.utils.audio import AudioByteStream

from ..motion.base import MotionSource
from ..protocol.constants import (
    RPC_ERROR_BAD_REQUEST,
    RPC_ERROR_RATE_LIMITED,
    RPC_ERROR_UNAUTHORIZED,
    RPC_ERROR_UNAVAILABLE,
    RPC_INTERRUPT,
    RPC_SET_MOTION_SOURCE,
    RPC_SPEAK_TEXT,
    SPEAK_AUDIO_STREAM_TOPIC,
)
from ..settings import Settings
from .auth import Authorizer, UnauthorizedError
from .handle import ConversationHandle
from .log import ctx, logger
from .player import ConversationPlayer
from .ratelimit import RateLimiter
from .room_relay import RelayBusyError, RelayClosedError, RoomRelay
from .tts import EspeakTts, Pcm, TtsError, WavError, decode_wav

MotionFactory = Callable[[str], MotionSource]


SPEAK_PIECE_S = 0.5
"""Complete audio is fed to a conversation in pieces this long, yielding in between, so a
long WAV never holds the event loop (and the audio of what is playing) for long."""
SPEAK_AHEAD_S = 2.0
"""Complete audio is fed this far ahead of playback: more than any motion source's lookahead
(at most 500 ms) plus a piece, little enough that no loop turn computes a file's motion."""


async def speak_pcm(relay: RoomRelay | ConversationPlayer, pcm: Pcm) -> ConversationHandle:
    """Queue one utterance of complete audio as a conversation; returns once all of it is fed,
    which is at playback pace (see :func:`feed_pcm`)."""
    handle = await relay.open_conversation()
    await feed_pcm(handle, pcm)
    return handle


async def feed_pcm(handle: ConversationHandle, pcm: Pcm) -> None:
    """Feed complete audio to an open conversation, then end its input.

    At playback pace: never more than SPEAK_AHEAD_S waits, so the motion source works as the
    audio plays, not on the whole file at once (issue 11, item 5). Cancelled half-way (the
    caller went away), the conversation is interrupted, never left open for what is queued
    behind it to wait on.
    """
    pieces = AudioByteStream(
        pcm.sample_rate, 1, samples_per_channel=int(pcm.sample_rate * SPEAK_PIECE_S)
    )
    async with handle:
        for frame in [*pieces.push(pcm.samples.tobytes()), *pieces.flush()]:
            await handle.wait_queued_below(SPEAK_AHEAD_S)
            handle.push_frame(frame)
            await asyncio.sleep(0)  # let the pump and the pacer run between pieces


class RelayControl:
    """Registers the control RPCs and the speak-audio byte stream on a room."""

    def __init__(
        self,
        *,
        room: rtc.Room,
        relay: RoomRelay,
        settings: Settings,
        motion_factory: MotionFactory,
        tts: EspeakTts | None = None,
    ) -> None:
        self._room = room
        self._relay = relay
        self._settings = settings
        self._auth = Authorizer(settings.auth)
        self._limiter = RateLimiter(
            per_second=settings.auth.rate_per_second, burst=settings.auth.rate_burst
        )
        self._motion_factory = motion_factory
        self._tts = tts or EspeakTts(settings.tts)
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self) -> None:
        lp = self._room.local_participant
        lp.register_rpc_method(RPC_SPEAK_TEXT, self._speak_text)
        lp.register_rpc_method(RPC_INTERRUPT, self._interrupt)
        lp.register_rpc_method(RPC_SET_MOTION_SOURCE, self._set_motion_source)
        self._room.register_byte_stream_handler(SPEAK_AUDIO_STREAM_TOPIC, self._on_speak_audio)

    async def aclose(self) -> None:
        lp = self._room.local_participant
        for method in (RPC_SPEAK_TEXT, RPC_INTERRUPT, RPC_SET_MOTION_SOURCE):
            lp.unregister_rpc_method(method)
        self._room.unregister_byte_stream_handler(SPEAK_AUDIO_STREAM_TOPIC)
        if self._tasks:
            await cancel_and_wait(*self._tasks)

    # -- helpers ----------------------------------------------------------------------------
    async def _authorize(self, method: str, identity: str) -> None:
        """Rate limit, then authorize, the caller; raise the RPC error to answer with."""
        self._relay.metrics.control_request(method)
        if not self._limiter.allow(identity):
            self._relay.metrics.control_denied(method, "rate_limited")
            wait = self._limiter.retry_after(identity)
            logger.warning(
                "control request rate limited",
                extra=ctx(self._room.name, method=method, caller=identity, retry_after=wait),
            )
            raise rtc.RpcError(RPC_ERROR_RATE_LIMITED, f"too many requests; retry in {wait:.1f} s")
        try:
            await self._auth.check(self._room, identity)
        except UnauthorizedError as exc:
            self._relay.metrics.control_denied(method, "unauthorized")
            logger.warning(
                "control request refused",
                extra=ctx(self._room.name, method=method, caller=identity, reason=str(exc)),
            )
            raise rtc.RpcError(RPC_ERROR_UNAUTHORIZED, str(exc)) from exc

    def _bad_request(self, method: str, identity: str, why: str) -> rtc.RpcError:
        self._relay.metrics.control_denied(method, "bad_request")
        logger.warning(
            "malformed control request",
            extra=ctx(self._room.name, method=method, caller=identity, reason=why),
        )
        return rtc.RpcError(RPC_ERROR_BAD_REQUEST, why)

    # -- RPC handlers -----------------------------------------------------------------------
    async def _speak_text(self, data: rtc.RpcInvocationData) -> str:
        await self._authorize(RPC_SPEAK_TEXT, data.caller_identity)
        text = data.payload.strip()
        limit = self._settings.relay.max_speak_text_chars
        if not text:
            raise self._bad_request(RPC_SPEAK_TEXT, data.caller_identity, "text is empty")
        if len(text) > limit:
            raise self._bad_request(
                RPC_SPEAK_TEXT, data.caller_identity, f"text exceeds {limit} characters"
            )
        try:
            self._relay.check_capacity()  # before the costly synthesis, not after it
        except (RelayBusyError, RelayClosedError) as exc:
            raise rtc.RpcError(RPC_ERROR_UNAVAILABLE, str(exc)) from exc
        try:
            pcm = await self._tts.synthesize(text)
        except TtsError as exc:
            logger.error("tts failed", extra=ctx(self._room.name, error=str(exc)))
            raise rtc.RpcError(RPC_ERROR_UNAVAILABLE, f"text-to-speech failed: {exc}") from exc
        try:
            handle = await self._relay.open_conversation()
        except (RelayBusyError, RelayClosedError) as exc:
            raise rtc.RpcError(RPC_ERROR_UNAVAILABLE, str(exc)) from exc
        # The caller gets the id at once (PROTOCOL.md); the audio is fed as it plays.
        self._own(feed_pcm(handle, pcm), name=f"relay.speak-text.{handle.id}")
        logger.info(
            "speaking text", extra=ctx(self._room.name, handle.id, caller=data.caller_identity)
        )
        return handle.id

    async def _interrupt(self, data: rtc.RpcInvocationData) -> str:
        await self._authorize(RPC_INTERRUPT, data.caller_identity)
        return self._relay.interrupt_all() or ""

    async def _set_motion_source(self, data: rtc.RpcInvocationData) -> str:
        await self._authorize(RPC_SET_MOTION_SOURCE, data.caller_identity)
        name = data.payload.strip()
        try:
            source = self._motion_factory(name)
        except ValueError as exc:
            raise self._bad_request(RPC_SET_MOTION_SOURCE, data.caller_identity, str(exc)) from exc
        self._relay.set_motion_source(source)
        logger.info("motion source switched", extra=ctx(self._room.name, source=name))
        return name

    # -- speak-audio byte stream ------------------------------------------------------------
    def _on_speak_audio(self, reader: rtc.ByteStreamReader, identity: str) -> None:
        self._own(self._receive_speak_audio(reader, identity), name=f"relay.speak-audio.{identity}")

    def _own(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run ``coro`` as a task that :meth:`aclose` cancels."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _receive_speak_audio(self, reader: rtc.ByteStreamReader, identity: str) -> None:
        try:
            await self._speak_audio_stream(reader, identity)
        finally:
            # A reader left open keeps buffering whatever the sender still sends.
            reader.close()

    async def _speak_audio_stream(self, reader: rtc.ByteStreamReader, identity: str) -> None:
        method = SPEAK_AUDIO_STREAM_TOPIC
        try:
            await self._authorize(method, identity)
        except rtc.RpcError:
            return  # refused and logged
        limit = self._settings.relay.max_speak_audio_bytes
        declared = reader.info.size or 0
        if declared > limit:
            self._bad_request(method, identity, f"WAV of {declared} bytes exceeds {limit}")
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in reader:
                size += len(chunk)
                if size > limit:
                    self._bad_request(method, identity, f"WAV exceeds {limit} bytes")
                    return
                chunks.append(chunk)
        except Exception as exc:  # aborted by the sender or the room went away
            self._bad_request(method, identity, f"stream failed: {exc}")
            return
        try:
            pcm = await decode_wav(b"".join(chunks))
        except WavError as exc:
            self._bad_request(method, identity, str(exc))
            return
        try:
            handle = await speak_pcm(self._relay, pcm)
        except (RelayBusyError, RelayClosedError) as exc:
            self._bad_request(method, identity, str(exc))
            return
        logger.info("speaking audio", extra=ctx(self._room.name, handle.id, caller=identity))
