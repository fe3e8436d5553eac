"""A short seeded run of bench/fuzz.py (issue 14): the full run is recorded in docs/BENCHMARKS.md.

The decoder run is differential: the same inputs go through the JavaScript decoder
(``node bench/fuzz.mjs diff``) and must give the same outcome.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fuzz", ROOT / "bench" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fuzz"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


FUZZ = _load()
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


@needs_node
def test_decoders_agree_and_never_crash() -> None:
    report = FUZZ.run_decoder(3000, seed=20241)
    assert report.crashes == 0, report.examples
    assert report.disagreements == 0, report.examples
    # The inputs reach every outcome, so agreement means something.
    kinds = set(report.outcomes)
    assert {"E:protocol", "E:version", "I", "M:start", "M:frames", "M:frag"} <= kinds


def test_python_receiver_survives_and_stays_bounded() -> None:
    report = FUZZ.run_receiver(3000, seed=20242)
    assert report.crashes == 0, report.examples
    assert report.inputs == 3000


def test_fragment_flood_holds_bounded_memory() -> None:
    report = FUZZ.run_flood(600, seed=20243)
    assert report.crashes == 0, report.examples
    assert report.extra["held_bytes_peak"] <= 2 * 2**20
    assert report.extra["partials_after"] <= 4
