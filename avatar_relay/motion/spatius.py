"""Spatius animation through the vendor's own server SDK (``pip install 'avatar-relay[spatius]'``).

One SDK session (websocket mode, no egress) serves every conversation, one after the other:
each conversation becomes one SDK request, and every ``transport_frames`` payload of that
request is relayed unchanged as one frame of codec ``spatius``. The SDK's descriptor gives a
``ServerResponseAnimation`` only ``connection_id``, ``req_id`` and ``end``; the animation itself
is opaque, so a frame's index is its order of arrival within the conversation (25 fps).

Nothing here may hold up the real-time audio path: ``push_audio`` only queues, and one owned
background task talks to the SDK. When the service fails, the conversation ends audio-only and
the source decides, from the close code or server error, whether a later conversation may try
again (with bounded exponential backoff) or the source stays unavailable:

- 4001 credits exhausted, 4003 concurrency limit, 4010 authentication failed (and a 401/402/
  403/404 from the session-token endpoint): never retried; ``open_stream`` raises
  :class:`MotionError` until :meth:`SpatiusMotionSource.reset` or a new source.
- 4002 session timeout: the session reached its maximum length, which says nothing about the
  next session, so the next conversation opens a new one at once, without backoff.
- 4503 upstream unavailable, dropped connections, timeouts and other errors: retried between
  conversations after 1, 2, 4, ... seconds (capped); meanwhile ``open_stream`` raises at once.

The SDK exports OpenTelemetry to the vendor by default; the source switches that off with
``spatius.configure_telemetry("")`` before any session unless ``telemetry=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf.message import DecodeError

from ..protocol.constants import DEFAULT_FPS, SUPPORTED_SAMPLE_RATES
from .base import (
    MotionAudioError,
    MotionError,
    MotionFrame,
    MotionSource,
    MotionStream,
    MotionStreamEnd,
    MotionStreamInfo,
)

_INSTALL_HINT = (
    "the spatius motion source needs the Spatius SDK: pip install 'avatar-relay[spatius]'"
)

try:
    import spatius
    from spatius.proto.generated import message_pb2
    from spatius.telemetry import telemetry_enabled

    _SDK_IMPORT_ERROR: ImportError | None = None
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    _SDK_IMPORT_ERROR = _exc

logger = logging.getLogger("avatar_relay.motion.spatius")

CODEC = "spatius"
"""Codec name of the relayed frames: one serialized SDK ``Message`` envelope per frame."""

ENV_API_KEY = "SPATIUS_API_KEY"
ENV_APP_ID = "SPATIUS_APP_ID"
ENV_AVATAR_ID = "SPATIUS_AVATAR_ID"
ENV_REGION = "SPATIUS_REGION"
ENV_CONSOLE_URL = "SPATIUS_CONSOLE_ENDPOINT"
ENV_INGRESS_URL = "SPATIUS_INGRESS_ENDPOINT"
"""The vendor's own names (its LiveKit plugin and docs)."""
ENV_ALIASES: Mapping[str, str] = {
    ENV_CONSOLE_URL: "SPATIUS_CONSOLE_ENDPOINT_URL",
    ENV_INGRESS_URL: "SPATIUS_INGRESS_ENDPOINT_URL",
}
"""Our earlier names, still read when the vendor's are unset."""

FATAL_CODES: Mapping[int, str] = {
    4001: "credits exhausted",
    4003: "concurrency limit reached",
    4010: "authentication failed",
}
"""Close codes (or server error codes) after which the source never retries by itself.

Every other code in 4000-4499 except 4002 is not retried either, as the vendor's SDK rules
(``spatialreal/errors.py``); these are the ones with a known meaning.
"""
NON_RETRYABLE_CODES = range(4000, 4500)

_CONFIGURATION_ERRORS = frozenset(
    {"unsupportedSampleRate", "sessionTokenInvalid", "protocolError", "invalidRequest"}
)
"""SDK error codes that a retry cannot fix: reported once, never retried."""

SESSION_TIMEOUT_CODE = 4002
UPSTREAM_UNAVAILABLE_CODE = 4503

_FATAL_TOKEN_STATUS: Mapping[int, str] = {
    401: "api key rejected",
    402: "billing required",
    403: "api key not allowed",
    404: "app id unrecognized",
}
_FATAL_UPGRADE_STATUS: Mapping[int, str] = {
    400: "refused the request",
    401: "refused the session key or app id",
    403: "refused the session",
    404: "does not know the avatar",
}
"""HTTP statuses of a refused websocket upgrade: configuration errors, not retried."""
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


