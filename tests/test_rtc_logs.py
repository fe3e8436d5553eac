"""Native rtc log records stay out of Python in relay processes (issue 11, cost per room).

Each forwarded record is an FFI event parsed under the GIL; in a room host they were a steady
share of the CPU. The probe runs in a fresh interpreter (the flag is process-wide): a refused
connection to a closed loopback port makes the native side log. With forwarding on, Python's
``livekit`` logger gets those records; after ``stop_forwarding_rtc_logs()`` it gets none and
the warnings reach stderr instead, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import asyncio, logging, sys
from livekit import rtc
from avatar_relay.rtc_logs import stop_forwarding_rtc_logs

records = []
class Keep(logging.Handler):
    def emit(self, record): records.append(record.getMessage())
logging.getLogger("livekit").addHandler(Keep())
logging.getLogger("livekit").setLevel(logging.DEBUG)
if sys.argv[1] == "stop":
    assert stop_forwarding_rtc_logs()

async def main():
    try:
        await asyncio.wait_for(rtc.Room().connect("ws://127.0.0.1:9", "not.a.token"), 10)
    except rtc.ConnectError:
        pass
    # The native side batches records and flushes them within 1 s.
    for _ in range(30):
        if records:
            break
        await asyncio.sleep(0.05)

asyncio.run(main())
print("records", sum("Connection refused" in r for r in records))
"""


async def _probe(mode: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE, mode, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return int(out.decode().split()[-1]), err.decode()


@pytest.mark.parametrize("mode", ["keep", "stop"])
async def test_native_records_reach_python_only_when_forwarding(mode: str) -> None:
    records, stderr = await _probe(mode)
    if mode == "keep":
        assert records > 0, "the probe made no native log record: it proves nothing"
    else:
        assert records == 0
        assert "Connection refused" in stderr  # warnings still reach stderr
