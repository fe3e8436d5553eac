"""Audio captures and data packets handed to the rtc SDK without a round trip on the loop.

``rtc.AudioSource.capture_frame`` and ``rtc.LocalParticipant.publish_data`` (livekit 1.1.21)
each subscribe a fresh queue to the process-wide event fan-out, send the request, wake the
event loop for the reply event and unsubscribe; while a call is open, every event of every
room in the process is queued to it too. In a room host that is ~15 calls a second per room,
and it was most of the Python loop's cost per speaking room (docs/BENCHMARKS.md).

Both requests copy their data before they return (livekit-ffi ``audio_source.rs`` and
``room.rs``), and a room's data packets are sent in order by one task of the native runtime,
so the reply only says when a call finished and whether it failed. :class:`CallTracker`
reads the replies of its own calls on the SDK's callback thread (a subscription filter that
never delivers anything), and wakes an event loop only for a caller that waits on one.

:func:`call_tracker` returns None when the SDK's internals are not the ones checked; callers
then use the SDK's own methods.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from collections.abc import Sequence
from typing import Any

from livekit import rtc

logger = logging.getLogger("avatar_relay.relay")

EARLY_REPLIES_KEPT = 1024
"""Replies remembered whose call was not registered yet (a reply can beat its request's
return). Replies to calls of other code in the process pass through here too, so the
memory is bounded: the oldest are forgotten first."""


class RtcCall:
    """One request sent to the rtc SDK; done when its reply event arrived."""

    __slots__ = ("async_id", "done", "error", "_waiters", "_tracker")

    def __init__(self, async_id: int, tracker: CallTracker) -> None:
        self.async_id = async_id
        self.done = False
        self.error: str | None = None
        """The SDK's error for this call, if it failed."""
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._tracker = tracker

    async def wait(self) -> str | None:
        """Wait for the reply; returns the call's error (None: it succeeded)."""
        loop = asyncio.get_running_loop()
        with self._tracker._lock:
            if self.done:
                return self.error
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        await future
        return self.error


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class CallTracker:
    """Matches the SDK's reply events to the calls made through it (one per process)."""

    _KINDS = ("capture_audio_frame", "publish_data")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, RtcCall] = {}
        self._early: dict[int, str | None] = {}
        self.calls_failed = 0

    # -- the SDK's callback thread --------------------------------------------------------------
    def _on_event(self, event: Any) -> bool:
        """Subscription filter: records our replies, never delivers (so never wakes a loop)."""
        try:
            kind = event.WhichOneof("message")
            if kind not in self._KINDS:
                return False
            reply = getattr(event, kind)
            error = reply.error if reply.HasField("error") and reply.error else None
            self._finish(int(reply.async_id), error)
        except Exception:  # a filter that raises makes the SDK deliver the event
            logger.exception("rtc reply not read")
        return False

    def _finish(self, async_id: int, error: str | None) -> None:
        if error is not None:
            self.calls_failed += 1
        with self._lock:
            call = self._pending.pop(async_id, None)
            if call is None:
                self._early[async_id] = error
                if len(self._early) > EARLY_REPLIES_KEPT:
                    del self._early[next(iter(self._early))]
                return
            call.done = True
            call.error = error
            waiters, call._waiters = call._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    # -- the event loop -------------------------------------------------------------------------
    def _register(self, async_id: int) -> RtcCall:
        call = RtcCall(async_id, self)
        with self._lock:
            if async_id in self._early:
                call.done = True
                call.error = self._early.pop(async_id)
            else:
                self._pending[async_id] = call
        return call

    @property
    def pending(self) -> int:
        """Calls sent whose reply has not arrived."""
        with self._lock:
            return len(self._pending)

    def capture(self, source: rtc.AudioSource, frame: rtc.AudioFrame) -> RtcCall:
        """Queue ``frame`` on ``source`` (the samples are copied before this returns)."""
        from livekit.rtc._ffi_client import FfiClient
        from livekit.rtc._proto import ffi_pb2

        req = ffi_pb2.FfiRequest()
        req.capture_audio_frame.source_handle = source._ffi_handle.handle
        req.capture_audio_frame.buffer.CopyFrom(frame._proto_info())
        resp = FfiClient.instance.request(req)
        return self._register(int(resp.capture_audio_frame.async_id))

    def publish(
        self,
        participant: rtc.LocalParticipant,
        payload: bytes,
        *,
        topic: str,
        destinations: Sequence[str] = (),
        reliable: bool = True,
    ) -> RtcCall:
        """Send ``payload`` on the room's data channel (copied before this returns)."""
        from livekit.rtc._ffi_client import FfiClient
        from livekit.rtc._proto import ffi_pb2

        req = ffi_pb2.FfiRequest()
        req.publish_data.local_participant_handle = participant._ffi_handle.handle
        # The bytes object's own buffer: the SDK copies it during the request.
        address = ctypes.cast(ctypes.c_char_p(payload), ctypes.c_void_p).value
        req.publish_data.data_ptr = address or 0
        req.publish_data.data_len = len(payload)
        req.publish_data.reliable = reliable
        req.publish_data.topic = topic
        req.publish_data.destination_identities.extend(destinations)
        resp = FfiClient.instance.request(req)
        return self._register(int(resp.publish_data.async_id))


_tracker: CallTracker | None = None
_install_lock = threading.Lock()
_unavailable = False


def call_tracker() -> CallTracker | None:
    """The process's tracker, installed on first use from async code; None if this SDK's
    internals are not the ones checked (or no event loop runs yet)."""
    global _tracker, _unavailable
    if _tracker is not None or _unavailable:
        return _tracker
    with _install_lock:
        if _tracker is not None or _unavailable:
            return _tracker
        try:
            from livekit.rtc._ffi_client import FfiClient
            from livekit.rtc._proto import ffi_pb2

            fields = ffi_pb2.FfiEvent.DESCRIPTOR.fields_by_name
            for kind in CallTracker._KINDS:
                reply = fields[kind].message_type
                if reply is None or not {"async_id", "error"} <= set(reply.fields_by_name):
                    raise AttributeError(f"{kind} reply has no async_id/error")
            if not hasattr(rtc.AudioFrame, "_proto_info"):
                raise AttributeError("AudioFrame._proto_info")
            loop = asyncio.get_running_loop()  # never used: the filter delivers nothing
            tracker = CallTracker()
            FfiClient.instance.queue.subscribe(loop, filter_fn=tracker._on_event)
        except RuntimeError:
            return None  # no running loop yet: the next call from async code installs it
        except (AttributeError, ImportError, KeyError, TypeError) as exc:
            _unavailable = True
            logger.warning("rtc calls go through the SDK's own methods: %r", exc)
            return None
        _tracker = tracker
        return tracker
