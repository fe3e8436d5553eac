"""Receiving side of the packet rules: decode packets and put fragmented messages back together.

The reassembler is pure and synchronous: one instance per sending participant, fed that
sender's packets in arrival order. Its memory is bounded (bytes per message, bytes in total,
number of partial messages, and age in packets) and every discarded partial is counted.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from .codec import Fragment, decode_any, decode_message
from .constants import MAX_MESSAGE_BYTES
from .errors import ProtocolError
from .messages import Message


@dataclass(slots=True)
class ReassemblyStats:
    """Counters of what a :class:`Reassembler` did with the packets it was given."""

    packets: int = 0
    """Every packet pushed."""
    messages: int = 0
    """Complete messages returned (unfragmented or reassembled)."""
    fragments: int = 0
    """Well-formed fragment packets accepted."""
    ignored: int = 0
    """Well-formed messages of an unknown type (forward compatibility)."""
    errors: int = 0
    """Packets (or reassembled messages) rejected with :class:`ProtocolError`."""
    orphan_fragments: int = 0
    """Fragments whose message had no first fragment here (joined late, or dropped)."""
    dropped_partials: int = 0
    """Partial messages discarded: stale, evicted, restarted, inconsistent or oversized."""


@dataclass(slots=True)
class _Partial:
    count: int
    next_index: int
    last_packet: int
    size: int = 0
    chunks: list[bytes] = field(default_factory=list)


class Reassembler:
    """Turns one sender's packets, in order, into complete messages.

    :meth:`push` returns a message, or None when the packet was a fragment of a message still
    incomplete, an orphan fragment, or a message of an unknown type. A malformed packet raises
    :class:`ProtocolError` and changes no state; an inconsistent or oversized fragment also
    raises, after discarding the partial message it belonged to.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_buffered_bytes: int = 2 * MAX_MESSAGE_BYTES,
        max_partials: int = 4,
        max_age_packets: int = 64,
    ) -> None:
        if not 1 <= max_message_bytes <= MAX_MESSAGE_BYTES:
            raise ValueError(f"max_message_bytes must be in [1, {MAX_MESSAGE_BYTES}]")
        if max_buffered_bytes < max_message_bytes:
            raise ValueError("max_buffered_bytes must hold at least one whole message")
        if max_partials < 1 or max_age_packets < 1:
            raise ValueError("max_partials and max_age_packets must be positive")
        self._max_message_bytes = max_message_bytes
        self._max_buffered_bytes = max_buffered_bytes
        self._max_partials = max_partials
        self._max_age_packets = max_age_packets
        self._partials: OrderedDict[int, _Partial] = OrderedDict()  # oldest first
        self._buffered = 0
        self._packet_no = 0
        self.stats = ReassemblyStats()

    @property
    def pending(self) -> int:
        """Number of partial messages held."""
        return len(self._partials)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in partial messages."""
        return self._buffered

    def reset(self) -> None:
        """Forget every partial message (e.g. when the sender left); counted as drops."""
        self.stats.dropped_partials += len(self._partials)
        self._partials.clear()
        self._buffered = 0

    def push(self, packet: bytes) -> Message | None:
        """Accept the next packet of this sender; return a message once one is complete."""
        self.stats.packets += 1
        self._packet_no += 1
        try:
            item = decode_any(packet)
        except ProtocolError:
            self.stats.errors += 1
            raise
        self._expire()
        if item is None:
            self.stats.ignored += 1
            return None
        if isinstance(item, Fragment):
            return self._add(item)
        self.stats.messages += 1
        return item

    def _expire(self) -> None:
        oldest_allowed = self._packet_no - self._max_age_packets
        stale = [mid for mid, p in self._partials.items() if p.last_packet < oldest_allowed]
        for mid in stale:
            self._drop(mid)

    def _drop(self, message_id: int) -> None:
        partial = self._partials.pop(message_id)
        self._buffered -= partial.size
        self.stats.dropped_partials += 1

    def _reject(self, message_id: int, reason: str) -> ProtocolError:
        self._drop(message_id)
        self.stats.errors += 1
        return ProtocolError(f"fragment of message {message_id}: {reason}")

    def _add(self, frag: Fragment) -> Message | None:
        self.stats.fragments += 1
        mid = frag.message_id
        partial = self._partials.get(mid)
        if frag.index == 0:
            if partial is not None:
                self._drop(mid)  # the sender restarted this id; the old message is lost
            partial = self._open(mid, frag.count)
        elif partial is None:
            self.stats.orphan_fragments += 1
            return None
        elif frag.count != partial.count:
            raise self._reject(mid, f"count {frag.count} differs from {partial.count}")
        elif frag.index != partial.next_index:
            raise self._reject(mid, f"index {frag.index}, expected {partial.next_index}")
        if partial.size + len(frag.data) > self._max_message_bytes:
            raise self._reject(mid, f"message exceeds {self._max_message_bytes} bytes")
        self._make_room(len(frag.data), keep=mid)
        partial.chunks.append(frag.data)
        partial.size += len(frag.data)
        partial.next_index += 1
        partial.last_packet = self._packet_no
        self._buffered += len(frag.data)
        self._partials.move_to_end(mid)
        if partial.next_index < partial.count:
            return None
        del self._partials[mid]
        self._buffered -= partial.size
        try:
            message = decode_message(b"".join(partial.chunks))
        except ProtocolError:
            self.stats.errors += 1
            raise
        if message is None:
            self.stats.ignored += 1
            return None
        self.stats.messages += 1
        return message

    def _open(self, message_id: int, count: int) -> _Partial:
        while len(self._partials) >= self._max_partials:
            self._drop(next(iter(self._partials)))
        partial = _Partial(count=count, next_index=0, last_packet=self._packet_no)
        self._partials[message_id] = partial
        return partial

    def _make_room(self, size: int, keep: int) -> None:
        """Evict the oldest other partials until ``size`` more bytes fit the total budget."""
        while self._buffered + size > self._max_buffered_bytes:
            victim = next((mid for mid in self._partials if mid != keep), None)
            if victim is None:
                return  # only `keep` is left, and it is within max_message_bytes
            self._drop(victim)