@dataclass(frozen=True, slots=True)
class SpatiusConfig:
    """Credentials and endpoints, each from a constructor argument or its environment variable."""

    api_key: str
    app_id: str
    avatar_id: str
    region: str
    """``auto`` asks the vendor's bootstrap API; ignored when both endpoint URLs are set."""
    console_endpoint_url: str
    ingress_endpoint_url: str

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | None,
        app_id: str | None,
        avatar_id: str | None,
        region: str | None,
        console_endpoint_url: str | None,
        ingress_endpoint_url: str | None,
        environ: Mapping[str, str],
    ) -> SpatiusConfig:
        def pick(value: str | None, variable: str, *, required: bool) -> str:
            if value is None:
                value = environ.get(variable, "") or environ.get(ENV_ALIASES.get(variable, ""), "")
            chosen = value.strip()
            if required and not chosen:
                raise MotionError(
                    f"spatius: {variable} is not set (set the environment variable "
                    f"or pass it to SpatiusMotionSource)"
                )
            return chosen

        return cls(
            api_key=pick(api_key, ENV_API_KEY, required=True),
            app_id=pick(app_id, ENV_APP_ID, required=True),
            avatar_id=pick(avatar_id, ENV_AVATAR_ID, required=True),
            region=pick(region, ENV_REGION, required=False) or "auto",
            console_endpoint_url=pick(console_endpoint_url, ENV_CONSOLE_URL, required=False),
            ingress_endpoint_url=pick(ingress_endpoint_url, ENV_INGRESS_URL, required=False),
        )


@dataclass(frozen=True, slots=True)
class _Failure:
    kind: Literal["fatal", "new_session", "retry"]
    reason: str


@dataclass(slots=True)
class _Command:
    kind: Literal["audio", "end", "interrupt"]
    stream: _SpatiusStream
    data: bytes = b""
    retried: bool = False
    """A first audio already sent again on a fresh session (at most once)."""


class _ConnectFailedError(Exception):
    """A session could not be opened; the message is the reason the stream ends with."""


def _code_of(exc: BaseException) -> int | None:
    close_code = getattr(exc, "close_code", None)
    if isinstance(close_code, int):
        return close_code
    server_code = getattr(exc, "server_code", None)
    if isinstance(server_code, str) and server_code.isdigit():
        return int(server_code)
    return None


def classify_failure(exc: BaseException) -> _Failure:
    """Decide from an SDK exception whether and when the source may try again."""
    code = _code_of(exc)
    detail = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    if code is not None and code in FATAL_CODES:
        return _Failure("fatal", f"spatius {FATAL_CODES[code]} ({code}): {detail}")
    if code == SESSION_TIMEOUT_CODE:
        return _Failure("new_session", f"spatius session timeout ({code}): {detail}")
    if code is not None and code in NON_RETRYABLE_CODES:
        return _Failure("fatal", f"spatius refused the session ({code}): {detail}")
    status = exc.http_status if isinstance(exc, spatius.SessionTokenError) else None
    if status is not None and status in _FATAL_TOKEN_STATUS:
        label = _FATAL_TOKEN_STATUS[status]
        return _Failure("fatal", f"spatius {label} (HTTP {status}): {detail}")
    status = getattr(exc, "http_status", None)
    if isinstance(status, int) and status in _FATAL_UPGRADE_STATUS:
        label = _FATAL_UPGRADE_STATUS[status]
        return _Failure("fatal", f"spatius {label} (HTTP {status}): {detail}")
    if isinstance(exc, spatius.AvatarSDKError):
        sdk_code = exc.code
        if sdk_code == spatius.AvatarSDKErrorCode.creditsExhausted:
            return _Failure("fatal", f"spatius credits exhausted: {detail}")
        if sdk_code in (
            spatius.AvatarSDKErrorCode.billingRequired,
            spatius.AvatarSDKErrorCode.appIDUnrecognized,
            spatius.AvatarSDKErrorCode.appIDMismatch,
            spatius.AvatarSDKErrorCode.avatarNotFound,
        ):
            return _Failure("fatal", f"spatius {sdk_code.value}: {detail}")
        if sdk_code == spatius.AvatarSDKErrorCode.sessionDurationExceeded:
            return _Failure("new_session", f"spatius session timeout: {detail}")
        if sdk_code.value in _CONFIGURATION_ERRORS:
            return _Failure("fatal", f"spatius configuration error ({sdk_code.value}): {detail}")
        if sdk_code == spatius.AvatarSDKErrorCode.idleTimeout:
            return _Failure("new_session", f"spatius closed the idle session: {detail}")
    if isinstance(exc, asyncio.TimeoutError):
        return _Failure("retry", "spatius did not answer in time")
    return _Failure("retry", f"spatius unavailable: {detail}")


