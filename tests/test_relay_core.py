"""The relay core (conversation state machine, player, pacer) on virtual time, with fakes.

Each regression test names the review defect of issue 13 it pins down.
"""

from __future__ import annotations

import asyncio
from unittest import mock

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from relay_fakes import (
    FPS,
    RATE,
    SAMPLES_PER_FRAME,
    FakePublisher,
    FakeStream,
    Rig,
    Script,
    make_rig,
    tone,
)
from virtual_time import run_virtual

from avatar_relay.motion.base import MotionStreamEnd
from avatar_relay.protocol import (
    AnimationFrames,
    AudioData,
    AudioOnly,
    ConversationEnd,
    ConversationStart,
    Interrupt,
    encode_message,
)
from avatar_relay.protocol.constants import MAX_PACKET_BYTES
from avatar_relay.relay import (
    Animation,
    AnimationChanged,
    ConversationEvent,
    InvalidTransitionError,
    Phase,
    PhaseChanged,
)
from avatar_relay.relay import pacer as pacer_module
from avatar_relay.relay.control import SPEAK_AHEAD_S, SPEAK_PIECE_S, speak_pcm
from avatar_relay.relay.conversation import Conversation
from avatar_relay.relay.interfaces import EmissionAnchor
from avatar_relay.relay.metrics import RelayMetrics
from avatar_relay.relay.pacer import FramePacer
from avatar_relay.relay.tts import Pcm


async def speak(rig: Rig, pcm: np.ndarray) -> str:
    handle = await rig.player.open_conversation()
    async with handle:
        handle.push_pcm(pcm)
    return handle.id


def frames_of(rig: Rig, cid: str) -> list[tuple[float, int]]:
    """(send time, frame index) of every frame sent for a conversation."""
    out: list[tuple[float, int]] = []
    for s in rig.publisher.sent:
        if isinstance(s.msg, AnimationFrames) and s.msg.conversation_id == cid:
            out += [(s.at, s.msg.first_frame + i) for i in range(len(s.msg.frames))]
    return out


def of(rig: Rig, kind: type, cid: str) -> list:  # type: ignore[type-arg]
    """The conversation's distinct messages of ``kind``: repeats for late joiners (the same
    message, same seq) count once, as receivers count them."""
    seen: dict[int, object] = {}
    for m in rig.publisher.of(kind):
        if getattr(m, "conversation_id", None) == cid:
            seen.setdefault(m.seq, m)
    return list(seen.values())


async def finished(rig: Rig, cid: str) -> None:
    """Until the conversation is ended or interrupted (woken by its events, no polling)."""
    done = asyncio.Event()

    def on_event(ev: ConversationEvent) -> None:
        if isinstance(ev, PhaseChanged) and ev.conversation_id == cid and ev.new in FINAL:
            done.set()

    rig.player.on("conversation_event", on_event)
    try:
        if not (of(rig, ConversationEnd, cid) or of(rig, Interrupt, cid)):
            await done.wait()
        await asyncio.sleep(0.5)  # virtual: lets the pump settle after the last transition
    finally:
        rig.player.off("conversation_event", on_event)


FINAL = (Phase.ENDED, Phase.INTERRUPTED)


def test_a_conversation_goes_through_every_phase_once_with_exactly_timed_frames() -> None:
    async def main() -> None:
        rig = make_rig()
        events: list[ConversationEvent] = []
        rig.player.on("conversation_event", events.append)
        cid = await speak(rig, tone(1.0, 1000))
        await finished(rig, cid)
        phases = [(e.old, e.new) for e in events if isinstance(e, PhaseChanged)]
        assert phases == [
            (Phase.QUEUED, Phase.OPENING_MOTION),
            (Phase.OPENING_MOTION, Phase.PLAYING),
            (Phase.PLAYING, Phase.ENDING),
            (Phase.ENDING, Phase.ENDED),
        ]
        animation = [(e.old, e.new) for e in events if isinstance(e, AnimationChanged)]
        assert animation == [(Animation.PENDING, Animation.ANIMATED)]
        end = of(rig, ConversationEnd, cid)[0]
        assert end.audio_samples == RATE and end.frame_count == 25
        start_at = rig.sink.first_time_of(1000)
        for at, k in frames_of(rig, cid):
            assert at == pytest.approx(start_at + k * SAMPLES_PER_FRAME / RATE, abs=1e-6)
        assert [k for _, k in frames_of(rig, cid)] == list(range(25))
        await rig.player.aclose()

    run_virtual(main)


