"""Packet size rules: batching, fragmentation, bounded reassembly and sequence tracking."""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]  # no type information shipped
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_strategies import messages

from avatar_relay.protocol import (
    MAX_FRAGMENTS,
    MAX_FRAMES_PER_MESSAGE,
    MAX_PACKET_BYTES,
    AnimationFrames,
    Fragment,
    Interrupt,
    Message,
    Packetizer,
    ProtocolError,
    Reassembler,
    SeqStatus,
    SequenceTracker,
    batch_frames,
    decode_any,
    decode_packet,
    encode_fragment,
    encode_message,
)

BOUNDED = settings(max_examples=150, deadline=2000)


def _big(size: int, seq: int = 0) -> AnimationFrames:
    return AnimationFrames("conv", seq, 0, (bytes(k % 253 for k in range(size)),))


def _fragments(packets: list[bytes]) -> list[Fragment]:
    items = [decode_any(p) for p in packets]
    assert all(isinstance(f, Fragment) for f in items)
    return items  # type: ignore[return-value]


# -- Packetizer -----------------------------------------------------------------------------------


def test_small_message_is_one_packet_equal_to_its_encoding() -> None:
    msg = Interrupt("conv", 3, 9)
    assert Packetizer().packetize(msg) == [encode_message(msg)]


def test_large_message_is_fragmented_within_the_budget() -> None:
    packetizer = Packetizer()
    msg = _big(100_000)
    packets = packetizer.packetize(msg)
    assert len(packets) == 7 and all(len(p) <= MAX_PACKET_BYTES for p in packets)
    frags = _fragments(packets)
    assert [f.index for f in frags] == list(range(7))
    assert {f.count for f in frags} == {7} and {f.message_id for f in frags} == {0}
    assert b"".join(f.data for f in frags) == encode_message(msg)
    assert packetizer.next_message_id == 1


def test_message_ids_are_unique_per_packetizer() -> None:
    packetizer = Packetizer(first_message_id=41)
    ids = [_fragments(packetizer.packetize(_big(20_000, seq)))[0].message_id for seq in range(5)]
    assert ids == [41, 42, 43, 44, 45]
    packetizer.packetize(Interrupt("conv", 0))  # unfragmented: no id used
    assert packetizer.next_message_id == 46


def test_message_over_the_reassembly_limit_is_refused() -> None:
    with pytest.raises(ProtocolError):
        Packetizer().packetize(_big(1024 * 1024))


def test_packetizer_rejects_impossible_budgets() -> None:
    with pytest.raises(ValueError):
        Packetizer(max_packet_bytes=10)
    with pytest.raises(ValueError):
        Packetizer(max_packet_bytes=MAX_PACKET_BYTES + 1)


@BOUNDED
@given(
    st.integers(min_value=1, max_value=60_000),
    st.integers(min_value=64, max_value=MAX_PACKET_BYTES),
    st.integers(min_value=0, max_value=2**53 - 1),
)
def test_fragmentation_round_trips(size: int, budget: int, first_id: int) -> None:
    msg = _big(size)
    packetizer = Packetizer(max_packet_bytes=budget, first_message_id=first_id)
    try:
        packets = packetizer.packetize(msg)
    except ProtocolError:
        # refused only when even the worst-case header (40 bytes) leaves too little room
        assert len(encode_message(msg)) > (budget - 40) * MAX_FRAGMENTS
        assert packetizer.next_message_id == first_id
        return
    assert all(len(p) <= budget for p in packets)
    receiver = Reassembler()
    results = [receiver.push(p) for p in packets]
    assert results[-1] == msg and results[:-1] == [None] * (len(packets) - 1)
    assert receiver.pending == 0 and receiver.buffered_bytes == 0


@BOUNDED
@given(st.lists(messages, min_size=1, max_size=6), st.integers(64, 2000))
def test_any_messages_survive_small_packets(msgs: list[Message], budget: int) -> None:
    packetizer = Packetizer(max_packet_bytes=budget)
    receiver = Reassembler()
    out = [receiver.push(p) for m in msgs for p in packetizer.packetize(m)]
    assert [m for m in out if m is not None] == msgs


# -- batch_frames ---------------------------------------------------------------------------------


