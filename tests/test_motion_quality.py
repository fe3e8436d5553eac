"""Evidence that the embedded generator looks like speech, on speech synthesised at test time.

Speech and phoneme labels come from one libespeak-ng synthesis (see tests/motion_speech.py
for how labels are made and what "lips closed" means).
"""

from __future__ import annotations

import ctypes.util
import shutil

import numpy as np
import pytest
from motion_speech import (
    Quality,
    envelope_db,
    generate,
    lip_gap,
    measure_quality,
    synthesize,
    with_silence,
)

from avatar_relay.motion import EmbeddedMotionSource
from avatar_relay.motion.embedded.channels import CH

pytestmark = pytest.mark.skipif(
    ctypes.util.find_library("espeak-ng") is None and shutil.which("espeak-ng") is None,
    reason="needs Debian's espeak-ng",
)


@pytest.fixture(scope="module")
async def default_quality() -> Quality:
    return await measure_quality(EmbeddedMotionSource())


async def test_jaw_follows_the_speech_envelope(default_quality: Quality) -> None:
    assert default_quality.jaw_envelope_r >= 0.7


async def test_lips_close_for_bilabials_but_not_in_open_vowels(default_quality: Quality) -> None:
    q = default_quality
    assert q.bilabial_total >= 30
    assert q.bilabial_rate >= 0.8, q
    # the control: a mouth that never opened would pass the first check
    assert q.vowel_total >= 10 and q.vowel_open_rate >= 0.8, q


async def test_mouth_closed_in_silence(default_quality: Quality) -> None:
    assert default_quality.silence_max_gap <= 0.05


async def test_zero_lookahead_still_meets_the_bar() -> None:
    q = await measure_quality(EmbeddedMotionSource(lookahead_ms=0))
    assert q.jaw_envelope_r >= 0.7 and q.bilabial_rate >= 0.8 and q.vowel_open_rate >= 0.8, q


@pytest.mark.parametrize("voice,text", [
    ("de", "Guten Morgen, wie geht es Ihnen heute? Das Wetter ist schön."),
    ("es", "Buenos días, ¿cómo estás? Mañana vamos a la playa con mamá."),
])  # fmt: skip
async def test_other_languages_move_the_jaw_with_the_voice(voice: str, text: str) -> None:
    speech = with_silence(synthesize(text, voice=voice), 0.4, 0.4)
    w = await generate(EmbeddedMotionSource(), speech)
    env = envelope_db(speech.pcm, speech.sample_rate)
    assert np.corrcoef(w[:, CH["jawOpen"]], env[: len(w)])[0, 1] >= 0.7
    assert np.max(lip_gap(w[:8])) <= 0.05 and np.max(lip_gap(w[-8:])) <= 0.05
