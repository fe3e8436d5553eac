"""The reconciler's counters reach a worker's /metrics in multi-process mode.

A worker's main process imports prometheus_client before livekit-agents turns multi-process
mode on (``PROMETHEUS_MULTIPROC_DIR``, set and emptied at server start); that order is
reproduced here in a fresh interpreter, so this process's prometheus_client stays untouched.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import avatar_relay.failover as failover  # prometheus_client imported, mode still off
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]  # as AgentServer.run() does later
    m = failover.reconciler_metrics()
    m.redispatches.labels("dispatch_untaken").inc()
    m.errors.inc()
    assert failover.reconciler_metrics() is m
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # what the worker's /metrics serves
    print(generate_latest(registry).decode())
    """
)


def test_reconciler_counters_are_written_for_the_multiprocess_collector(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    lines = out.splitlines()
    assert 'avatar_relay_redispatches_total{reason="dispatch_untaken"} 1.0' in lines, out
    assert 'avatar_relay_redispatches_total{reason="relay_lost"} 0.0' in lines, out
    assert "avatar_relay_reconciler_errors_total 1.0" in lines, out