@BOUNDED
@given(
    st.lists(st.binary(min_size=1, max_size=4000), min_size=1, max_size=200),
    st.integers(min_value=64, max_value=MAX_PACKET_BYTES),
    st.integers(min_value=0, max_value=10**6),
)
def test_batches_fit_and_are_as_full_as_possible(
    frames: list[bytes], budget: int, first_frame: int
) -> None:
    batches = batch_frames("c0ffee00-talk-01", 5, first_frame, frames, max_packet_bytes=budget)
    assert [b.seq for b in batches] == list(range(5, 5 + len(batches)))
    assert [f for b in batches for f in b.frames] == frames
    index = first_frame
    for i, batch in enumerate(batches):
        assert batch.first_frame == index
        index += len(batch.frames)
        size = len(encode_message(batch))
        assert size <= budget or len(batch.frames) == 1  # a lone frame may need fragments
        if i + 1 < len(batches) and len(batch.frames) < MAX_FRAMES_PER_MESSAGE:
            grown = AnimationFrames(
                batch.conversation_id,
                batch.seq,
                batch.first_frame,
                batch.frames + batches[i + 1].frames[:1],
            )
            assert len(encode_message(grown)) > budget  # the next frame would not have fit


def test_many_small_frames_share_few_packets() -> None:
    frames = [bytes(28)] * 1000
    batches = batch_frames("c0ffee00-talk-01", 0, 0, frames)
    assert len(batches) == 2
    assert all(len(encode_message(b)) <= MAX_PACKET_BYTES for b in batches)


def test_batches_respect_the_frame_count_limit() -> None:
    batches = batch_frames("c", 0, 0, [b"\x01"] * 3000)
    assert [len(b.frames) for b in batches] == [1024, 1024, 952]


# -- Reassembler ----------------------------------------------------------------------------------


def test_unfragmented_and_unknown_packets() -> None:
    receiver = Reassembler()
    msg = Interrupt("conv", 1)
    assert receiver.push(encode_message(msg)) == msg
    assert receiver.push(msgpack.packb({"v": 1, "t": "future"})) is None
    assert (receiver.stats.messages, receiver.stats.ignored) == (1, 1)


def test_interleaved_messages_reassemble() -> None:
    packetizer = Packetizer(max_packet_bytes=1000)
    a, b = _big(3000, 1), _big(2500, 2)
    pa, pb = packetizer.packetize(a), packetizer.packetize(b)
    receiver = Reassembler()
    out = []
    for i in range(max(len(pa), len(pb))):
        out += [receiver.push(p) for p in (pa[i : i + 1] + pb[i : i + 1])]
    done = [m for m in out if isinstance(m, AnimationFrames)]
    assert len(out) == len(pa) + len(pb) and sorted(done, key=lambda m: m.seq) == [a, b]
    assert receiver.pending == 0


def test_malformed_packet_leaves_partials_untouched() -> None:
    packets = Packetizer(max_packet_bytes=1000).packetize(_big(2500))
    receiver = Reassembler()
    receiver.push(packets[0])
    held = (receiver.pending, receiver.buffered_bytes)
    with pytest.raises(ProtocolError):
        receiver.push(b"\xc1")
    assert (receiver.pending, receiver.buffered_bytes) == held
    assert [receiver.push(p) for p in packets[1:]][-1] == _big(2500)
    assert receiver.stats.errors == 1


def test_inconsistent_fragments_are_rejected_and_dropped() -> None:
    receiver = Reassembler()
    receiver.push(encode_fragment(Fragment(5, 0, 3, b"ab")))
    with pytest.raises(ProtocolError, match="count"):
        receiver.push(encode_fragment(Fragment(5, 1, 4, b"cd")))
    assert receiver.pending == 0
    receiver.push(encode_fragment(Fragment(6, 0, 3, b"ab")))
    with pytest.raises(ProtocolError, match="index"):
        receiver.push(encode_fragment(Fragment(6, 2, 3, b"cd")))
    receiver.push(encode_fragment(Fragment(7, 0, 3, b"ab")))
    receiver.push(encode_fragment(Fragment(7, 1, 3, b"cd")))
    with pytest.raises(ProtocolError, match="index"):  # the same fragment twice
        receiver.push(encode_fragment(Fragment(7, 1, 3, b"cd")))
    assert receiver.pending == 0 and receiver.buffered_bytes == 0
    assert (receiver.stats.dropped_partials, receiver.stats.errors) == (3, 3)


def test_restarted_message_id_drops_the_old_partial() -> None:
    receiver = Reassembler()
    receiver.push(encode_fragment(Fragment(1, 0, 2, b"\x92")))
    inner = encode_message(Interrupt("c", 0))
    assert receiver.push(encode_fragment(Fragment(1, 0, 1, inner))) == Interrupt("c", 0)
    assert receiver.stats.dropped_partials == 1 and receiver.pending == 0


def test_orphan_fragments_are_counted() -> None:
    receiver = Reassembler()
    assert receiver.push(encode_fragment(Fragment(1, 1, 2, b"x"))) is None
    assert receiver.stats.orphan_fragments == 1 and receiver.pending == 0