@pytest.mark.parametrize("per_message", [2, 5])
def test_frames_sent_n_per_message_lead_with_an_exactly_timed_frame(per_message: int) -> None:
    """Issue 11 and "cost per room": n frames per message cut the sends n-fold (5 at 25 fps:
    5 publish_data calls a second); the first of each message still leaves exactly with its
    audio (receivers time the conversation by it), the others at most n - 1 frames early,
    none are lost."""

    async def main() -> None:
        rig = make_rig(frames_per_message=per_message)
        cid = await speak(rig, tone(1.0, 1000))
        await finished(rig, cid)
        start_at = rig.sink.first_time_of(1000)
        messages = [
            s for s in rig.publisher.sent
            if isinstance(s.msg, AnimationFrames) and s.msg.conversation_id == cid
        ]  # fmt: skip
        assert len(messages) == -(-25 // per_message)
        for sent in messages:
            due = start_at + sent.msg.first_frame * SAMPLES_PER_FRAME / RATE
            assert sent.at == pytest.approx(due, abs=1e-6)
            assert len(sent.msg.frames) <= per_message
        assert [k for _, k in frames_of(rig, cid)] == list(range(25))
        await rig.player.aclose()

    run_virtual(main)


def test_first_audio_does_not_wait_behind_queued_idle_silence() -> None:
    """With 100 ms captures up to a chunk of idle silence is queued while nothing plays: a
    conversation's start drops it, so its first sample leaves at once (not up to 110 ms
    later), the track does not run dry, and the frames stay exactly timed."""

    async def main() -> None:
        rig = make_rig()
        assert rig.player.options.chunk_ms == 100
        # Idle silence is written at 0, 0.089, 0.189, ...: at 0.35 s 50 ms of it are queued.
        await asyncio.sleep(0.35)
        assert rig.sink.queued_seconds() > 0.03
        t0 = asyncio.get_running_loop().time()
        cid = await speak(rig, tone(1.0, 1000))
        await finished(rig, cid)
        start_at = rig.sink.first_time_of(1000)
        assert start_at == pytest.approx(t0, abs=1e-3)
        for at, k in frames_of(rig, cid):
            assert at == pytest.approx(start_at + k * SAMPLES_PER_FRAME / RATE, abs=1e-6)
        assert rig.sink.clears == 1
        for prev, nxt in zip(rig.sink.writes, rig.sink.writes[1:], strict=False):
            assert nxt.start == pytest.approx(prev.start + len(prev.pcm) / RATE, abs=1e-6)
        await rig.player.aclose()

    run_virtual(main)


@pytest.mark.parametrize("chunk_ms", [30, 40, 100])
def test_audio_as_data_goes_in_exactly_100_ms_messages_whatever_the_chunk(chunk_ms: int) -> None:
    """Audio transport data: one AudioData message per 100 ms, back to back from sample 0,
    the last one holding the rest, whether the capture chunks divide 100 ms or not."""

    async def main() -> None:
        rig = make_rig(transport="data", chunk_ms=chunk_ms)
        pcm = tone(1.03, 1000)
        cid = await speak(rig, pcm)
        await finished(rig, cid)
        audio = of(rig, AudioData, cid)
        size = RATE // 10
        assert [len(m.pcm) // 2 for m in audio] == [size] * 10 + [len(pcm) - 10 * size]
        assert [m.first_sample for m in audio] == [i * size for i in range(11)]
        assert b"".join(m.pcm for m in audio) == pcm.tobytes()
        await rig.player.aclose()

    run_virtual(main)


def test_transitions_outside_the_lifecycle_are_refused() -> None:
    async def main() -> None:
        conv = Conversation(sample_rate=RATE, clock=lambda: 0.0, on_event=lambda c, e: None)
        with pytest.raises(InvalidTransitionError):
            conv.start_playing()  # queued -> playing skips opening the motion
        conv.abort(0.0)
        assert conv.phase is Phase.INTERRUPTED
        with pytest.raises(InvalidTransitionError):
            conv.open_motion()
        assert (await conv.result).interrupted

    run_virtual(main)


class TestDefect1ConversationNeverEnded:
    """Defect 1: a conversation never ended played silence forever, and held up the queue."""

    def test_input_idle_timeout_ends_it_and_the_next_one_plays(self) -> None:
        async def main() -> None:
            rig = make_rig(input_idle_timeout_s=10.0)
            stuck = await rig.player.open_conversation()
            stuck.push_pcm(tone(0.3, 1000))  # ...and never end()
            nxt = await speak(rig, tone(0.3, 2000))
            t0 = asyncio.get_running_loop().time()
            await finished(rig, nxt)
            result = await stuck.wait_for_playout()
            assert not result.interrupted
            assert 0.3 <= result.played_seconds <= 10.5
            assert asyncio.get_running_loop().time() - t0 < 12
            assert of(rig, ConversationEnd, nxt)[0].audio_samples == round(0.3 * RATE)
            await rig.player.aclose()

        run_virtual(main)

    def test_a_producer_cancelled_inside_the_handle_interrupts_its_conversation(self) -> None:
        async def main() -> None:
            rig = make_rig()

            async def producer() -> None:
                async with await rig.player.open_conversation() as handle:
                    handle.push_pcm(tone(0.2, 1000))
                    await asyncio.sleep(3600)  # a cancelled RPC

            task = asyncio.create_task(producer())
            await asyncio.sleep(0.5)
            task.cancel()
            nxt = await speak(rig, tone(0.3, 2000))
            await finished(rig, nxt)
            assert of(rig, ConversationEnd, nxt)
            assert len(rig.publisher.of(Interrupt)) == 1
            await rig.player.aclose()

        run_virtual(main)


class TestDefect3PacerAndMotionFailures:
    def test_a_crashed_pacer_makes_the_conversation_audio_only(self) -> None:
        """Defect 3: a pacer raising (empty payload refused by the encoder) counted as done."""

        async def main() -> None:
            rig = make_rig(Script(payload=b""))
            cid = await speak(rig, tone(1.0, 1000))
            await finished(rig, cid)
            notices = of(rig, AudioOnly, cid)
            assert [n.reason for n in notices] == ["motion_failed"]
            assert of(rig, ConversationEnd, cid)[0].audio_samples == RATE
            await rig.player.aclose()

        run_virtual(main)

    def test_one_missing_frame_costs_only_that_frame(self) -> None:
        """Defect 3: one missing index made the rest of the conversation audio-only."""

        async def main() -> None:
            rig = make_rig(Script(skip={3}))
            cid = await speak(rig, tone(1.0, 1000))
            await finished(rig, cid)
            assert not of(rig, AudioOnly, cid)
            assert [k for _, k in frames_of(rig, cid)] == [k for k in range(25) if k != 3]
            await rig.player.aclose()

        run_virtual(main)

    def test_a_refused_connection_is_not_labelled_empty(self) -> None:
        """Defect 3: a stream ending audio-only with a reason was labelled motion_empty."""

        async def main() -> None:
            end = MotionStreamEnd(audio_only=True, reason="connection refused", failed=True)
            rig = make_rig(Script(stop_after=0, end=end))
            cid = await speak(rig, tone(0.5, 1000))
            await finished(rig, cid)
            assert [n.reason for n in of(rig, AudioOnly, cid)] == ["motion_unavailable"]
            await rig.player.aclose()

        run_virtual(main)


def test_frames_released_late_still_carry_when_their_audio_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11, re-anchoring: ``ts`` of a frames message is when its first frame's audio
    left. It was the release time, so frames released late (a late motion source, a busy
    loop after a stall) told receivers that the relay's timeline had moved, and receivers
    re-anchored too far (CI: the picture 157 ms ahead 1.1 s after a stall)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(pacer_module, "now_us", lambda: round(loop.time() * 1e6))
        rig = make_rig(Script(late=set(range(10, 15)), late_by_s=0.3))
        cid = await speak(rig, tone(1.0, 1000))
        await finished(rig, cid)
        timing = [
            (s.at, s.msg.first_frame, s.msg.sent_at_us)
            for s in rig.publisher.sent
            if isinstance(s.msg, AnimationFrames) and s.msg.conversation_id == cid
        ]
        start_at = rig.sink.first_time_of(1000)
        released_late = [k for at, k, _ in timing if at - (start_at + k / FPS) > 0.25]
        assert released_late, "the late frames were not released late"
        # Every message names the same timeline: ts - k / fps is sample 0's departure.
        origins = [ts / 1e6 - k / FPS for _, k, ts in timing]
        assert max(origins) - min(origins) < 0.002, list(zip(timing, origins, strict=True))
        await rig.player.aclose()

    run_virtual(main)


def test_defect2_a_stream_cut_off_without_audio_only_is_announced_audio_only() -> None:
    """Defect 2: a superseded Spatius request ends with audio_only=False; receivers froze."""

    async def main() -> None:
        end = MotionStreamEnd(reason="superseded by a newer conversation")
        rig = make_rig(Script(stop_after=5, end=end))
        cid = await speak(rig, tone(1.0, 1000))
        await finished(rig, cid)
        assert [n.reason for n in of(rig, AudioOnly, cid)] == ["motion_failed"]
        assert [k for _, k in frames_of(rig, cid)] == list(range(5))
        await rig.player.aclose()

    run_virtual(main)


def test_defect8_back_to_back_conversations_put_exactly_their_audio_on_the_track() -> None:
    """Defect 8: a conversation queued right behind another got an extra 10 ms chunk.

    Audio on the track must equal ``end.audio_samples``, contiguous, and each frame must
    leave exactly when its audio does, for the second conversation as for the first.
    """

    async def main() -> None:
        rig = make_rig()
        a = await speak(rig, tone(1.0, 1000))
        b = await speak(rig, tone(1.0, 2000))
        await finished(rig, b)
        emitted = rig.sink.emitted()
        for cid, value in ((a, 1000), (b, 2000)):
            end = of(rig, ConversationEnd, cid)[0]
            where = np.flatnonzero(emitted == value)
            assert len(where) == end.audio_samples
            assert where[-1] - where[0] + 1 == end.audio_samples, "audio not contiguous"
            start_at = rig.sink.first_time_of(value)
            for at, k in frames_of(rig, cid):
                assert at == pytest.approx(start_at + k * SAMPLES_PER_FRAME / RATE, abs=1e-6)
        # The track never ran dry between them: each write starts where the last one ended.
        for prev, nxt in zip(rig.sink.writes, rig.sink.writes[1:], strict=False):
            assert nxt.start == pytest.approx(prev.start + len(prev.pcm) / RATE, abs=1e-6)
        # Only the idle silence ahead of the first was dropped: right behind the first, the
        # sink is not cleared (the SDK may still hold the first's last 10 ms block).
        assert rig.sink.clears == 1
        # In order on the wire: the first conversation ends before the second starts.
        order = [(type(s.msg), s.msg.conversation_id) for s in rig.publisher.sent
                 if isinstance(s.msg, ConversationStart | ConversationEnd)]  # fmt: skip
        order = list(dict.fromkeys(order))  # a start repeated for late joiners counts once
        assert order == [
            (ConversationStart, a),
            (ConversationEnd, a),
            (ConversationStart, b),
            (ConversationEnd, b),
        ]
        await rig.player.aclose()

    run_virtual(main)


def test_defect9_due_frames_are_split_so_every_message_fits_one_packet() -> None:
    """Defect 9: the pacer sent every due frame in one message, with no size check."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        publisher = FakePublisher()
        conv = Conversation(sample_rate=RATE, clock=loop.time, on_event=lambda c, e: None)
        conv.attach_motion(FakeStream(Script()))
        conv.push(tone(0.4, 1000))
        conv.close_input()
        for k in range(10):
            conv.add_frame(k, bytes([k + 1]) * 6000)
        pacer = FramePacer(
            conv,
            stall_timeout_s=0.5,
            publisher=publisher,
            metrics=RelayMetrics("unit", CollectorRegistry()),
            clock=loop.time,
        )
        pacer.set_anchor(EmissionAnchor(loop.time() - 1.0, 0))  # every frame is overdue
        await pacer.run()
        messages = [m for m in publisher.of(AnimationFrames) if isinstance(m, AnimationFrames)]
        assert sum(len(m.frames) for m in messages) == 10
        assert len(messages) > 1
        assert all(len(encode_message(m)) <= MAX_PACKET_BYTES for m in messages)
        assert [m.seq for m in messages] == list(range(len(messages)))

    run_virtual(main)


def test_interrupt_stops_audio_and_frames_at_once_and_reports_what_was_heard() -> None:
    async def main() -> None:
        rig = make_rig()
        handle = await rig.player.open_conversation()
        handle.push_pcm(tone(2.0, 1000))
        handle.end()
        queued = await speak(rig, tone(1.0, 2000))
        await asyncio.sleep(0.7)
        cut_at = asyncio.get_running_loop().time()
        handle.interrupt()
        result = await handle.wait_for_playout()
        assert result.interrupted and 0.5 <= result.played_seconds <= 0.75
        # The queue (up to 200 ms with 100 ms chunks) was cleared, not drained.
        for w in rig.sink.writes:
            if len(w.pcm) and w.pcm[0] == 1000:
                assert w.start + len(w.pcm) / RATE <= cut_at + 1e-6
        heard = int(np.count_nonzero(rig.sink.emitted() == 1000))
        assert heard == round(result.played_seconds * RATE)
        assert of(rig, Interrupt, handle.id)
        await finished(rig, queued)  # the queued one still plays
        assert of(rig, ConversationEnd, queued)
        await rig.player.aclose()

    run_virtual(main)


def test_defect6_a_segment_refused_by_a_busy_relay_is_dropped_whole_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Defect 6: the drop-in retried (and logged) on every frame of a refused segment, then
    started it mid-sentence when a slot freed."""
    from livekit import rtc

    from avatar_relay.relay import AvatarAudioOutput

    def frame(value: int) -> rtc.AudioFrame:
        pcm = tone(0.01, value)
        return rtc.AudioFrame(pcm.tobytes(), RATE, 1, len(pcm))

    async def main() -> None:
        rig = make_rig(max_pending=1)
        first = await speak(rig, tone(0.5, 1000))  # plays
        await asyncio.sleep(0.05)
        assert rig.player.current_conversation_id == first
        second = await speak(rig, tone(0.5, 1000))  # fills the queue
        output = AvatarAudioOutput(rig.player)
        opened: list[str] = []
        rig.player.on("playback_started", opened.append)
        for _ in range(50):
            await output.capture_frame(frame(3000))
        for _ in range(150):  # a slot frees while the refused segment still streams
            await output.capture_frame(frame(3000))
            await asyncio.sleep(0.01)
        assert not rig.player.busy
        assert of(rig, ConversationEnd, second)
        for _ in range(10):
            await output.capture_frame(frame(3000))
        output.flush()
        await asyncio.sleep(1.0)
        assert 3000 not in rig.sink.emitted(), "the refused segment started mid-sentence"
        dropped = [r for r in caplog.records if r.getMessage() == "agent audio segment dropped"]
        assert len(dropped) == 1
        # The next segment plays normally.
        for _ in range(20):
            await output.capture_frame(frame(4000))
        output.flush()
        await asyncio.sleep(1.0)
        assert 4000 in rig.sink.emitted()
        await output.aclose()
        await rig.player.aclose()

    run_virtual(main)


class TestDefect7SpeakPcmNeverLeavesAConversationOpen:
    """Defect 7 (with 1): speak_pcm yields between pieces; cancelled there (the RPC's caller
    went away), it left its conversation open, and the queue behind it waited on silence."""

    def test_cancelled_while_feeding_it_interrupts_the_conversation(self) -> None:
        async def main() -> None:
            rig = make_rig(input_idle_timeout_s=10.0)
            events: list[ConversationEvent] = []
            rig.player.on("conversation_event", events.append)
            task = asyncio.create_task(
                speak_pcm(rig.player, Pcm(tone(5.0, 1000), RATE)), name="test.speak"
            )
            for _ in range(20):  # until it has opened the conversation and fed a piece
                await asyncio.sleep(0)
                if rig.player.conversations():
                    break
            [conv] = rig.player.conversations()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            t0 = asyncio.get_running_loop().time()
            nxt = await speak(rig, tone(0.3, 2000))
            await finished(rig, nxt)
            result = await asyncio.shield(conv.result)
            assert result.interrupted
            assert asyncio.get_running_loop().time() - t0 < 2  # not after the idle timeout
            assert of(rig, ConversationEnd, nxt)[0].audio_samples == round(0.3 * RATE)
            await rig.player.aclose()

        run_virtual(main)


def test_complete_audio_feeds_the_motion_source_at_playback_pace() -> None:
    """Issue 11, item 5: speak_pcm handed a whole WAV to the motion source within a few loop
    turns (144 ms of loop time for 120 s of audio), stalling every room of the process. Now
    no more than SPEAK_AHEAD_S (plus a piece) is ever pushed ahead of what has played."""

    async def main() -> None:
        rig = make_rig()
        loop = asyncio.get_running_loop()
        pushes: list[tuple[float, int]] = []  # (time, samples pushed so far)
        original = FakeStream.push_audio

        def recording(stream: FakeStream, pcm: bytes) -> None:
            original(stream, pcm)
            pushes.append((loop.time(), stream._samples))

        def played(at: float) -> int:
            return sum(
                min(len(w.pcm), max(0, round((at - w.start) * RATE))) for w in rig.sink.writes
            )

        with mock.patch.object(FakeStream, "push_audio", recording):
            handle = await speak_pcm(rig.player, Pcm(tone(30.0, 1000), RATE))
            result = await handle.wait_for_playout()
        assert not result.interrupted
        assert of(rig, ConversationEnd, handle.id)[0].audio_samples == 30 * RATE
        bound = (SPEAK_AHEAD_S + SPEAK_PIECE_S + 0.2) * RATE  # + the sink's queue and a chunk
        ahead = max(total - played(at) for at, total in pushes)
        assert ahead <= bound, f"{ahead / RATE:.1f} s pushed ahead of playback"
        assert pushes[-1][0] - pushes[0][0] > 25.0  # fed while it played, not all at once
        await rig.player.aclose()

    run_virtual(main)


def test_after_a_stall_no_frame_leaves_before_its_audio() -> None:
    """Issue 11, re-anchoring (CI failure of test_receiver_reanchors_after_the_relay_fell_behind):
    after the relay's process was not scheduled, the pacer released the frames due by then on
    the stale anchor, before their audio had even been written; those frames looked on time
    to receivers and broke their evidence that the relay had fallen behind. A frame now waits
    until its audio is written, and so leaves with it on the new timeline."""

    async def main() -> None:
        rig = make_rig(frames_per_message=5)
        loop = asyncio.get_running_loop()
        cid = await speak(rig, tone(3.0, 1000))
        await asyncio.sleep(1.0)
        loop.advance(0.3)  # type: ignore[attr-defined]  # nothing ran for 300 ms: a stall
        await finished(rig, cid)

        def leaves_at(position: int) -> float:
            """When conversation sample ``position`` left the sink (its writes, in order)."""
            first = rig.sink.first_time_of(1000)
            seen = 0
            for w in rig.sink.writes:
                if w.start < first:
                    continue
                if position < seen + len(w.pcm):
                    return w.start + (position - seen) / RATE
                seen += len(w.pcm)
            raise AssertionError(f"sample {position} never left")

        early = [
            (k, round(leaves_at(int(k * SAMPLES_PER_FRAME)) - at, 3))
            for at, k in frames_of(rig, cid)
            if k % 5 == 0 and at < leaves_at(int(k * SAMPLES_PER_FRAME)) - 0.001
        ]
        assert early == [], f"(frame, seconds before its audio left): {early}"
        await rig.player.aclose()

    run_virtual(main)
