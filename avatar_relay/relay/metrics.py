"""Prometheus metrics of the relay, labelled by room.

Counters and histograms live in one registry-bound object so tests can create their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class _Family:
    conversations: Counter
    conversations_audio_only: Counter
    conversations_interrupted: Counter
    frames_sent: Counter
    frames_late: Counter
    audio_seconds: Counter
    packets_sent: Counter
    packets_failed: Counter
    packets_expired: Counter
    bytes_sent: Counter
    control_requests: Counter
    control_denied: Counter
    first_audio_latency: Histogram
    frame_release_lag: Histogram


_families: dict[int, _Family] = {}


def _family(registry: CollectorRegistry) -> _Family:
    """The metric families of a registry, created once (Prometheus names are unique)."""
    key = id(registry)
    if key in _families:
        return _families[key]

    def counter(name: str, doc: str, *extra_labels: str) -> Counter:
        return Counter(f"avatar_relay_{name}", doc, ["room", *extra_labels], registry=registry)

    def latency(name: str, doc: str) -> Histogram:
        return Histogram(
            f"avatar_relay_{name}_seconds",
            doc,
            ["room"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

    _families[key] = _Family(
        conversations=counter("conversations", "Conversations started"),
        conversations_audio_only=counter(
            "conversations_audio_only", "Conversations that fell back to audio-only", "reason"
        ),
        conversations_interrupted=counter("conversations_interrupted", "Conversations interrupted"),
        frames_sent=counter("frames_sent", "Animation frames sent"),
        frames_late=counter(
            "frames_late", "Frames released more than 20 ms after their audio left the relay"
        ),
        audio_seconds=counter("audio_seconds", "Audio published"),
        packets_sent=counter("packets_sent", "Data packets sent"),
        packets_failed=counter("packets_failed", "Data packets not sent"),
        packets_expired=counter(
            "packets_expired",
            "Animation packets dropped because their audio had played before they could leave",
        ),
        bytes_sent=counter("data_bytes_sent", "Data bytes sent"),
        control_requests=counter("control_requests", "Control requests received", "method"),
        control_denied=counter(
            "control_denied",
            "Control requests refused (unauthorized or malformed)",
            "method",
            "reason",
        ),  # fmt: skip
        first_audio_latency=latency(
            "first_audio_latency",
            "From a conversation's first input audio to its first sample leaving the relay",
        ),
        frame_release_lag=latency(
            "frame_release_lag", "How long after its due time a frame was released"
        ),
    )
    return _families[key]


class RelayMetrics:
    """The metrics of one room."""

    def __init__(self, room: str, registry: CollectorRegistry = REGISTRY) -> None:
        f = _family(registry)
        self._f = f
        self._room = room
        self.conversations = f.conversations.labels(room)
        self.conversations_interrupted = f.conversations_interrupted.labels(room)
        self.frames_sent = f.frames_sent.labels(room)
        self.frames_late = f.frames_late.labels(room)
        self.audio_seconds = f.audio_seconds.labels(room)
        self.packets_sent = f.packets_sent.labels(room)
        self.packets_failed = f.packets_failed.labels(room)
        self.packets_expired = f.packets_expired.labels(room)
        self.bytes_sent = f.bytes_sent.labels(room)
        self.first_audio_latency = f.first_audio_latency.labels(room)
        self.frame_release_lag = f.frame_release_lag.labels(room)

    def remove(self) -> None:
        """Forget this room's series (a worker serves many rooms over its life)."""
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ:
            return  # prometheus_client cannot remove series in multi-process mode
        for family in vars(self._f).values():
            family.remove_by_labels({"room": self._room})

    def audio_only(self, reason: str) -> None:
        self._f.conversations_audio_only.labels(self._room, reason).inc()

    def control_request(self, method: str) -> None:
        self._f.control_requests.labels(self._room, method).inc()

    def control_denied(self, method: str, reason: str) -> None:
        self._f.control_denied.labels(self._room, method, reason).inc()
