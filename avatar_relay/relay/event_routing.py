"""Deliver each rtc SDK event to the one room it concerns, not to every room in the process.

The livekit rtc SDK (checked in ``livekit/rtc/_ffi_client.py`` and ``room.py``, 1.1.21) hands
every native event to every subscriber: each connected :class:`rtc.Room` receives the audio
capture and data publish callbacks and the room events of every other room, and its listen
task processes each one before the next. A process hosting N rooms thus does N x N work per
second for what is N work; at 10 speaking rooms that was most of the process's CPU, in the
SDK's callback threads and in the event loop (docs/BENCHMARKS.md, "Cost per room").

:func:`route_room_events` narrows a connected room's subscription to its own events: its room
events, RPC invocations for its local participant, and the track publish callbacks it awaits
through its own queue. The per-call callbacks (captures, data publishes, stream writes ...)
are awaited on queues of their own and are left out. Kinds this module does not know pass, so
an SDK that adds events keeps working; an SDK whose internals moved is detected (the function
returns False and logs once) and the room keeps the SDK's own behaviour.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from livekit import rtc

logger = logging.getLogger("avatar_relay.relay")

CALL_CALLBACKS = frozenset(
    {
        "capture_audio_frame",
        "publish_data",
        "publish_transcription",
        "publish_sip_dtmf",
        "set_local_metadata",
        "set_local_name",
        "set_local_attributes",
        "get_stats",
        "get_session_stats",
        "chat_message",
        "perform_rpc",
        "send_stream_header",
        "send_stream_chunk",
        "send_stream_trailer",
        "send_text",
        "send_bytes",
        "send_file",
        "byte_stream_open",
        "byte_stream_writer_write",
        "byte_stream_writer_close",
        "byte_stream_reader_read_all",
        "byte_stream_reader_write_to_file",
        "text_stream_open",
        "text_stream_writer_write",
        "text_stream_writer_close",
        "text_stream_reader_read_all",
        "audio_stream_event",
        "video_stream_event",
        "data_track_stream_event",
    }
)
"""Event kinds a room's own queue never reads: replies awaited on per-call queues, and media
streams (which subscribe separately)."""

_warned = False


def room_event_filter(room_handle: int, participant_handle: int) -> Callable[[Any], bool]:
    """The subscription filter for one room (runs in the SDK's callback thread, per event)."""

    def keep(event: Any) -> bool:
        kind = event.WhichOneof("message")
        if kind == "room_event":
            return bool(event.room_event.room_handle == room_handle)
        if kind == "rpc_method_invocation":
            return bool(event.rpc_method_invocation.local_participant_handle == participant_handle)
        return kind not in CALL_CALLBACKS

    return keep


def route_room_events(room: rtc.Room) -> bool:
    """Narrow ``room``'s SDK subscription to its own events; True if it was narrowed.

    Call it once the room is connected (``ctx.connect()`` returned). Safe to call on a room
    of any SDK version: when the SDK's internals are not the ones checked, it does nothing.
    """
    global _warned
    try:
        from livekit.rtc._ffi_client import FfiClient

        own_queue: Any = getattr(room, "_ffi_queue")  # noqa: B009 (private: guarded below)
        room_handle = int(getattr(room, "_ffi_handle").handle)  # noqa: B009
        participant_handle = int(room.local_participant._ffi_handle.handle)
        narrowed = room_event_filter(room_handle, participant_handle)
        fan_out = FfiClient.instance.queue
        with fan_out._lock:
            subscribers = fan_out._subscribers
            for i, (queue, loop, _old) in enumerate(subscribers):
                if queue is own_queue:
                    subscribers[i] = (queue, loop, narrowed)
                    return True
    except (AttributeError, ImportError, TypeError, ValueError) as exc:
        if not _warned:
            _warned = True
            logger.warning("rtc events not routed per room (SDK internals changed): %r", exc)
        return False
    return False
