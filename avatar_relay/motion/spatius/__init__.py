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

The package: :mod:`.config` (credentials and endpoints), :mod:`.failures` (the retry policy),
:mod:`.wire` (reading the SDK's envelopes), :mod:`.source` (the session worker and streams).
"""

from .config import CODEC, SpatiusConfig
from .failures import classify_failure
from .source import SpatiusCounters, SpatiusMotionSource

__all__ = [
    "CODEC",
    "SpatiusConfig",
    "SpatiusCounters",
    "SpatiusMotionSource",
    "classify_failure",
]
