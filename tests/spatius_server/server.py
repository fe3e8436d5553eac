"""A local server speaking the Spatius SDK's wire protocol, for tests and offline development.

Endpoints (one aiohttp app, loopback only):
- ``POST {console}/session-tokens``: header ``X-Api-Key``, JSON ``{"expireAt": unix}``,
  answers ``{"sessionToken": ...}`` or 401.
- ``GET {ingress}/websocket?id=<avatarId>``: headers ``X-App-ID`` and ``X-Session-Key``;
  binary protobuf ``Message`` envelopes built with the SDK's own generated classes.

Every fault the relay must survive is a knob on :class:`Faults`; everything the server saw or
sent is kept in :class:`ServerRecord` so tests can assert on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import WSMsgType, web
from spatius.proto.generated import message_pb2 as _message_pb2

from avatar_relay.motion.base import MotionFrame, MotionSource, MotionStream

from .animation import ANIMATION_FIELD, AVATAR_ID_FIELD, FrameCutter, frame_bytes

logger = logging.getLogger("avatar_relay.tests.spatius_server")

pb: Any = _message_pb2
"""The SDK's generated protobuf module (its classes are built at import, so untyped)."""

CONSOLE_PATH = "/v1/console"
INGRESS_PATH = "/v2/driveningress"
SUPPORTED_SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
HANDSHAKE_TIMEOUT_S = 10.0
MAX_TOKEN_LIFETIME_S = 24 * 3600
"""A session token's expireAt must lie in (now, now + 24 h)."""

CLOSE_NORMAL = 1000
CLOSE_CREDITS_EXHAUSTED = 4001
CLOSE_SESSION_TIMEOUT = 4002
CLOSE_CONCURRENCY_LIMIT = 4003
CLOSE_AUTH_FAILED = 4010
CLOSE_UPSTREAM_UNAVAILABLE = 4503

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass
class MidStreamFault:
    """A fault injected into one request after ``after_frames`` animation messages."""

    after_frames: int
    kind: Literal["error", "close", "drop"]
    """``error``: ServerError for the request; ``close``: close with ``code``; ``drop``: cut TCP."""
    code: int = 0
    message: str = ""


@dataclass
class Faults:
    """Fault knobs; queues are consumed one entry per connection or per request."""

    reject_token: bool = False
    """Answer the session-token POST with 401 whatever the key."""
    handshake_close_codes: deque[int] = field(default_factory=deque)
    """Close the next connections with these codes instead of confirming the session."""
    handshake_errors: deque[tuple[int, str]] = field(default_factory=deque)
    """Answer the next handshakes with ServerError(code, message), then close."""
    handshake_delay: float = 0.0
    """Seconds to wait before answering a handshake."""
    frame_delay: float = 0.0
    """Seconds to wait before sending each animation message (a slow server)."""
    request_faults: deque[MidStreamFault] = field(default_factory=deque)
    """Faults for the next requests (one per new req_id)."""
    trailing_after_end: bool = False
    """After a request's final message, send one more frame and a second end message."""


@dataclass
class ConnectionRecord:
    """One websocket connection as the server saw it."""

    avatar_id: str
    app_id: str
    session_key: str
    connection_id: str = ""
    sample_rate: int = 0
    audio_format: int = 0
    close_code: int | None = None


@dataclass
class ServerRecord:
    """What the server received and sent."""

    token_requests: list[dict[str, Any]] = field(default_factory=list)
    connections: list[ConnectionRecord] = field(default_factory=list)
    audio: dict[str, bytearray] = field(default_factory=dict)
    """req_id -> PCM received."""
    ended: list[str] = field(default_factory=list)
    """req_ids whose final audio chunk (end=True) arrived."""
    interrupts: list[str] = field(default_factory=list)
    sent: dict[str, list[bytes]] = field(default_factory=dict)
    """req_id -> serialized envelopes carrying animation (frames), exactly as written."""
    end_markers: dict[str, int] = field(default_factory=dict)
    """req_id -> end messages without animation written (one per finished request)."""
    errors_sent: list[tuple[str, int, str]] = field(default_factory=list)
    idle_closes: int = 0
    """Sessions closed for receiving no audio within the idle timeout."""
    rejected_upgrades: list[int] = field(default_factory=list)
    """HTTP statuses of websocket upgrades refused before the handshake."""


