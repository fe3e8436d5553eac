"""Speech with phoneme labels made at test time, and the quality measures of issue 4.

The audio and the labels come from one espeak-ng synthesis: libespeak-ng reports a PHONEME
event with the output sample at which each phoneme starts (ctypes, no headers needed). So the
labels are the synthesiser's own phoneme boundaries, not a recogniser's guess. espeak-ng places
the event of a stop consonant (p, b) at its release, with the closure silence just before it;
the label window of a stop therefore starts :data:`STOP_CLOSURE_S` earlier (measured on the
espeak-ng 1.51 en voice: closures of 40-60 ms precede p/b events).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_relay.motion.base import MotionFrame, MotionSource
from avatar_relay.motion.embedded.channels import CH
from avatar_relay.protocol.blendshapes import ArkitU8Codec

STOP_CLOSURE_S = 0.06
BILABIALS = frozenset({"p", "b", "m"})
STOPS = frozenset({"p", "b", "t", "d", "k", "g"})
OPEN_VOWELS = frozenset({"a", "A:", "a#", "aI", "aU", "0", "V", "A@", "O:", "e@", "E"})
CLOSED_GAP = 0.1
"""Lips count as together when the lip gap (see :func:`lip_gap`) is at most this."""

BILABIAL_SENTENCES: tuple[str, ...] = (
    "a papa, a mama, a baby.",
    "Bob made my mom a maple pie.",
    "I am happy, maybe, a bit sleepy.",
    "The map, the mop, and the bib.",
    "Amber umbrellas, a number, impossible.",
    "Please bring Pam a bumpy apple.",
)
ENVELOPE_SENTENCE = (
    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore."
)


class _EventId(ctypes.Union):
    _fields_ = (("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8))


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))  # fmt: skip
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_lock = threading.Lock()


@dataclass(frozen=True)
class Phone:
    name: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Speech:
    pcm: npt.NDArray[np.int16]
    sample_rate: int
    phones: tuple[Phone, ...]


def synthesize(text: str, voice: str = "en", rate_wpm: int = 160) -> Speech:
    """Speak ``text`` with libespeak-ng; return the samples and the phoneme timings."""
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    lib = ctypes.CDLL(name)
    chunks: list[bytes] = []
    events: list[tuple[str, int]] = []

    def on_synth(wav: ctypes._Pointer[ctypes.c_short], n: int, ev: ctypes._Pointer[_Event]) -> int:
        if n > 0:
            chunks.append(ctypes.string_at(wav, n * 2))
        i = 0
        while ev[i].type != _EVENT_LIST_TERMINATED:
            if ev[i].type == _EVENT_PHONEME:
                events.append((ev[i].id.string.decode(), ev[i].sample))
            i += 1
        return 0

    callback = _CALLBACK(on_synth)
    with _lock:
        sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                   _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)  # fmt: skip
        if sr <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(1, rate_wpm, 0)  # espeakRATE
        data = text.encode() + b"\0"
        if lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:
            raise RuntimeError("espeak-ng synthesis failed")
        lib.espeak_Synchronize()
    pcm = np.frombuffer(b"".join(chunks), dtype=np.int16).copy()
    end = len(pcm)
    phones = []
    for i, (ph, start) in enumerate(events):
        nxt = events[i + 1][1] if i + 1 < len(events) else end
        if nxt > start:
            phones.append(Phone(ph, start / sr, nxt / sr))
    return Speech(pcm, sr, tuple(phones))


def with_silence(speech: Speech, before_s: float, after_s: float) -> Speech:
    """Pad with digital silence (labels shift with it)."""
    a, b = int(before_s * speech.sample_rate), int(after_s * speech.sample_rate)
    pcm = np.concatenate([np.zeros(a, np.int16), speech.pcm, np.zeros(b, np.int16)])
    shift = a / speech.sample_rate
    phones = tuple(Phone(p.name, p.start_s + shift, p.end_s + shift) for p in speech.phones)
    return Speech(pcm, speech.sample_rate, phones)


def lip_gap(weights: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """How far apart the lips are, per frame: the jaw opening the lips do not cancel with
    ``mouthClose``, plus half the lip-parting shapes (lower lip down, upper lip up)."""
    w = np.atleast_2d(weights)
    jaw_part = np.maximum(0.0, w[:, CH["jawOpen"]] - w[:, CH["mouthClose"]])
    lower = 0.5 * (w[:, CH["mouthLowerDownLeft"]] + w[:, CH["mouthLowerDownRight"]])
    upper = 0.5 * (w[:, CH["mouthUpperUpLeft"]] + w[:, CH["mouthUpperUpRight"]])
    return np.asarray(jaw_part + 0.5 * lower + 0.5 * upper, dtype=np.float32)


def envelope_db(
    pcm: npt.NDArray[np.int16], sample_rate: int, fps: float = 25.0
) -> npt.NDArray[np.float64]:
    """The speech envelope: RMS of each frame's audio [k/fps, (k+1)/fps) in dB re the loudest
    frame, floored at -40 dB."""
    spf = int(round(sample_rate / fps))
    n = -(-len(pcm) // spf)
    x = np.zeros(n * spf, np.float64)
    x[: len(pcm)] = pcm
    rms = np.sqrt(np.mean(x.reshape(n, spf) ** 2, axis=1)) + 1e-9
    db = 20 * np.log10(rms / rms.max())
    return np.maximum(db, -40.0)


def frames_overlapping(start_s: float, end_s: float, fps: float = 25.0) -> range:
    return range(max(0, int(np.floor(start_s * fps))), int(np.ceil(end_s * fps)))


@dataclass(frozen=True)
class Quality:
    jaw_envelope_r: float
    bilabial_closed: int
    bilabial_total: int
    vowel_open: int
    vowel_total: int
    silence_max_gap: float

    @property
    def bilabial_rate(self) -> float:
        return self.bilabial_closed / max(1, self.bilabial_total)

    @property
    def vowel_open_rate(self) -> float:
        return self.vowel_open / max(1, self.vowel_total)


def bilabial_windows(phones: Sequence[Phone]) -> list[tuple[float, float]]:
    out = []
    for p in phones:
        if p.name in BILABIALS:
            start = p.start_s - (STOP_CLOSURE_S if p.name in STOPS else 0.0)
            out.append((start, p.end_s))
    return out


def score_closures(
    weights: npt.NDArray[np.float32], phones: Sequence[Phone]
) -> tuple[int, int, int, int]:
    """(bilabials closed, bilabials, open-vowel centres open, open vowels)."""
    gap = lip_gap(weights)
    closed = total = 0
    for a, b in bilabial_windows(phones):
        frames = [k for k in frames_overlapping(a, b) if k < len(gap)]
        total += 1
        closed += bool(frames) and bool(np.min(gap[frames]) <= CLOSED_GAP)
    v_open = v_total = 0
    for i, p in enumerate(phones):
        end = p.end_s
        if i + 1 < len(phones) and phones[i + 1].name in STOPS:
            end -= STOP_CLOSURE_S  # espeak-ng counts the next stop's closure into this vowel
        if p.name in OPEN_VOWELS and end - p.start_s >= 0.08:
            k = int((p.start_s + end) / 2 * 25.0)
            if k < len(gap):
                v_total += 1
                v_open += bool(gap[k] > CLOSED_GAP)
    return closed, total, v_open, v_total


async def generate(source: MotionSource, speech: Speech, chunk_ms: int = 20,
                   conversation_id: str = "c1") -> npt.NDArray[np.float32]:  # fmt: skip
    """Push ``speech`` through a new stream of ``source`` in chunks; decoded weights per frame."""
    stream = await source.open_stream(conversation_id, speech.sample_rate)
    codec = ArkitU8Codec(stream.info.channels)
    step = max(1, speech.sample_rate * chunk_ms // 1000)
    raw = speech.pcm.astype("<i2")
    for i in range(0, len(raw), step):
        stream.push_audio(raw[i : i + step].tobytes())
    stream.flush()
    rows = []
    async for item in stream:
        if isinstance(item, MotionFrame):
            assert item.index == len(rows)
            rows.append(codec.decode(item.payload))
    await stream.aclose()
    return np.array(rows, dtype=np.float32)


async def measure_quality(source: MotionSource) -> Quality:
    """The three figures of issue 4 for one configured source, on freshly synthesised speech."""
    env_speech = with_silence(synthesize(ENVELOPE_SENTENCE), 0.5, 0.5)
    w = await generate(source, env_speech)
    env = envelope_db(env_speech.pcm, env_speech.sample_rate)
    r = float(np.corrcoef(w[:, CH["jawOpen"]], env[: len(w)])[0, 1])
    silent = list(range(0, 10)) + list(range(len(w) - 10, len(w)))
    silence_gap = float(np.max(lip_gap(w[silent])))
    closed = total = v_open = v_total = 0
    for i, text in enumerate(BILABIAL_SENTENCES):
        sp = with_silence(synthesize(text), 0.3, 0.3)
        wb = await generate(source, sp, conversation_id=f"b{i}")
        c, t, vo, vt = score_closures(wb, sp.phones)
        closed, total, v_open, v_total = closed + c, total + t, v_open + vo, v_total + vt
    return Quality(r, closed, total, v_open, v_total, silence_gap)
