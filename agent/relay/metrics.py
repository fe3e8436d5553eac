"""Prometheus metrics of the relay, labelled by room.

Counters and histograms live in one registry-bound object so tests can create their own.
"""

from __future__ import annotations

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
    key = id(registry)
    if key not in _families:
        labels = ["room"]
        _families[key] = _Family(
            conversations=Counter(
                "avatar_relay_conversations", "Conversations started", labels, registry=registry
            ),
            conversations_audio_only=Counter(
                "avatar_relay_conversations_audio_only",
                "Conversations that fell back to audio-only",
                [*labels, "reason"],
                registry=registry,
            ),
            conversations_interrupted=Counter(
                "avatar_relay_conversations_interrupted",
                "Conversations interrupted",
                labels,
                registry=registry,
            ),
            frames_sent=Counter(
                "avatar_relay_frames_sent", "Animation frames sent", labels, registry=registry
            ),
            frames_late=Counter(
                "avatar_relay_frames_late",
                "Frames released after their audio had left the relay",
                labels,
                registry=registry,
            ),
            audio_seconds=Counter(
                "avatar_relay_audio_seconds", "Audio published", labels, registry=registry
            ),
            packets_sent=Counter(
                "avatar_relay_packets_sent", "Data packets sent", labels, registry=registry
            ),
            packets_failed=Counter(
                "avatar_relay_packets_failed", "Data packets not sent", labels, registry=registry
            ),
            packets_expired=Counter(
                "avatar_relay_packets_expired",
                "Animation packets dropped because their audio had played before they could leave",
                labels,
                registry=registry,
            ),
            bytes_sent=Counter(
                "avatar_relay_data_bytes_sent", "Data bytes sent", labels, registry=registry
            ),
            control_requests=Counter(
                "avatar_relay_control_requests",
                "Control requests received",
                [*labels, "method"],
                registry=registry,
            ),
            control_denied=Counter(
                "avatar_relay_control_denied",
                "Control requests refused (unauthorized or malformed)",
                [*labels, "method", "reason"],
                registry=registry,
            ),
            first_audio_latency=Histogram(
                "avatar_relay_first_audio_latency_seconds",
                "From a conversation's first input audio to its first sample leaving the relay",
                labels,
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            frame_release_lag=Histogram(
                "avatar_relay_frame_release_lag_seconds",
                "How long after its due time a frame was released",
                labels,
                buckets=_LATENCY_BUCKETS,
                registry=registry,
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

    def audio_only(self, reason: str) -> None:
        self._f.conversations_audio_only.labels(self._room, reason).inc()

    def control_request(self, method: str) -> None:
        self._f.control_requests.labels(self._room, method).inc()

    def control_denied(self, method: str, reason: str) -> None:
        self._f.control_denied.labels(self._room, method, reason).inc()
