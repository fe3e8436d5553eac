"""Unit tests of the Host Mode contract (HostModeController): pure, synchronous and fast."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from avatar_relay.client.host_mode import HostModeController, StateChangedEvent

SR = 16000
FPS = 25
SPF = SR // FPS  # samples per frame: 640
CHUNK = 160  # 10 ms


def tone(samples: int, value: int = 1000) -> bytes:
    return np.full(samples, value, dtype="<i2").tobytes()


def ramp(samples: int, start: int = 0) -> bytes:
    """Audio whose sample values equal their index (mod 2**15), so positions can be checked."""
    return (np.arange(start, start + samples) % 32768).astype("<i2").tobytes()


def frame(k: int) -> bytes:
    return f"f{k}".encode()


def make(**kwargs: object) -> tuple[HostModeController, list[StateChangedEvent]]:
    ids = (f"c{i}" for i in itertools.count())
    ctl = HostModeController(sample_rate=SR, fps=FPS, id_factory=lambda: next(ids), **kwargs)  # type: ignore[arg-type]
    events: list[StateChangedEvent] = []
    ctl.on("state_changed", events.append)
    return ctl, events


def states(events: list[StateChangedEvent]) -> list[tuple[str, str]]:
    return [(e.state, e.reason) for e in events]


class TestConversationIds:
    def test_first_audio_starts_a_conversation_and_later_audio_joins_it(self) -> None:
        ctl, _ = make()
        assert ctl.get_current_conversation_id() is None
        cid = ctl.yield_audio_data(tone(100))
        assert cid == "c0"
        assert ctl.yield_audio_data(tone(100)) == cid
        assert ctl.get_current_conversation_id() == cid

    def test_end_true_makes_the_next_audio_start_a_new_conversation(self) -> None:
        ctl, _ = make()
        a = ctl.yield_audio_data(tone(100), end=True)
        b = ctl.yield_audio_data(tone(100))
        assert a != b
        assert ctl.get_current_conversation_id() == b

    def test_interrupt_makes_the_next_audio_start_a_new_conversation(self) -> None:
        ctl, _ = make()
        a = ctl.yield_audio_data(tone(100))
        assert ctl.interrupt() == a
        assert ctl.get_current_conversation_id() is None
        assert ctl.yield_audio_data(tone(100)) != a

    def test_odd_byte_count_is_rejected_without_state_change(self) -> None:
        ctl, _ = make()
        with pytest.raises(ValueError):
            ctl.yield_audio_data(b"\x00\x01\x02")
        assert ctl.get_current_conversation_id() is None
        assert ctl.buffered_samples == 0

    def test_default_ids_are_unique(self) -> None:
        ctl = HostModeController(sample_rate=SR)
        a = ctl.yield_audio_data(b"", end=True)
        b = ctl.yield_audio_data(b"", end=True)
        assert a and b and a != b

    @pytest.mark.parametrize("rate", [0, 12345, 96000])
    def test_unsupported_sample_rate_is_rejected(self, rate: int) -> None:
        with pytest.raises(ValueError):
            HostModeController(sample_rate=rate)

    def test_ended_conversation_stays_current_until_played_out(self) -> None:
        ctl, _ = make()
        cid = ctl.yield_audio_data(tone(CHUNK), end=True)
        assert ctl.get_current_conversation_id() == cid
        ctl.playout(CHUNK)
        assert ctl.get_current_conversation_id() is None


class TestFrames:
    def test_mismatched_id_is_dropped_silently_and_counted(self) -> None:
        ctl, _ = make()
        ctl.yield_audio_data(tone(SPF * 2))
        ctl.yield_frames_data([frame(0), frame(1)], "other")
        assert ctl.stats.frames_dropped == 2
        assert ctl.stats.frames_received == 0
        assert ctl.playout(CHUNK).frame is None

    def test_frames_before_any_conversation_are_dropped(self) -> None:
        ctl, _ = make()
        ctl.yield_frames_data([frame(0)], "c0")
        assert ctl.stats.frames_dropped == 1

    def test_frames_of_previous_conversation_are_dropped_after_a_new_one_starts(self) -> None:
        ctl, _ = make()
        a = ctl.yield_audio_data(tone(SPF), end=True)
        ctl.yield_audio_data(tone(SPF))
        ctl.yield_frames_data([frame(0)], a)
        assert ctl.stats.frames_dropped == 1

    def test_frames_are_stored_in_append_order_without_first_frame(self) -> None:
        ctl, _ = make()
        cid = ctl.yield_audio_data(tone(SPF * 3))
        ctl.yield_frames_data([frame(0)], cid)
        ctl.yield_frames_data([frame(1), frame(2)], cid)
        got = [ctl.playout(SPF) for _ in range(3)]
        assert [c.frame for c in got] == [frame(0), frame(1), frame(2)]
        assert [c.frame_index for c in got] == [0, 1, 2]

    def test_frames_are_stored_by_index_when_first_frame_is_given(self) -> None:
        ctl, _ = make()
        cid = ctl.yield_audio_data(tone(SPF * 3))
        ctl.yield_frames_data([frame(2)], cid, first_frame=2)
        ctl.yield_frames_data([frame(0), frame(1)], cid, first_frame=0)
        assert [ctl.playout(SPF).frame for _ in range(3)] == [frame(0), frame(1), frame(2)]

    def test_duplicates_are_counted_and_the_first_copy_kept(self) -> None:
        ctl, _ = make()
        cid = ctl.yield_audio_data(tone(SPF))
        ctl.yield_frames_data([frame(0)], cid, first_frame=0)
        ctl.yield_frames_data([b"again"], cid, first_frame=0)
        assert ctl.stats.frames_duplicate == 1
        assert ctl.playout(CHUNK).frame == frame(0)

    @pytest.mark.parametrize("empty", [None, []])
    def test_empty_frames_switch_to_audio_only(self, empty: list[bytes] | None) -> None:
        ctl, events = make()
        cid = ctl.yield_audio_data(ramp(SPF * 2))
        ctl.yield_frames_data([frame(0)], cid)
        ctl.yield_frames_data(empty, cid)
        ctl.yield_frames_data([frame(1)], cid)
        assert ctl.stats.frames_ignored == 2  # the buffered one and the later one
        chunk = ctl.playout(SPF)
        assert chunk.audio_only
        assert chunk.frame is None
        assert chunk.audio == ramp(SPF)  # audio plays on
        assert ("idle", "fallbackMode") in states(events)
        assert ctl.stats.frames_late == 0

    def test_audio_only_is_per_conversation(self) -> None:
        ctl, _ = make()
        a = ctl.yield_audio_data(tone(SPF), end=True)
        ctl.yield_frames_data(None, a)
        b = ctl.yield_audio_data(tone(SPF))
        ctl.yield_frames_data([frame(0)], b)
        assert ctl.playout(SPF).audio_only
        chunk = ctl.playout(SPF)
        assert chunk.conversation_id == b
        assert not chunk.audio_only
        assert chunk.frame == frame(0)

    def test_negative_first_frame_is_rejected(self) -> None:
        ctl, _ = make()
        cid = ctl.yield_audio_data(tone(SPF))
        with pytest.raises(ValueError):
            ctl.yield_frames_data([frame(0)], cid, first_frame=-1)


class TestPlayout:
    @pytest.mark.parametrize("chunk", [160, 441, 640, 1000])
    def test_frame_is_the_one_at_the_chunks_first_sample(self, chunk: int) -> None:
        ctl, _ = make()
        total = SPF * 20
        cid = ctl.yield_audio_data(ramp(total))
        ctl.yield_frames_data([frame(k) for k in range(20)], cid)
        pos = 0
        while pos + chunk <= total:
            c = ctl.playout(chunk)
            expected = pos * FPS // SR
            assert c.position == pos
            assert c.target_frame == expected
            assert c.frame_index == expected
            assert c.frame == frame(expected)
            assert c.audio == ramp(chunk, pos)
            pos += chunk
        assert ctl.stats.frames_late == 0

    def test_missing_frame_holds_the_previous_and_counts_late_once(self) -> None:
        ctl, _ = make()
        cid = ctl.yield_audio_data(tone(SPF * 3))
        ctl.yield_frames_data([frame(0)], cid, first_frame=0)
        ctl.yield_frames_data([frame(2)], cid, first_frame=2)
        got = [ctl.playout(CHUNK) for _ in range(12)]
        assert [c.frame_index for c in got] == [0] * 4 + [0] * 4 + [2] * 4
        assert [c.target_frame for c in got] == [0] * 4 + [1] * 4 + [2] * 4
        assert ctl.stats.frames_late == 1

    def test_no_frame_yet_gives_none_and_counts_late(self) -> None:
        ctl, _ = make()
        ctl.yield_audio_data(tone(SPF))
        c = ctl.playout(CHUNK)
        assert c.frame is None and c.frame_index is None
        assert ctl.stats.frames_late == 1

    def test_late_frame_arriving_before_its_position_is_used(self) -> None:
        ctl, _ = make()
        cid = ctl.yield_audio_data(tone(SPF * 2))
        ctl.yield_frames_data([frame(0)], cid)
        for _ in range(4):
            ctl.playout(CHUNK)
        ctl.yield_frames_data([frame(1)], cid)
        assert ctl.playout(CHUNK).frame == frame(1)

    def test_frames_arriving_after_their_audio_played_are_expired(self) -> None:
        ctl, _ = make()
        cid = ctl.yield_audio_data(tone(SPF * 3))
        ctl.playout(SPF * 2)
        ctl.yield_frames_data([frame(0), frame(1), frame(2)], cid, first_frame=0)
        assert ctl.stats.frames_expired == 2
        assert ctl.playout(CHUNK).frame == frame(2)

    def test_starved_audio_is_zero_padded_and_reported_without_advancing(self) -> None:
        ctl, _ = make()
        cid = ctl.yield_audio_data(ramp(100))
        c = ctl.playout(CHUNK)
        assert c.conversation_id == cid
        assert c.audio == ramp(100) + bytes((CHUNK - 100) * 2)
        assert c.starved_samples == CHUNK - 100
        assert ctl.stats.starved_samples == CHUNK - 100
        ctl.yield_audio_data(ramp(CHUNK, 100))
        c = ctl.playout(CHUNK)
        assert c.position == 100  # media position skipped nothing
        assert c.audio == ramp(CHUNK, 100)

    def test_idle_playout_is_silence(self) -> None:
        ctl, _ = make()
        c = ctl.playout(CHUNK)
        assert c.audio == bytes(CHUNK * 2)
        assert c.conversation_id is None and c.frame is None and c.state == "idle"

    def test_num_samples_must_be_positive(self) -> None:
        ctl, _ = make()
        with pytest.raises(ValueError):
            ctl.playout(0)

    def test_next_conversation_plays_after_the_ended_one(self) -> None:
        ctl, _ = make()
        a = ctl.yield_audio_data(tone(CHUNK, 1), end=True)
        b = ctl.yield_audio_data(tone(CHUNK, 2))
        first, second = ctl.playout(CHUNK), ctl.playout(CHUNK)
        assert (first.conversation_id, first.audio) == (a, tone(CHUNK, 1))
        assert (second.conversation_id, second.audio) == (b, tone(CHUNK, 2))

    def test_end_pads_the_last_chunk_without_reporting_starvation(self) -> None:
        ctl, _ = make()
        ctl.yield_audio_data(tone(100), end=True)
        c = ctl.playout(CHUNK)
        assert c.starved_samples == 0
        assert ctl.stats.starved_samples == 0


class TestFirstSample:
    def test_joining_mid_conversation_maps_from_that_position(self) -> None:
        ctl, _ = make()
        start = SPF * 7 + 123
        cid = ctl.yield_audio_data(ramp(SPF * 2, start), first_sample=start)
        ctl.yield_frames_data([frame(7), frame(8), frame(9)], cid, first_frame=7)
        c = ctl.playout(CHUNK)
        assert c.position == start
        assert c.frame_index == 7
        pos = start + CHUNK
        while pos < SPF * 8:
            ctl.playout(CHUNK)
            pos += CHUNK
        assert ctl.playout(CHUNK).frame_index == 8

    def test_gap_is_filled_with_counted_silence(self) -> None:
        ctl, _ = make()
        ctl.yield_audio_data(tone(100), first_sample=0)
        ctl.yield_audio_data(tone(100), first_sample=150)
        assert ctl.stats.audio_gap_samples == 50
        assert ctl.playout(250).audio == tone(100) + bytes(100) + tone(100)

    def test_overlap_is_trimmed(self) -> None:
        ctl, _ = make()
        ctl.yield_audio_data(ramp(100), first_sample=0)
        ctl.yield_audio_data(ramp(100, 50), first_sample=50)
        assert ctl.stats.audio_overlap_samples == 50
        assert ctl.buffered_samples == 150
        assert ctl.playout(150).audio == ramp(150)


class TestStateEvents:
    def test_playing_ended_idle_once_after_all_audio_played(self) -> None:
        ctl, events = make()
        cid = ctl.yield_audio_data(tone(CHUNK * 2))
        ctl.yield_audio_data(b"", end=True)
        assert events == []
        ctl.playout(CHUNK)
        assert states(events) == [("playing", "playbackStart")]
        ctl.playout(CHUNK)
        assert states(events)[1:] == [("ended", "playbackEnd"), ("idle", "playbackEnd")]
        assert all(e.conversation_id == cid for e in events[:2])
        ctl.playout(CHUNK)
        ctl.playout(CHUNK)
        assert len(events) == 3  # ended fires exactly once

    def test_interrupt_stops_playback_and_clears_buffers(self) -> None:
        ctl, events = make()
        cid = ctl.yield_audio_data(tone(SPF * 4))
        ctl.yield_frames_data([frame(k) for k in range(4)], cid)
        ctl.playout(CHUNK)
        ctl.interrupt()
        assert ctl.buffered_samples == 0 and ctl.buffered_frames == 0
        assert states(events)[-2:] == [("interrupted", "userAction"), ("idle", "userAction")]
        c = ctl.playout(CHUNK)
        assert c.conversation_id is None and c.frame is None
        assert c.audio == bytes(CHUNK * 2)
        ctl.yield_frames_data([frame(5)], cid)  # late frames of the interrupted one
        assert ctl.stats.frames_dropped == 1

    def test_interrupt_when_idle_emits_nothing(self) -> None:
        ctl, events = make()
        assert ctl.interrupt() is None
        assert events == []

    def test_pause_keeps_buffers_and_resume_continues(self) -> None:
        ctl, events = make()
        cid = ctl.yield_audio_data(ramp(SPF * 2))
        ctl.yield_frames_data([frame(0), frame(1)], cid)
        ctl.playout(CHUNK)
        ctl.pause()
        paused = ctl.playout(CHUNK)
        assert paused.audio == bytes(CHUNK * 2)
        assert paused.state == "paused"
        assert paused.frame == frame(0)  # the presented frame is held
        assert ctl.buffered_samples == SPF * 2 - CHUNK
        ctl.resume()
        c = ctl.playout(CHUNK)
        assert c.position == CHUNK and c.audio == ramp(CHUNK, CHUNK)
        assert states(events) == [
            ("playing", "playbackStart"),
            ("paused", "userAction"),
            ("playing", "userAction"),
        ]

    def test_fallback_event_names_the_conversation(self) -> None:
        ctl, events = make()
        cid = ctl.yield_audio_data(tone(CHUNK))
        ctl.playout(CHUNK)
        ctl.yield_frames_data([], cid)
        assert events[-1].reason == "fallbackMode"
        assert events[-1].state == "playing"
        assert events[-1].conversation_id == cid


class TestBoundedMemory:
    def test_audio_beyond_the_cap_is_dropped_and_counted(self) -> None:
        ctl, _ = make(max_buffered_seconds=0.1)
        ctl.yield_audio_data(tone(SR))  # 1 s into a 0.1 s buffer
        assert ctl.buffered_samples == SR // 10
        assert ctl.stats.audio_overflow_samples == SR - SR // 10

    def test_frames_beyond_the_cap_are_dropped_and_counted(self) -> None:
        ctl, _ = make(max_buffered_frames=10)
        cid = ctl.yield_audio_data(tone(SPF))
        ctl.yield_frames_data([frame(k) for k in range(25)], cid)
        assert ctl.buffered_frames == 10
        assert ctl.stats.frames_overflow == 15

    def test_played_frames_are_released(self) -> None:
        ctl, _ = make(max_buffered_frames=8)
        cid = ctl.yield_audio_data(tone(SPF * 40))
        for k in range(40):
            ctl.yield_frames_data([frame(k)], cid, first_frame=k)
            c = ctl.playout(SPF)
            assert c.frame == frame(k)
        assert ctl.stats.frames_overflow == 0
        assert ctl.buffered_frames <= 1
