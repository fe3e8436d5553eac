"""Offline text-to-speech with espeak-ng, for the speak_text control and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import shutil
import struct
import wave
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from livekit.agents import tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

from ..settings import TtsSettings

TTS_TIMEOUT_S = 30.0
ESPEAK_SAMPLE_RATE = 22050
"""espeak-ng's output rate."""


class TtsError(RuntimeError):
    """The speech could not be synthesized."""


class WavError(ValueError):
    """The bytes are not a WAV file we can play (PCM 16-bit, mono or stereo)."""


@dataclass(frozen=True, slots=True)
class Pcm:
    """Mono int16 samples at a sample rate."""

    samples: npt.NDArray[np.int16]
    sample_rate: int


def parse_wav(data: bytes) -> Pcm:
    """Decode a PCM16 WAV; stereo is mixed down to mono."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise WavError(f"WAV must be 16-bit PCM, got {wav.getsampwidth() * 8}-bit")
            channels, rate = wav.getnchannels(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except WavError:
        raise
    except (wave.Error, EOFError, RuntimeError, ValueError, struct.error) as exc:
        # The wave module reports a chunk that runs past the data as a bare RuntimeError
        # (and a few other malformed headers as ValueError or struct.error): issue 14.
        raise WavError(f"not a PCM WAV file: {exc!r}") from exc
    if not 1 <= channels <= 2:
        raise WavError(f"WAV must be mono or stereo, got {channels} channels")
    if not 8000 <= rate <= 96000:
        raise WavError(f"WAV sample rate {rate} is out of range 8000..96000")
    samples = np.frombuffer(raw[: len(raw) // (2 * channels) * 2 * channels], dtype="<i2")
    if channels == 2:
        samples = samples.reshape(-1, 2).mean(axis=1).round().astype(np.int16)
    if len(samples) == 0:
        raise WavError("WAV has no audio")
    return Pcm(samples.astype(np.int16), rate)


async def decode_wav(data: bytes) -> Pcm:
    """:func:`parse_wav` in a worker thread: a WAV of megabytes must not hold the event loop
    (and with it the audio and frames of what is playing)."""
    return await asyncio.to_thread(parse_wav, data)


class EspeakTts:
    """Runs espeak-ng per request; text goes through stdin, never through the command line."""

    def __init__(self, settings: TtsSettings) -> None:
        self._settings = settings
        self._binary = shutil.which("espeak-ng")

    async def synthesize(self, text: str) -> Pcm:
        if self._binary is None:
            raise TtsError("espeak-ng is not installed (Debian package espeak-ng)")
        proc = await asyncio.create_subprocess_exec(
            self._binary, "--stdout", "-v", self._settings.voice,
            "-s", str(self._settings.words_per_minute),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(text.encode()), TTS_TIMEOUT_S)
        except TimeoutError as exc:
            raise TtsError("espeak-ng timed out") from exc
        finally:
            # Timed out or cancelled (the RPC's caller went away): the process goes with it.
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
        if proc.returncode != 0:
            raise TtsError(f"espeak-ng failed: {err.decode(errors='replace').strip()}")
        try:
            return await decode_wav(_fix_streamed_wav(out))
        except WavError as exc:
            raise TtsError(f"espeak-ng produced no usable audio: {exc}") from exc


def _fix_streamed_wav(data: bytes) -> bytes:
    """espeak-ng writing to a pipe leaves the RIFF sizes unset (0xFFFFFFFF); patch them."""
    if len(data) < 44 or data[:4] != b"RIFF":
        return data
    fixed = bytearray(data)
    fixed[4:8] = (len(data) - 8).to_bytes(4, "little")
    idx = fixed.find(b"data", 12)
    if idx >= 0:
        fixed[idx + 4 : idx + 8] = (len(data) - idx - 8).to_bytes(4, "little")
    return bytes(fixed)


class EspeakAgentTTS(tts.TTS[None]):
    """espeak-ng as a livekit-agents TTS, so a voice agent can speak fully offline."""

    def __init__(self, settings: TtsSettings | None = None) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=ESPEAK_SAMPLE_RATE,
            num_channels=1,
        )
        self._espeak = EspeakTts(settings or TtsSettings())

    @property
    def model(self) -> str:
        return "espeak-ng"

    @property
    def provider(self) -> str:
        return "espeak-ng"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _EspeakChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class _EspeakChunkedStream(tts.ChunkedStream):
    def __init__(
        self, *, tts: EspeakAgentTTS, input_text: str, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._espeak_tts = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        pcm = await self._espeak_tts._espeak.synthesize(self.input_text)
        output_emitter.initialize(
            request_id=secrets.token_hex(6),
            sample_rate=pcm.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        output_emitter.push(pcm.samples.tobytes())
        output_emitter.flush()