@dataclass
class _Request:
    req_id: str
    cutter: FrameCutter
    fault: MidStreamFault | None
    frames_sent: int = 0
    stopped: bool = False
    motion: MotionStream | None = None
    """The embedded generator's stream, when the server uses it."""
    pump_atask: asyncio.Task[None] | None = None


class _Connection:
    """One accepted websocket: reads client messages, writes animation in order."""

    def __init__(
        self,
        server: LocalSpatiusServer,
        ws: web.WebSocketResponse,
        request: web.Request,
        record: ConnectionRecord,
    ) -> None:
        self._server = server
        self._ws = ws
        self._request = request
        self._record = record
        self._requests: dict[str, _Request] = {}
        self._outbox: asyncio.Queue[tuple[_Request, bytes, bool]] = asyncio.Queue()
        self._writer_atask: asyncio.Task[None] | None = None

    async def run(self) -> None:
        if not await self._handshake():
            return
        self._writer_atask = asyncio.create_task(
            self._write_loop(), name=f"spatius-server-writer-{self._record.connection_id}"
        )
        try:
            while True:
                idle = self._server.idle_timeout_s
                try:
                    msg = await self._ws.receive(timeout=idle)
                except TimeoutError:
                    # The vendor's SDK reports this as idleTimeout ("no audio input for ...").
                    await self._send_error("", CLOSE_NORMAL, f"no audio input for {idle:g}s")
                    self._server.record.idle_closes += 1
                    await self.close(CLOSE_NORMAL, "idle timeout")
                    return
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                if msg.type == WSMsgType.ERROR:
                    break
                if msg.type != WSMsgType.BINARY:
                    await self._send_error("", 3, "expected binary protobuf message")
                    continue
                await self._handle(bytes(msg.data))
        finally:
            self._writer_atask.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_atask
            for req in self._requests.values():
                if req.pump_atask is not None:
                    req.pump_atask.cancel()
                if req.motion is not None:
                    await req.motion.aclose()

    async def _handshake(self) -> bool:
        try:
            first = await self._ws.receive(timeout=HANDSHAKE_TIMEOUT_S)
        except TimeoutError:
            await self.close(1008, "handshake timeout")
            return False
        if first.type != WSMsgType.BINARY:
            await self.close(1008, "expected binary protobuf message")
            return False
        envelope = pb.Message()
        envelope.ParseFromString(bytes(first.data))
        if envelope.type != pb.MESSAGE_CLIENT_CONFIGURE_SESSION:
            await self._send_error("", 3, "expected ClientConfigureSession message")
            await self.close(1008, "protocol error")
            return False
        config = envelope.client_configure_session
        self._record.sample_rate = config.sample_rate
        self._record.audio_format = config.audio_format
        faults = self._server.faults
        if faults.handshake_delay:
            await asyncio.sleep(faults.handshake_delay)
        if not self._server.credentials_valid(self._record):
            await self.close(CLOSE_AUTH_FAILED, "authentication failed")
            return False
        if faults.handshake_close_codes:
            code = faults.handshake_close_codes.popleft()
            await self.close(code, f"closed by test server ({code})")
            return False
        if faults.handshake_errors:
            code, text = faults.handshake_errors.popleft()
            await self._send_error("", code, text)
            await self.close(1011, "handshake rejected")
            return False
        if config.sample_rate not in SUPPORTED_SAMPLE_RATES:
            await self._send_error("", 3, f"unsupported sample rate {config.sample_rate}")
            await self.close(1008, "unsupported sample rate")
            return False
        if config.audio_format != pb.AUDIO_FORMAT_PCM_S16LE:
            await self._send_error("", 3, "this test server only takes pcm_s16le")
            await self.close(1008, "unsupported audio format")
            return False
        reply = pb.Message(type=pb.MESSAGE_SERVER_CONFIRM_SESSION)
        reply.server_confirm_session.connection_id = self._record.connection_id
        await self._ws.send_bytes(reply.SerializeToString())
        self._server.touch()
        return True

    async def _handle(self, data: bytes) -> None:
        envelope = pb.Message()
        try:
            envelope.ParseFromString(data)
        except Exception:  # the protobuf runtime raises DecodeError subclasses
            self._queue_error("", 3, "invalid protobuf payload")
            return
        record = self._server.record
        if envelope.type == pb.MESSAGE_CLIENT_AUDIO_INPUT:
            audio_in = envelope.client_audio_input
            req = self._requests.get(audio_in.req_id)
            if req is None:
                faults = self._server.faults.request_faults
                req = _Request(
                    req_id=audio_in.req_id,
                    cutter=FrameCutter(self._record.sample_rate),
                    fault=faults.popleft() if faults else None,
                )
                self._requests[req.req_id] = req
                record.audio[req.req_id] = bytearray()
                record.sent[req.req_id] = []
                embedded = self._server.embedded
                if embedded is not None:
                    req.motion = await embedded.open_stream(req.req_id, self._record.sample_rate)
                    req.pump_atask = asyncio.create_task(
                        self._pump(req), name=f"spatius-server-embedded-{req.req_id}"
                    )
            record.audio[req.req_id].extend(audio_in.audio)
            if req.motion is not None:
                req.motion.push_audio(audio_in.audio)
                if audio_in.end:
                    record.ended.append(req.req_id)
                    req.motion.flush()
                self._server.touch()
                return
            frames = req.cutter.push(audio_in.audio)
            if audio_in.end:
                record.ended.append(req.req_id)
                frames.extend(req.cutter.finish())
            for frame in frames:
                self._outbox.put_nowait((req, self._animation(req.req_id, frame, False), False))
            if audio_in.end:
                # As the service does: the end marker is a message of its own that carries no
                # animation (empty animation means "none", not a frame).
                self._outbox.put_nowait((req, self._animation(req.req_id, b"", True), True))
            if audio_in.end and self._server.faults.trailing_after_end:
                for last in (False, True):
                    extra = self._animation(req.req_id, frames[-1], last)
                    self._outbox.put_nowait((req, extra, last))
        elif envelope.type == pb.MESSAGE_CLIENT_INTERRUPT:
            req_id = envelope.client_interrupt.req_id
            record.interrupts.append(req_id)
            interrupted = self._requests.get(req_id)
            if interrupted is not None:
                interrupted.stopped = True
                if interrupted.motion is not None:
                    await interrupted.motion.interrupt()
        else:
            self._queue_error("", 3, f"unexpected message type {envelope.type}")
        self._server.touch()

    async def _pump(self, req: _Request) -> None:
        """Embedded frames to animation messages, then the end marker (no animation)."""
        assert req.motion is not None
        async for item in req.motion:
            if isinstance(item, MotionFrame):
                self._outbox.put_nowait(
                    (req, self._animation(req.req_id, item.payload, False), False)
                )
            else:
                self._outbox.put_nowait((req, self._animation(req.req_id, b"", True), True))

    def _animation(self, req_id: str, frame: bytes, last: bool) -> bytes:
        body = pb.ServerResponseAnimation(
            connection_id=self._record.connection_id, req_id=req_id, end=last
        ).SerializeToString()
        # Fields the spatius SDK does not declare (see animation.ANIMATION_FIELD); proto3
        # leaves empty bytes out, as the service's own encoder does.
        if frame:
            body += _varint(ANIMATION_FIELD << 3 | 2) + _varint(len(frame)) + frame
        avatar = self._record.avatar_id.encode()
        body += _varint(AVATAR_ID_FIELD << 3 | 2) + _varint(len(avatar)) + avatar
        envelope = pb.Message(type=pb.MESSAGE_SERVER_RESPONSE_ANIMATION)
        envelope.server_response_animation.MergeFromString(body)
        data: bytes = envelope.SerializeToString()
        return data

    async def _write_loop(self) -> None:
        while True:
            req, data, _last = await self._outbox.get()
            if req.stopped:
                continue
            delay = self._server.faults.frame_delay
            if delay:
                await asyncio.sleep(delay)
            if req.stopped:
                continue
            fault = req.fault
            if fault is not None and req.frames_sent >= fault.after_frames:
                req.fault = None
                await self._apply(fault, req)
                if fault.kind != "error":
                    return
                continue
            await self._ws.send_bytes(data)
            req.frames_sent += 1
            record = self._server.record
            if _last and not self._carries_animation(data):
                record.end_markers[req.req_id] = record.end_markers.get(req.req_id, 0) + 1
            else:
                record.sent[req.req_id].append(data)
            self._server.touch()

    @staticmethod
    def _carries_animation(data: bytes) -> bool:
        envelope = pb.Message()
        envelope.ParseFromString(data)
        return bool(frame_bytes(envelope.server_response_animation.SerializeToString()))

    async def _apply(self, fault: MidStreamFault, req: _Request) -> None:
        if fault.kind == "error":
            req.stopped = True
            await self._send_error(req.req_id, fault.code, fault.message or "injected error")
        elif fault.kind == "close":
            await self.close(fault.code, fault.message or f"closed by test server ({fault.code})")
        else:
            self.drop()

    def _queue_error(self, req_id: str, code: int, text: str) -> None:
        task = asyncio.create_task(
            self._send_error(req_id, code, text), name="spatius-server-error"
        )
        self._server.own(task)

    async def _send_error(self, req_id: str, code: int, text: str) -> None:
        envelope = pb.Message(type=pb.MESSAGE_SERVER_ERROR)
        envelope.server_error.connection_id = self._record.connection_id
        envelope.server_error.req_id = req_id
        envelope.server_error.code = code
        envelope.server_error.message = text
        await self._ws.send_bytes(envelope.SerializeToString())
        self._server.record.errors_sent.append((req_id, code, text))
        self._server.touch()

    async def close(self, code: int, reason: str) -> None:
        self._record.close_code = code
        self._server.touch()
        await self._ws.close(code=code, message=reason.encode())

    def drop(self) -> None:
        """Cut the TCP connection without a close frame."""
        self._record.close_code = 1006
        transport = self._request.transport
        if transport is not None:
            transport.abort()
        self._server.touch()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class LocalSpatiusServer:
    """The console and ingress endpoints of the Spatius service, on one loopback port."""

    def __init__(
        self,
        *,
        api_key: str = "local-api-key",
        app_id: str = "local-app",
        avatar_id: str = "local-avatar",
        host: str = "127.0.0.1",
        port: int = 0,
        generator: Literal["energy", "embedded"] = "energy",
        idle_timeout_s: float | None = 60.0,
    ) -> None:
        """``generator="embedded"`` animates with avatar_relay.motion.embedded (arkit-u8 frames)."""
        if host not in _LOOPBACK:
            raise ValueError(f"the local spatius server binds loopback only, not {host!r}")
        self.api_key = api_key
        self.app_id = app_id
        self.avatar_id = avatar_id
        self.idle_timeout_s = idle_timeout_s
        """The service closes a session that received no audio for this long (``idleTimeout``)."""
        self.faults = Faults()
        self.record = ServerRecord()
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._tokens: set[str] = set()
        self._token_ids = itertools.count(1)
        self._connection_ids = itertools.count(1)
        self._live: set[_Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()
        self.embedded: MotionSource | None = None
        if generator == "embedded":
            from avatar_relay.motion.embedded import EmbeddedMotionSource

            self.embedded = EmbeddedMotionSource(recognition=False)

    @property
    def port(self) -> int:
        return self._port

    @property
    def console_url(self) -> str:
        return f"http://{self._host}:{self._port}{CONSOLE_PATH}"

    @property
    def ingress_url(self) -> str:
        return f"ws://{self._host}:{self._port}{INGRESS_PATH}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(CONSOLE_PATH + "/session-tokens", self._session_token)
        app.router.add_get(INGRESS_PATH + "/websocket", self._websocket)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        if self._port == 0:
            self._port = int(self._runner.addresses[0][1])

    async def aclose(self) -> None:
        for conn in list(self._live):
            conn.drop()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.embedded is not None:
            await self.embedded.aclose()

    def own(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def touch(self) -> None:
        """Wake every :meth:`wait_for` so it re-checks its predicate."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever the record changes)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the local spatius server never reached the condition")
            event = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def close_all(self, code: int, reason: str = "") -> None:
        """Close every live websocket with ``code``."""
        for conn in list(self._live):
            await conn.close(code, reason or f"closed by test server ({code})")

    def drop_all(self) -> None:
        """Cut every live websocket without a close frame."""
        for conn in list(self._live):
            conn.drop()

    def credentials_valid(self, conn: ConnectionRecord) -> bool:
        return (
            conn.app_id == self.app_id
            and conn.session_key in self._tokens
            and conn.avatar_id == self.avatar_id
        )

    async def _session_token(self, request: web.Request) -> web.Response:
        key = request.headers.get("X-Api-Key", "")
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.record.token_requests.append({"api_key": key, "body": body})
        self.touch()
        if self.faults.reject_token or key != self.api_key:
            return _json_error(401, "Unauthorized", "invalid api key")
        if not isinstance(body, dict) or not isinstance(body.get("expireAt"), int):
            return _json_error(400, "Bad Request", "expireAt (unix seconds) is required")
        now = time.time()
        if not now < body["expireAt"] < now + MAX_TOKEN_LIFETIME_S:
            return _json_error(400, "Bad Request", "expireAt must be in (now, now + 24 h)")
        token = f"local-session-{next(self._token_ids)}"
        self._tokens.add(token)
        return web.json_response({"sessionToken": token})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        record = ConnectionRecord(
            avatar_id=request.query.get("id", ""),
            app_id=request.headers.get("X-App-ID", ""),
            session_key=request.headers.get("X-Session-Key", ""),
            connection_id=f"local-conn-{next(self._connection_ids)}",
        )
        self.record.connections.append(record)
        # Refused at the upgrade, before any handshake, as the service does.
        status = 0
        if not record.avatar_id or not record.app_id or not record.session_key:
            status = 400
        elif record.session_key not in self._tokens or record.app_id != self.app_id:
            status = 401
        elif record.avatar_id != self.avatar_id:
            status = 404
        if status:
            self.record.rejected_upgrades.append(status)
            self.touch()
            title = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}[status]
            return _json_error(status, title, "websocket upgrade refused")
        ws = web.WebSocketResponse(timeout=2.0, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = _Connection(self, ws, request, record)
        self._live.add(conn)
        try:
            await conn.run()
        except ConnectionResetError:
            logger.debug("client connection reset", extra={"connection": record.connection_id})
        finally:
            self._live.discard(conn)
            if record.close_code is None:
                record.close_code = ws.close_code
            self.touch()
        return ws


def _json_error(status: int, title: str, detail: str) -> web.Response:
    body = {"errors": [{"status": str(status), "title": title, "detail": detail}]}
    return web.json_response(body, status=status)
