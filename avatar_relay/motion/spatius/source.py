"""The Spatius motion source: one SDK session serves every conversation; one owned worker task
is the only caller into the SDK (see the package docstring for the policy)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ...protocol.constants import DEFAULT_FPS, SUPPORTED_SAMPLE_RATES
from ..base import (
    MotionAudioError,
    MotionError,
    MotionFrame,
    MotionSource,
    MotionStream,
    MotionStreamEnd,
    MotionStreamInfo,
)
from ._sdk import INSTALL_HINT, SDK_IMPORT_ERROR, spatius, telemetry_enabled
from .config import CODEC, SpatiusConfig
from .failures import ConnectFailedError, Failure, classify_failure
from .wire import has_animation, request_id_of

logger = logging.getLogger("avatar_relay.motion.spatius")

_COALESCE_SECONDS = 1.0
"""Most audio sent in one SDK message when several chunks are waiting."""
_FINISHED_REQUESTS_KEPT = 256
"""Finished req_ids remembered so their late frames are recognized and counted."""
_ORPHAN_FRAMES_KEPT = 256
_CLOSE_TIMEOUT_S = 1.0
"""Longest wait for a websocket close handshake (the SDK's own limit is 10 s)."""
"""Frames kept for a req_id whose send_audio has not returned yet."""


@dataclass
class SpatiusCounters:
    """Things the source dropped or did, for metrics and tests."""

    sessions_started: int = 0
    connect_failures: int = 0
    frames_relayed: int = 0
    late_frames: int = 0
    """Frames of a conversation that had already ended (after the end marker or an interrupt)."""
    duplicate_ends: int = 0
    """End-flagged payloads for a conversation that had already ended."""
    unknown_request_frames: int = 0
    malformed_payloads: int = 0
    audio_bytes_dropped: int = 0
    """Audio not sent to the service (the conversation had already failed or ended)."""
    interrupts_sent: int = 0


@dataclass(slots=True)
class _Command:
    kind: Literal["audio", "end", "interrupt"]
    stream: _SpatiusStream
    data: bytes = b""
    retried: bool = False
    """A first audio already sent again on a fresh session (at most once)."""


async def _close_session(session: spatius.AvatarSession) -> None:
    """Close without waiting long for a peer that no longer answers the close handshake.

    The session is being abandoned anyway: a close that fails is logged, never raised, so it
    cannot take the worker task (and every later conversation) down with it.
    """
    try:
        await asyncio.wait_for(session.close(), _CLOSE_TIMEOUT_S)
    except TimeoutError:
        logger.warning("spatius session did not close in time; abandoned")
    except Exception as exc:
        logger.warning("spatius session failed to close; abandoned", extra={"error": repr(exc)})


def _ended_naturally(stream: _SpatiusStream) -> bool:
    """The service sent the request's end marker (no interrupt, failure or close)."""
    end = stream.end
    return end is not None and not end.audio_only and end.reason == ""


class _SpatiusStream(MotionStream):
    """One conversation: its audio goes out through the source, its frames come back here."""

    def __init__(
        self,
        source: SpatiusMotionSource,
        conversation_id: str,
        sample_rate: int,
        info: MotionStreamInfo,
    ) -> None:
        self._source = source
        self._info = info
        self._items: asyncio.Queue[MotionFrame | MotionStreamEnd] = asyncio.Queue()
        self.conversation_id = conversation_id
        self.sample_rate = sample_rate
        self.req_id: str | None = None
        self.session_gen: int | None = None
        self.done = False
        """No further item will be produced (end marker queued)."""
        self.flushed = False
        self.end_sent = False
        self.closed = False
        self.next_index = 0
        self.queued_bytes = 0
        self.end: MotionStreamEnd | None = None
        self._drained = False

    @property
    def info(self) -> MotionStreamInfo:
        return self._info

    def push_audio(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise MotionAudioError(f"pcm s16le needs an even byte count, got {len(pcm)}")
        if self.flushed:
            raise MotionAudioError("push_audio after flush")
        if self.done or not pcm:
            self._source.counters.audio_bytes_dropped += len(pcm)
            return
        self._source._queue_audio(self, bytes(pcm))

    def flush(self) -> None:
        if self.flushed:
            return
        self.flushed = True
        if not self.done:
            self._source._enqueue(_Command("end", self))

    async def interrupt(self) -> None:
        self.finish(MotionStreamEnd(reason="interrupted"))

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.finish(MotionStreamEnd(reason="closed"))

    def deliver(self, payload: bytes, is_last: bool) -> None:
        """One ``transport_frames`` payload of this conversation's request."""
        counters = self._source.counters
        if self.done:
            if is_last:
                counters.duplicate_ends += 1
            else:
                counters.late_frames += 1
            return
        if not (is_last and not has_animation(payload)):
            # The end marker usually carries no animation: it is no frame then.
            self._items.put_nowait(MotionFrame(index=self.next_index, payload=payload))
            self.next_index += 1
            counters.frames_relayed += 1
        if is_last:
            self.finish(MotionStreamEnd())

    def fail(self, reason: str) -> None:
        """End the conversation audio-only; its audio keeps flowing elsewhere."""
        if not self.done:
            logger.warning(
                "spatius conversation is audio-only",
                extra={"conversation_id": self.conversation_id, "reason": reason},
            )
        self.finish(MotionStreamEnd(audio_only=True, reason=reason, failed=True))

    def finish(self, end: MotionStreamEnd) -> None:
        if self.done:
            return
        self.done = True
        self.end = end
        self._items.put_nowait(end)
        self._source._retire(self)

    def __aiter__(self) -> AsyncIterator[MotionFrame | MotionStreamEnd]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[MotionFrame | MotionStreamEnd]:
        while not self._drained:
            item = await self._items.get()
            if isinstance(item, MotionStreamEnd):
                self._drained = True
            yield item


class SpatiusMotionSource(MotionSource):
    """Real Spatius animation from the vendor's server SDK, one request per conversation."""

    name = "spatius"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        app_id: str | None = None,
        avatar_id: str | None = None,
        region: str | None = None,
        console_endpoint_url: str | None = None,
        ingress_endpoint_url: str | None = None,
        telemetry: bool = False,
        connect_timeout_s: float = 5.0,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
        max_backlog_s: float = 10.0,
        lookahead_ms: int = 0,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Arguments left out come from ``SPATIUS_*`` environment variables.

        ``telemetry`` opts in to the SDK's default export of OpenTelemetry to the vendor.
        ``connect_timeout_s`` bounds token exchange plus handshake; ``retry_*`` bound the
        backoff between conversations; ``max_backlog_s`` is how much unsent audio a
        conversation may queue before it gives up on animation. ``lookahead_ms`` is reported
        in the stream info (the service publishes none). ``clock`` is for tests.
        """
        if SDK_IMPORT_ERROR is not None:
            raise ImportError(INSTALL_HINT) from SDK_IMPORT_ERROR
        if connect_timeout_s <= 0 or retry_initial_s <= 0 or retry_max_s < retry_initial_s:
            raise ValueError("timeouts must be positive and retry_max_s >= retry_initial_s")
        if max_backlog_s <= 0 or lookahead_ms < 0:
            raise ValueError("max_backlog_s must be positive and lookahead_ms non-negative")
        self.config = SpatiusConfig.resolve(
            api_key=api_key,
            app_id=app_id,
            avatar_id=avatar_id,
            region=region,
            console_endpoint_url=console_endpoint_url,
            ingress_endpoint_url=ingress_endpoint_url,
            environ=os.environ if environ is None else environ,
        )
        self.counters = SpatiusCounters()
        self._telemetry = telemetry
        self._connect_timeout_s = connect_timeout_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._max_backlog_s = max_backlog_s
        self._clock = clock
        self._info = MotionStreamInfo(
            codec=CODEC, fps=float(DEFAULT_FPS), channels=(), lookahead_ms=lookahead_ms
        )
        self._session: spatius.AvatarSession | None = None
        self._session_gen = 0
        self._session_rate = 0
        self._session_broken = False
        self._pending_failure: Failure | None = None
        self._fatal: str | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._last_failure = ""
        self._commands: deque[_Command] = deque()
        self._wake = asyncio.Event()
        self._worker_atask: asyncio.Task[None] | None = None
        self._streams: set[_SpatiusStream] = set()
        self._streams_by_req: dict[str, _SpatiusStream] = {}
        self._finished_reqs: OrderedDict[str, str] = OrderedDict()
        self._orphans: dict[str, list[tuple[bytes, bool]]] = {}
        self._open_stream: _SpatiusStream | None = None
        """The stream whose SDK request is open (audio sent, end not yet sent)."""
        self._last_stream: _SpatiusStream | None = None
        """The stream of the SDK's most recent request: the only one its interrupt reaches."""
        self._closed = False
        self._prewarm_rate: int | None = None
        self._apply_telemetry_policy()

    # -- public surface ---------------------------------------------------------------------

    @property
    def requests(self) -> Mapping[str, str]:
        """req_id -> conversationId for live and recently finished conversations."""
        live = {req: stream.conversation_id for req, stream in self._streams_by_req.items()}
        return {**self._finished_reqs, **live}

    @property
    def unavailable_reason(self) -> str | None:
        """Why ``open_stream`` would refuse right now, or None."""
        if self._fatal is not None:
            return f"{self._fatal}; not retrying (fix the configuration or account, then reset)"
        wait = self._retry_at - self._clock()
        if wait > 0:
            return f"{self._last_failure}; next attempt in {wait:.1f} s"
        return None

    def reset(self) -> None:
        """Forget a non-retryable failure and the backoff, e.g. after fixing the account."""
        self._fatal = None
        self._failures = 0
        self._retry_at = 0.0

    async def open_stream(self, conversation_id: str, sample_rate: int) -> MotionStream:
        """Never waits for the network: connecting happens in the background.

        Raises MotionError at once while the service is known to be unusable.
        """
        if self._closed:
            raise MotionError("spatius motion source is closed")
        if not 1 <= len(conversation_id) <= 64:
            raise ValueError("conversation_id must be 1..64 characters")
        if sample_rate not in SUPPORTED_SAMPLE_RATES:
            raise MotionAudioError(f"unsupported sample rate {sample_rate}")
        if any(s.conversation_id == conversation_id for s in self._streams):
            raise ValueError(f"conversation {conversation_id!r} already has a stream")
        reason = self.unavailable_reason
        if reason is not None and self._session is None:
            raise MotionError(reason)
        stream = _SpatiusStream(self, conversation_id, sample_rate, self._info)
        self._streams.add(stream)
        self._ensure_worker()
        return stream

    def prewarm(self, sample_rate: int) -> None:
        """Open the session now, in the background, so the first conversation finds it ready.

        A failure is recorded (and a configuration error reported) as for a conversation.
        """
        if self._closed or sample_rate not in SUPPORTED_SAMPLE_RATES:
            return
        self._prewarm_rate = sample_rate
        self._ensure_worker()
        self._wake.set()

    def idle_info(self) -> MotionStreamInfo | None:
        return None

    def idle_frames(self, first_frame: int, count: int) -> Sequence[bytes]:
        return ()

    def _ensure_worker(self) -> None:
        if self._worker_atask is None or self._worker_atask.done():
            task = asyncio.create_task(self._run(), name="spatius-motion-worker")
            task.add_done_callback(self._on_worker_done)
            self._worker_atask = task

    def _on_worker_done(self, task: asyncio.Task[None]) -> None:
        """The worker only ends when cancelled; if it died, say so, end what waited on it and
        let the next conversation start a new one (instead of stalling to audio-only)."""
        if task.cancelled():
            return
        logger.error("spatius worker task died; a new one starts with the next conversation",
                     exc_info=task.exception())  # fmt: skip
        if task is self._worker_atask:  # no new worker took over yet: nobody serves these
            self._worker_atask = None
            for stream in list(self._streams):
                stream.fail("spatius motion source internal error")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):
            stream.fail("spatius motion source closed")
        task, self._worker_atask = self._worker_atask, None
        if task is not None:
            task.cancel()
            # Wait for the worker without catching CancelledError: a cancellation of aclose()
            # itself must propagate to its caller.
            await asyncio.wait([task])
        await self._drop_session()

    # -- called by streams ------------------------------------------------------------------

    def _enqueue(self, command: _Command) -> None:
        self._commands.append(command)
        self._wake.set()

    def _queue_audio(self, stream: _SpatiusStream, pcm: bytes) -> None:
        limit = int(self._max_backlog_s * stream.sample_rate) * 2
        if stream.queued_bytes + len(pcm) > limit:
            self.counters.audio_bytes_dropped += len(pcm)
            stream.fail(f"spatius fell {self._max_backlog_s:g} s behind the audio")
            return
        stream.queued_bytes += len(pcm)
        self._enqueue(_Command("audio", stream, pcm))

    def _retire(self, stream: _SpatiusStream) -> None:
        """A stream ended: later frames of its request are late; an open request is cut."""
        self._streams.discard(stream)
        if stream.req_id is not None:
            self._streams_by_req.pop(stream.req_id, None)
            self._remember_finished(stream.req_id, stream.conversation_id)
        if stream.req_id is not None and not _ended_naturally(stream):
            # ended early (interrupt, failure, close): stop the request at the service
            self._enqueue(_Command("interrupt", stream))

    # -- SDK callbacks (run on the SDK's read-loop task) ------------------------------------

    def _on_frames(self, gen: int, payload: bytes, is_last: bool) -> None:
        if gen != self._session_gen:
            return
        req_id = request_id_of(payload)
        if req_id is None:
            self.counters.malformed_payloads += 1
            return
        stream = self._streams_by_req.get(req_id)
        if stream is not None:
            stream.deliver(payload, is_last)
        elif req_id in self._finished_reqs:
            if is_last:
                self.counters.duplicate_ends += 1
            else:
                self.counters.late_frames += 1
        else:
            # send_audio has not returned this req_id yet; keep the frames for it
            orphans = self._orphans.setdefault(req_id, [])
            if len(orphans) < _ORPHAN_FRAMES_KEPT:
                orphans.append((payload, is_last))
            else:
                self.counters.unknown_request_frames += 1

    def _on_error(self, gen: int, exc: Exception) -> None:
        if gen != self._session_gen:
            return
        failure = classify_failure(exc)
        req_id = getattr(exc, "req_id", None)
        if getattr(exc, "close_code", None) is None and req_id and failure.kind == "retry":
            # a server error about one request; the connection itself is fine
            stream = self._streams_by_req.get(req_id)
            if stream is not None:
                stream.fail(failure.reason)
            return
        logger.warning("spatius session failed", extra={"reason": failure.reason})
        self._pending_failure = failure
        self._session_broken = True
        self._wake.set()

    def _on_close(self, gen: int) -> None:
        if gen != self._session_gen or self._session is None:
            return
        failure = self._pending_failure
        self._pending_failure = None
        if failure is not None:
            self._record_failure(failure)
        self._lose_session(gen, failure.reason if failure else "spatius closed the session")

    # -- the worker -------------------------------------------------------------------------

    async def _run(self) -> None:
        """Executes commands in order; the only task that calls into the SDK."""
        while True:
            if self._session_broken:
                self._session_broken = False
                failure, self._pending_failure = self._pending_failure, None
                if failure is not None:
                    self._record_failure(failure)
                await self._drop_session(failure.reason if failure else "spatius session failed")
            if not self._commands and self._prewarm_rate is not None:
                rate, self._prewarm_rate = self._prewarm_rate, None
                if self._session is None and self.unavailable_reason is None:
                    with contextlib.suppress(ConnectFailedError):  # recorded by _connect
                        await self._connect(rate)
                continue
            if not self._commands:
                self._wake.clear()
                await self._wake.wait()
                continue
            command = self._commands.popleft()
            try:
                await self._execute(command)
            except (spatius.AvatarSDKError, ValueError, OSError) as exc:
                # the SDK raises these when the connection died under a send
                failure = self._pending_failure or classify_failure(exc)
                self._pending_failure = None
                stream = command.stream
                if (
                    command.kind == "audio"
                    and stream.req_id is None
                    and not command.retried
                    and failure.kind != "fatal"
                ):
                    # The session died between conversations (an idle close seen only now):
                    # nothing of this conversation reached it, so reopen and send it again.
                    logger.info(
                        "spatius session was gone; reopening", extra={"reason": failure.reason}
                    )
                    command.retried = True
                    stream.session_gen = None
                    stream.queued_bytes += len(command.data)
                    self._commands.appendleft(command)
                    await self._drop_session(failure.reason)
                    continue
                self._record_failure(failure)
                command.stream.fail(failure.reason)
                await self._drop_session(failure.reason)
            except Exception:
                # a bug must not leave every later conversation waiting for frames forever
                logger.exception(
                    "spatius worker failed on a command",
                    extra={"conversation_id": command.stream.conversation_id},
                )
                command.stream.fail("spatius motion source internal error")
                await self._drop_session("spatius motion source internal error")

    async def _execute(self, command: _Command) -> None:
        stream = command.stream
        if command.kind == "audio":
            pcm = command.data = self._take_audio(command)
            if stream.done:
                self.counters.audio_bytes_dropped += len(pcm)
                return
            session = await self._session_for(stream)
            if session is None:
                self.counters.audio_bytes_dropped += len(pcm)
                return
            previous = self._open_stream
            if previous is not None and previous is not stream:
                # Its remaining frames will never come: the relay must announce audio-only.
                previous.fail("superseded by a newer conversation")
                await self._interrupt_request(session, previous)
            req_id = await session.send_audio(pcm, end=False)
            if stream.req_id is None:
                self._register(stream, req_id)
                if stream.done:  # interrupted while its first audio was on the way
                    await self._interrupt_request(session, stream)
        elif command.kind == "end":
            if stream.done:
                return
            session = self._session
            if stream.req_id is None or session is None or stream.session_gen != self._session_gen:
                stream.fail("no audio reached spatius")
                return
            await session.send_audio(b"", end=True)
            stream.end_sent = True
            if self._open_stream is stream:
                self._open_stream = None
        else:
            session = self._session
            if session is not None and stream.session_gen == self._session_gen:
                await self._interrupt_request(session, stream)

    def _take_audio(self, command: _Command) -> bytes:
        """The command's audio plus the same stream's audio queued right behind it."""
        stream = command.stream
        parts = [command.data]
        size = len(command.data)
        limit = int(_COALESCE_SECONDS * stream.sample_rate) * 2
        while self._commands and size < limit:
            head = self._commands[0]
            if head.kind != "audio" or head.stream is not stream:
                break
            self._commands.popleft()
            parts.append(head.data)
            size += len(head.data)
        stream.queued_bytes -= size
        return b"".join(parts)

    async def _interrupt_request(
        self, session: spatius.AvatarSession, stream: _SpatiusStream
    ) -> None:
        """Send the SDK's interrupt if it still reaches this stream's request.

        The SDK interrupts its most recent request only, so an older conversation that ends
        early is just no longer relayed; its remaining frames are counted as late.
        """
        if stream is not self._open_stream and stream is not self._last_stream:
            return
        if self._open_stream is stream:
            self._open_stream = None
        await session.interrupt()
        self.counters.interrupts_sent += 1

    def _register(self, stream: _SpatiusStream, req_id: str) -> None:
        stream.req_id = req_id
        self._open_stream = stream
        self._last_stream = stream
        if stream.done:
            self._remember_finished(req_id, stream.conversation_id)
        else:
            self._streams_by_req[req_id] = stream
        for payload, is_last in self._orphans.pop(req_id, []):
            stream.deliver(payload, is_last)
        self.counters.unknown_request_frames += sum(len(v) for v in self._orphans.values())
        self._orphans.clear()

    def _remember_finished(self, req_id: str, conversation_id: str) -> None:
        self._finished_reqs[req_id] = conversation_id
        while len(self._finished_reqs) > _FINISHED_REQUESTS_KEPT:
            self._finished_reqs.popitem(last=False)

    async def _session_for(self, stream: _SpatiusStream) -> spatius.AvatarSession | None:
        """The live session for this stream, connecting for its first audio if needed."""
        if stream.session_gen is not None:
            if stream.session_gen == self._session_gen and self._session is not None:
                return self._session
            stream.fail(self._last_failure or "spatius session ended")
            return None
        if self._session is not None and self._session_rate != stream.sample_rate:
            await self._drop_session()
        if self._session is None:
            reason = self.unavailable_reason
            if reason is not None:
                stream.fail(reason)
                return None
            try:
                await self._connect(stream.sample_rate)
            except ConnectFailedError as exc:
                stream.fail(str(exc))
                return None
        stream.session_gen = self._session_gen
        return self._session

    async def _connect(self, sample_rate: int) -> None:
        try:
            self._apply_telemetry_policy()
        except MotionError as exc:
            self._record_failure(Failure("fatal", str(exc)))
            raise ConnectFailedError(str(exc)) from exc
        gen = self._session_gen + 1
        config = self.config
        session = spatius.new_avatar_session(
            api_key=config.api_key,
            app_id=config.app_id,
            avatar_id=config.avatar_id,
            sample_rate=sample_rate,
            region=config.region,
            console_endpoint_url=config.console_endpoint_url,
            ingress_endpoint_url=config.ingress_endpoint_url,
            transport_frames=lambda payload, is_last: self._on_frames(gen, payload, is_last),
            on_error=lambda exc: self._on_error(gen, exc),
            on_close=lambda: self._on_close(gen),
        )
        try:
            await asyncio.wait_for(self._init_and_start(session), self._connect_timeout_s)
        except asyncio.CancelledError:
            await _close_session(session)
            raise
        except Exception as exc:
            await _close_session(session)
            failure = classify_failure(exc)
            self.counters.connect_failures += 1
            self._record_failure(failure)
            raise ConnectFailedError(failure.reason) from exc
        self._session = session
        self._session_gen = gen
        self._session_rate = sample_rate
        self._pending_failure = None
        self._failures = 0
        self._retry_at = 0.0
        self.counters.sessions_started += 1
        logger.info("spatius session started", extra={"sample_rate": sample_rate})

    @staticmethod
    async def _init_and_start(session: spatius.AvatarSession) -> None:
        await session.init()
        await session.start()

    def _apply_telemetry_policy(self) -> None:
        if self._telemetry:
            return
        try:
            spatius.configure_telemetry("")
        except RuntimeError as exc:
            raise MotionError(
                "spatius telemetry was already started by other code in this process; "
                "refusing to open sessions with telemetry on (pass telemetry=True to allow it)"
            ) from exc
        if telemetry_enabled():
            raise MotionError("spatius telemetry could not be disabled")

    def _record_failure(self, failure: Failure) -> None:
        self._last_failure = failure.reason
        if failure.kind == "fatal":
            self._fatal = failure.reason
            logger.error("spatius is unavailable, not retrying", extra={"reason": failure.reason})
        elif failure.kind == "retry":
            self._failures += 1
            delay = min(self._retry_initial_s * 2 ** (self._failures - 1), self._retry_max_s)
            self._retry_at = self._clock() + delay
            logger.warning(
                "spatius failed, retrying later",
                extra={"reason": failure.reason, "retry_in_s": delay},
            )

    def _lose_session(self, gen: int, reason: str) -> None:
        """The session is gone: every conversation riding on it ends audio-only."""
        self._session = None
        self._open_stream = None
        self._last_stream = None
        self._orphans.clear()
        for stream in list(self._streams):
            if stream.session_gen == gen and not stream.done:
                stream.fail(reason)

    async def _drop_session(self, reason: str = "spatius session closed") -> None:
        session = self._session
        if session is None:
            return
        gen = self._session_gen
        self._session_gen += 1  # callbacks of the old session are ignored from now on
        self._lose_session(gen, reason)
        await _close_session(session)
