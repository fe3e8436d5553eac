"""Packet size rules on the sending side: batch small frames, fragment large messages.

Reliable LiveKit data packets carry at most MAX_PACKET_BYTES. Frames are first split across
several ``frames`` messages that each fit one packet (a receiver can use every packet on its
own); only a message that cannot be split, such as one oversized opaque frame, is fragmented.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .codec import Fragment, encode_fragment, encode_message
from .constants import MAX_MESSAGE_BYTES, MAX_PACKET_BYTES
from .errors import ProtocolError
from .limits import MAX_FRAGMENTS, MAX_FRAMES_PER_MESSAGE, MAX_INT
from .messages import AnimationFrames, Message

MIN_PACKET_BYTES: Final = 64
"""Smallest packet budget a packetizer accepts (room for a fragment header and some data)."""


def _array_header(n: int) -> int:
    return 1 if n < 16 else 3 if n < 0x10000 else 5


def _bin_size(n: int) -> int:
    return n + (2 if n < 0x100 else 3 if n < 0x10000 else 5)


def batch_frames(
    conversation_id: str,
    first_seq: int,
    first_frame: int,
    frames: Sequence[bytes],
    *,
    sent_at_us: int = 0,
    max_packet_bytes: int = MAX_PACKET_BYTES,
) -> list[AnimationFrames]:
    """Split consecutive frames into as few ``frames`` messages as fit one packet each.

    Messages get the sequence numbers ``first_seq, first_seq + 1, ...``; the caller advances
    its counter by the number returned. A frame too large for any packet gets a message of its
    own, which :class:`Packetizer` then fragments.
    """
    if max_packet_bytes < MIN_PACKET_BYTES:
        raise ValueError(f"max_packet_bytes must be at least {MIN_PACKET_BYTES}")
    messages: list[AnimationFrames] = []
    pos = 0
    seq = first_seq
    while pos < len(frames):
        index = first_frame + pos
        probe = AnimationFrames(conversation_id, seq, index, (b"\x00",), sent_at_us)
        # The probe's one-element array costs 1 (array header) + 2 (bin header) + 1 byte.
        base = len(encode_message(probe)) - 4
        payload = 0
        count = 0
        while pos + count < len(frames) and count < MAX_FRAMES_PER_MESSAGE:
            add = _bin_size(len(frames[pos + count]))
            if count and base + _array_header(count + 1) + payload + add > max_packet_bytes:
                break
            payload += add
            count += 1
        chunk = tuple(frames[pos : pos + count])
        messages.append(AnimationFrames(conversation_id, seq, index, chunk, sent_at_us))
        pos += count
        seq += 1
    return messages


class Packetizer:
    """Turns messages into packets of at most ``max_packet_bytes``, fragmenting when needed.

    One instance per sender: fragment message ids are unique within an instance. Give a relay
    that restarts a fresh (e.g. random) ``first_message_id`` so receivers never splice old and
    new fragments.
    """

    def __init__(
        self, *, max_packet_bytes: int = MAX_PACKET_BYTES, first_message_id: int = 0
    ) -> None:
        if not MIN_PACKET_BYTES <= max_packet_bytes <= MAX_PACKET_BYTES:
            raise ValueError(
                f"max_packet_bytes must be in [{MIN_PACKET_BYTES}, {MAX_PACKET_BYTES}]"
            )
        if not 0 <= first_message_id <= MAX_INT:
            raise ValueError("first_message_id must be a non-negative wire integer")
        self._max_packet_bytes = max_packet_bytes
        self._next_id = first_message_id

    @property
    def max_packet_bytes(self) -> int:
        return self._max_packet_bytes

    @property
    def next_message_id(self) -> int:
        """The id the next fragmented message will carry."""
        return self._next_id

    def packetize(self, msg: Message) -> list[bytes]:
        """Encode ``msg`` into one packet, or into fragments when it is too large."""
        return self.packetize_encoded(encode_message(msg))

    def packetize_encoded(self, body: bytes) -> list[bytes]:
        """Packets for an already encoded message (one packet unless it must be fragmented)."""
        if len(body) <= self._max_packet_bytes:
            return [body]
        if len(body) > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
        message_id = self._next_id
        count = self._fragment_count(message_id, len(body))
        self._next_id = 0 if message_id >= MAX_INT else message_id + 1
        size = -(-len(body) // count)
        packets = [
            encode_fragment(Fragment(message_id, i, count, body[i * size : (i + 1) * size]))
            for i in range(count)
        ]
        assert all(len(p) <= self._max_packet_bytes for p in packets)
        return packets

    def _fragment_count(self, message_id: int, total: int) -> int:
        """Fewest fragments whose packets, header included, each fit the budget."""
        count = 2
        while True:
            if count > MAX_FRAGMENTS:
                raise ProtocolError(f"message needs more than {MAX_FRAGMENTS} fragments")
            # Worst-case header of this count: largest index, and a 5-byte bin header.
            header = len(encode_fragment(Fragment(message_id, count - 1, count, b"\x00"))) - 3 + 5
            room = self._max_packet_bytes - header
            needed = -(-total // room)
            if needed <= count:
                return count
            count = needed
