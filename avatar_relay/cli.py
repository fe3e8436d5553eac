"""The ``avatar-relay`` console script: ``avatar-relay start|dev|connect ...``.

Kept free of heavy imports so that an install without the ``agent`` extra gets a clear
message instead of a traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .worker import main as run_worker
    except ImportError as exc:
        print(
            f"avatar-relay: the worker needs the 'agent' extra "
            f"(pip install 'avatar-relay[agent]'): {exc}",
            file=sys.stderr,
        )
        raise SystemExit(2) from exc
    run_worker()
