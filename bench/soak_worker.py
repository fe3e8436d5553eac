"""The real worker (``python -m agent start``) plus a task-count report, for bench/soak.py.

Every ``AVATAR_RELAY_SOAK_REPORT_S`` seconds, the main process and each relay job log
``soak tasks`` with their pid and ``len(asyncio.all_tasks())``: the one number a process
cannot be asked for from outside. Everything else is the shipped worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from livekit.agents import JobContext, cli  # noqa: E402

from avatar_relay import worker  # noqa: E402
from avatar_relay.settings import load_settings  # noqa: E402

logger = logging.getLogger("avatar_relay.soak")
REPORT_S = float(os.environ.get("AVATAR_RELAY_SOAK_REPORT_S", "10"))
_reporters: set[asyncio.Task[None]] = set()


async def _report(role: str) -> None:
    while True:
        logger.info(
            "soak tasks",
            extra={"role": role, "pid": os.getpid(), "tasks": len(asyncio.all_tasks())},
        )
        await asyncio.sleep(REPORT_S)


def _start_reporter(role: str) -> None:
    task = asyncio.get_running_loop().create_task(_report(role), name=f"soak.report.{role}")
    _reporters.add(task)
    task.add_done_callback(_reporters.discard)


_relay_job = worker.run_relay_job


async def _job_with_report(ctx: JobContext) -> None:
    _start_reporter("job")
    await _relay_job(ctx)


def main() -> None:
    # build_server() registers the module's run_relay_job when called: wrap it first.
    worker.run_relay_job = _job_with_report
    server = worker.build_server(load_settings())

    def _registered(*_: Any) -> None:
        _start_reporter("main")

    server.on("worker_registered", _registered)
    cli.run_app(server)


if __name__ == "__main__":
    main()
