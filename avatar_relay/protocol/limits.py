"""Validation limits of protocol v1 beyond the packet sizes in :mod:`constants`.

docs/PROTOCOL.md ("Value ranges") mirrors this module; change both together.
"""

from __future__ import annotations

from typing import Final

MAX_INT: Final = 2**53 - 1
"""Largest integer on the wire, so that JavaScript numbers hold every value exactly."""

MAX_CONVERSATION_ID_CHARS: Final = 64
"""A conversation id has 1..64 characters (Unicode code points)."""

MAX_NAME_CHARS: Final = 64
"""Longest codec name and channel name."""

MAX_TEXT_CHARS: Final = 256
"""Longest free-text field (audio track name, audio-only reason)."""

MAX_CHANNELS: Final = 256
"""Most channels a codec may declare (ARKit-52 plus head pose is 55)."""

MAX_FRAMES_PER_MESSAGE: Final = 1024
"""Most frames one ``frames`` or ``idle`` message may carry."""

MAX_FPS: Final = 240.0
"""Animation frame rates are in [MIN_FPS, 240]."""

MIN_FPS: Final = 1.0
"""Slowest animation frame rate: keeps every media time ``k / fps`` finite and every
sample position ``k * sr / fps`` far from float overflow (a denormal fps made it infinite)."""

MAX_LOOKAHEAD_MS: Final = 60_000
"""Longest declared motion lookahead."""

MAX_FRAGMENTS: Final = 1024
"""Most fragments one message may be split into."""

MAX_MAP_ENTRIES: Final = 64
"""Most entries of any msgpack map in a packet (known keys plus unknown extensions)."""

MAX_DEPTH: Final = 8
"""Deepest nesting of arrays and maps in a packet: the packet's own map is at depth 1, an
array or map inside it at depth 2, and so on. Our messages use depth 2; the rest is room for
extensions, while no input can drive a decoder into deep recursion."""
