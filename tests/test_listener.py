"""The e2e tests' Listener must catch audio lost in the middle of an utterance (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest
from livekit import rtc
from relay_helpers import LISTEN_RATE, Listener


def heard(listener: Listener, pcm: np.ndarray) -> None:
    listener.audio = [pcm[i : i + 240] for i in range(0, len(pcm), 240)]  # 10 ms chunks


async def test_audio_lost_mid_utterance_fails_loud_seconds() -> None:
    listener = Listener(rtc.Room())
    speech = np.full(2 * LISTEN_RATE, 3000, dtype=np.int16)
    heard(listener, speech)
    assert listener.loud_seconds() == pytest.approx(2.0, abs=0.01)
    lost = speech.copy()
    lost[LISTEN_RATE // 2 : LISTEN_RATE] = 0  # half a second lost in the middle
    heard(listener, lost)
    with pytest.raises(AssertionError, match="went silent"):
        listener.loud_seconds()
    # The span alone (what loud_seconds measured before) would not have noticed.
    assert listener.loud_seconds(max_gap_s=None) == pytest.approx(2.0, abs=0.01)


async def test_pauses_the_sent_audio_has_are_allowed() -> None:
    listener = Listener(rtc.Room())
    sent = np.full(2 * LISTEN_RATE, 3000, dtype=np.int16)
    sent[LISTEN_RATE // 2 : LISTEN_RATE] = 0  # a real pause in what was sent
    heard(listener, sent)
    assert listener.loud_seconds(sent=(sent, LISTEN_RATE)) == pytest.approx(2.0, abs=0.01)
    lost = sent.copy()
    lost[int(1.2 * LISTEN_RATE) : int(1.6 * LISTEN_RATE)] = 0  # ...and a loss elsewhere
    heard(listener, lost)
    assert listener.loud_seconds(sent=(sent, LISTEN_RATE)) > 0  # a 0.4 s loss < 0.5 s pause
    lost[int(1.0 * LISTEN_RATE) : int(1.6 * LISTEN_RATE)] = 0  # the pause grew: audio lost
    heard(listener, lost)
    with pytest.raises(AssertionError, match="went silent"):
        listener.loud_seconds(sent=(sent, LISTEN_RATE))