async def _close_session(session: spatius.AvatarSession) -> None:
    """Close without waiting long for a peer that no longer answers the close handshake."""
    try:
        await asyncio.wait_for(session.close(), _CLOSE_TIMEOUT_S)
    except TimeoutError:
        logger.warning("spatius session did not close in time; abandoned")


def _ended_naturally(stream: _SpatiusStream) -> bool:
    """The service sent the request's end marker (no interrupt, failure or close)."""
    end = stream.end
    return end is not None and not end.audio_only and end.reason == ""


ANIMATION_FIELD = 4
"""``ServerResponseAnimation.animation`` (bytes) in the vendor's descriptor (spatialreal 0.2.2);
the spatius 1.1.1 descriptor does not declare it, so it is read from the wire."""


def _has_animation(payload: bytes) -> bool:
    """Whether a ``ServerResponseAnimation`` envelope carries animation bytes (field 4)."""
    envelope: Any = message_pb2.Message()  # type: ignore[attr-defined]
    try:
        envelope.ParseFromString(payload)
        body: bytes = envelope.server_response_animation.SerializeToString()
        pos = 0
        while pos < len(body):
            key, pos = _varint_at(body, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint_at(body, pos)
            elif wire == 2:
                size, pos = _varint_at(body, pos)
                if number == ANIMATION_FIELD and size > 0:
                    return True
                pos += size
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                return True  # unknown layout: treat it as a frame, as before
    except (DecodeError, IndexError):
        return True
    return False


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _request_id_of(payload: bytes) -> str | None:
    """The req_id of a serialized ``ServerResponseAnimation`` envelope, or None."""
    # message_pb2 builds its classes at import time, so type checkers cannot see them
    envelope: Any = message_pb2.Message()  # type: ignore[attr-defined]
    try:
        envelope.ParseFromString(payload)
    except DecodeError:
        return None
    if envelope.WhichOneof("data") != "server_response_animation":
        return None
    return str(envelope.server_response_animation.req_id)


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
        if not (is_last and not _has_animation(payload)):
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
        if _SDK_IMPORT_ERROR is not None:
            raise ImportError(_INSTALL_HINT) from _SDK_IMPORT_ERROR
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
        self._pending_failure: _Failure | None = None
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
        if self._worker_atask is None:
            self._worker_atask = asyncio.create_task(self._run(), name="spatius-motion-worker")
        return stream

    def prewarm(self, sample_rate: int) -> None:
        """Open the session now, in the background, so the first conversation finds it ready.

        A failure is recorded (and a configuration error reported) as for a conversation.
        """
        if self._closed or sample_rate not in SUPPORTED_SAMPLE_RATES:
            return
        self._prewarm_rate = sample_rate
        if self._worker_atask is None:
            self._worker_atask = asyncio.create_task(self._run(), name="spatius-motion-worker")
        self._wake.set()

    def idle_info(self) -> MotionStreamInfo | None:
        return None

    def idle_frames(self, first_frame: int, count: int) -> Sequence[bytes]:
        return ()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):
            stream.fail("spatius motion source closed")
        task, self._worker_atask = self._worker_atask, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
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
        req_id = _request_id_of(payload)
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
                    with contextlib.suppress(_ConnectFailedError):  # recorded by _connect
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
            except _ConnectFailedError as exc:
                stream.fail(str(exc))
                return None
        stream.session_gen = self._session_gen
        return self._session

    async def _connect(self, sample_rate: int) -> None:
        try:
            self._apply_telemetry_policy()
        except MotionError as exc:
            self._record_failure(_Failure("fatal", str(exc)))
            raise _ConnectFailedError(str(exc)) from exc
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
            raise _ConnectFailedError(failure.reason) from exc
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

    def _record_failure(self, failure: _Failure) -> None:
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
