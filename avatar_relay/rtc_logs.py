"""Keep the rtc SDK's native log lines out of Python in processes that host many rooms.

``livekit.rtc`` (1.1.21, ``_ffi_client.py``) starts its native runtime with log capture on:
every log record of the Rust SDK and of libwebrtc, debug ones included, is formatted, sent
as an FFI event, parsed in Python under the GIL, and then mostly dropped as debug. In a room
host that was a steady stream of events per speaking room (docs/BENCHMARKS.md, "Cost per
room"). The native runtime takes the capture flag on each initialization, so initializing it
once more with capture off routes its records to its own stderr logger instead, which filters
them before formatting by ``RUST_LOG`` (errors only when unset). The callback and SDK name
stay those the SDK registered.
"""

from __future__ import annotations

import ctypes
import logging
import os

logger = logging.getLogger("avatar_relay.rtc_logs")

DEFAULT_RUST_LOG = "warn"
"""Native records at this level and above still reach stderr (``RUST_LOG`` overrides)."""


def stop_forwarding_rtc_logs() -> bool:
    """Turn the SDK's log capture off for this process; returns whether it took effect.

    Call it before the first room connects. It touches SDK internals, so it checks them and
    does nothing (logging once) when they are not what it expects.
    """
    # The native logger reads RUST_LOG when the runtime is created: set it first.
    os.environ.setdefault("RUST_LOG", DEFAULT_RUST_LOG)
    try:
        from livekit.rtc import _ffi_client as ffi  # noqa: PLC0415 (internal, checked below)
        from livekit.rtc.version import __version__  # noqa: PLC0415

        client = ffi.FfiClient.instance
        lib = client._ffi_lib
        initialize = lib.livekit_ffi_initialize
        callback = ffi.ffi_event_callback
    except (ImportError, AttributeError) as exc:
        logger.warning("rtc SDK internals changed; its native logs stay forwarded: %s", exc)
        return False
    initialize(callback, ctypes.c_bool(False), b"python", __version__.encode("ascii"))
    return True