def test_partial_count_is_bounded() -> None:
    receiver = Reassembler(max_partials=3)
    bodies = {mid: encode_message(Interrupt("c", mid)) for mid in range(10)}
    for mid, body in bodies.items():
        receiver.push(encode_fragment(Fragment(mid, 0, 2, body[:3])))
        assert receiver.pending <= 3
    assert receiver.stats.dropped_partials == 7
    # the three newest partials are kept, the older ones were evicted
    assert receiver.push(encode_fragment(Fragment(9, 1, 2, bodies[9][3:]))) == Interrupt("c", 9)
    assert receiver.push(encode_fragment(Fragment(0, 1, 2, bodies[0][3:]))) is None
    assert receiver.stats.orphan_fragments == 1


def test_stale_partials_expire() -> None:
    receiver = Reassembler(max_age_packets=5)
    receiver.push(encode_fragment(Fragment(1, 0, 2, b"x")))
    for _ in range(5):
        receiver.push(encode_message(Interrupt("c", 0)))
    assert receiver.pending == 1
    receiver.push(encode_message(Interrupt("c", 0)))
    assert receiver.pending == 0 and receiver.stats.dropped_partials == 1
    assert receiver.push(encode_fragment(Fragment(1, 1, 2, b"y"))) is None
    assert receiver.stats.orphan_fragments == 1


def test_message_size_is_bounded() -> None:
    receiver = Reassembler(max_message_bytes=5000, max_buffered_bytes=8000)
    packets = Packetizer(max_packet_bytes=1000).packetize(_big(6000))
    with pytest.raises(ProtocolError, match="exceeds"):
        for p in packets:
            receiver.push(p)
            assert receiver.buffered_bytes <= 5000
    assert receiver.pending == 0 and receiver.buffered_bytes == 0


def test_total_buffer_is_bounded_by_evicting_the_oldest() -> None:
    receiver = Reassembler(max_message_bytes=3000, max_buffered_bytes=4000, max_partials=10)
    for mid in range(4):
        receiver.push(encode_fragment(Fragment(mid, 0, 3, bytes(1500))))
        assert receiver.buffered_bytes <= 4000
    assert receiver.pending == 2 and receiver.stats.dropped_partials == 2


def test_reset_forgets_partials() -> None:
    receiver = Reassembler()
    receiver.push(encode_fragment(Fragment(1, 0, 2, b"x")))
    receiver.reset()
    assert receiver.pending == 0 and receiver.buffered_bytes == 0
    assert receiver.stats.dropped_partials == 1


def test_reassembled_garbage_is_a_protocol_error() -> None:
    receiver = Reassembler()
    with pytest.raises(ProtocolError):
        receiver.push(encode_fragment(Fragment(1, 0, 1, b"\x93\x01")))
    assert receiver.pending == 0


@BOUNDED
@given(st.lists(st.one_of(st.binary(max_size=50), st.builds(Fragment,
    st.integers(0, 5), st.integers(0, 3), st.integers(4, 4), st.binary(min_size=1, max_size=600))
    .map(encode_fragment)), max_size=60))  # fmt: skip
def test_reassembler_bounds_hold_under_any_packet_sequence(packets: list[bytes]) -> None:
    receiver = Reassembler(max_message_bytes=1500, max_buffered_bytes=2000, max_partials=2)
    for packet in packets:
        try:
            receiver.push(packet)
        except ProtocolError:
            pass
        assert receiver.pending <= 2 and 0 <= receiver.buffered_bytes <= 2000
    assert receiver.stats.packets == len(packets)


def test_decode_packet_rejects_what_packetizer_never_emits() -> None:
    with pytest.raises(ProtocolError):
        decode_packet(encode_message(_big(MAX_PACKET_BYTES)))


# -- SequenceTracker ------------------------------------------------------------------------------


def test_sequence_tracker_classifies_and_counts() -> None:
    tracker = SequenceTracker()
    got = [tracker.observe(s) for s in (0, 1, 1, 4, 2, 5, 5, 9)]
    assert got == [
        SeqStatus.IN_ORDER,
        SeqStatus.IN_ORDER,
        SeqStatus.DUPLICATE,
        SeqStatus.GAP,
        SeqStatus.DUPLICATE,
        SeqStatus.IN_ORDER,
        SeqStatus.DUPLICATE,
        SeqStatus.GAP,
    ]
    assert (tracker.received, tracker.duplicates, tracker.gaps, tracker.missing) == (5, 3, 2, 5)
    assert tracker.last == 9


def test_late_joiner_sees_a_gap_unless_told_otherwise() -> None:
    assert SequenceTracker().observe(7) is SeqStatus.GAP
    assert SequenceTracker(first_expected=7).observe(7) is SeqStatus.IN_ORDER
    with pytest.raises(ValueError):
        SequenceTracker(first_expected=-1)
