"""Issue 14, finding 2: packets the decoder accepts must not crash the receiver's state machine
or make it allocate without bound. Pure logic (PlayoutSync + HostModeController), no room.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

from livekit import rtc

from avatar_relay.client.host_mode import HostModeController
from avatar_relay.client.sync import PlayoutSync
from avatar_relay.protocol import (
    MAX_INT,
    AnimationFrames,
    AudioData,
    AudioOnly,
    ConversationStart,
)

SR = 48000
CHUNK = SR // 100


def _start(cid: str, *, fps: float = 25.0, transport: str = "track") -> ConversationStart:
    return ConversationStart(
        conversation_id=cid,
        seq=0,
        codec="arkit-u8",
        fps=fps,
        channels=("jawOpen",),
        sample_rate=SR,
        audio_track="avatar-audio" if transport != "data" else "",
        audio_transport=transport,  # type: ignore[arg-type]
    )


def _chunk() -> rtc.AudioFrame:
    return rtc.AudioFrame(bytes(CHUNK * 2), SR, 1, CHUNK)


def _clock(start: float = 100.0) -> Iterator[float]:
    t = start
    while True:
        yield t
        t += 0.01


def _peak_mib(fn: object) -> float:
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_far_frame_index_costs_no_zero_bytes() -> None:
    """One frames message with f = 48000 cost 354 MiB of silence; f near 2^53 more."""
    for first in (48000, MAX_INT - 1):
        sync = PlayoutSync(sample_rate=SR)
        clock = _clock()
        sync.on_message(_start("c1"), next(clock))

        def run(
            sync: PlayoutSync = sync, first: int = first, clock: Iterator[float] = clock
        ) -> None:
            sync.on_message(AnimationFrames("c1", 1, 0, (b"\x01",)), next(clock))
            for _ in range(20):  # mapped and playing
                sync.on_audio(_chunk(), next(clock))
            sync.on_message(AnimationFrames("c1", 2, first, (b"\x02",)), next(clock) - 5.0)
            for _ in range(5):
                sync.on_audio(_chunk(), next(clock))

        assert _peak_mib(run) < 16
        assert sync.stats.resyncs >= 1


def test_data_audio_index_gap_is_bounded() -> None:
    """Audio as data: an `i` jump became real zero bytes (2^40 samples: a MemoryError)."""
    sync = PlayoutSync(sample_rate=SR)
    clock = _clock()
    sync.on_message(_start("c1", transport="data"), next(clock))
    pcm = bytes(960)

    def run() -> None:
        sync.on_message(AudioData("c1", 1, 0, pcm), next(clock))
        sync.on_message(AudioData("c1", 2, 2**40, pcm), next(clock))
        sync.on_message(AudioData("c1", 3, MAX_INT - 480, pcm), next(clock))
        for _ in range(3):
            sync.on_audio(_chunk(), next(clock))

    assert _peak_mib(run) < 16
    assert sync.stats.audio_gap_capped > 0


def test_controller_first_sample_gap_is_bounded() -> None:
    ctrl = HostModeController(sample_rate=SR, max_buffered_seconds=1.0)
    ctrl.yield_audio_data(bytes(960))

    def run() -> None:
        ctrl.yield_audio_data(bytes(960), first_sample=2**45)

    assert _peak_mib(run) < 4
    assert ctrl.buffered_samples <= SR
    assert ctrl.stats.audio_overflow_samples > 0


def test_unstarted_conversations_cannot_break_eviction() -> None:
    """17 not-yet-playing conversations made eviction raise StopIteration; then 2000 were kept."""
    sync = PlayoutSync(sample_rate=SR, max_conversations=16)
    clock = _clock()
    for i in range(2000):
        sync.on_message(_start(f"c{i}"), next(clock))
    assert len(sync._convs) == 16
    assert sync.stats.conversations == 2000
    sync.on_audio(_chunk(), next(clock))  # still usable


def test_messages_before_start_are_dropped_without_state() -> None:
    """Spec order of checks: no accepted start, no state and no sequence tracking."""
    sync = PlayoutSync(sample_rate=SR)
    clock = _clock()
    for i in range(5000):
        sync.on_message(AnimationFrames(f"x{i}", 77, 0, (b"\x01",)), next(clock))
    assert len(sync._convs) == 0
    assert sync.stats.without_start == 5000
    # A late joiner: frames s=77 first, then the repeated start s=0 and audio_only s=5.
    sync.on_message(AnimationFrames("c1", 77, 10, (b"\x01",)), next(clock))
    assert sync.on_message(_start("c1"), next(clock)) is not None
    event = sync.on_message(AudioOnly("c1", 5, "motion_failed"), next(clock))
    assert event is not None and event.kind == "audio_only"
    assert sync.on_message(_start("c1"), next(clock)) is None  # repeated start: dropped
    assert sync.stats.duplicates == 1


def test_lowest_fps_and_highest_index_play_without_overflow() -> None:
    sync = PlayoutSync(sample_rate=SR)
    clock = _clock()
    sync.on_message(_start("c1", fps=1.0), next(clock))
    sync.on_message(AnimationFrames("c1", 1, MAX_INT, (b"\x01",)), next(clock))
    for _ in range(3):
        sync.on_audio(_chunk(), next(clock))
