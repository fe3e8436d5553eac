"""Real participants and real speech for the relay's end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from conftest import make_token
from livekit import rtc

from agent.devserver import LiveKitEndpoint
from avatar_relay.motion import MotionSource, motion_source_from_settings
from avatar_relay.protocol import (
    AnimationFrames,
    AudioOnly,
    ConversationEnd,
    ConversationStart,
    Interrupt,
    Message,
    Reassembler,
)
from avatar_relay.protocol.constants import (
    ANIMATION_TOPIC,
    AUDIO_TRACK_NAME,
    RPC_SPEAK_TEXT,
    SPEAK_AUDIO_STREAM_TOPIC,
)
from avatar_relay.relay import RoomRelay
from avatar_relay.relay.control import RelayControl
from avatar_relay.relay.tts import EspeakTts
from avatar_relay.settings import Settings, load_settings

JoinRoom = Callable[..., Awaitable[rtc.Room]]
CONTROLLER = {"avatar-relay.controller": "true"}
LISTEN_RATE = 24000
RELAY_KIND = "standard"
GAP_WINDOW_S = 0.01
MAX_SPEECH_GAP_S = 0.3
"""espeak-ng's longest pause inside a sentence (after a comma) is about 0.15 s."""
GAP_SLACK_S = 0.06


def longest_gap_s(pcm: np.ndarray, rate: int, threshold: int = 300) -> float:
    """The longest run of silent 10 ms windows between the first and last loud one."""
    window = max(1, int(rate * GAP_WINDOW_S))
    n = len(pcm) // window
    loud = np.abs(pcm[: n * window].astype(np.int32)).reshape(n, window).max(axis=1) > threshold
    idx = np.flatnonzero(loud)
    if len(idx) < 2:
        return 0.0
    runs = np.diff(idx) - 1  # silent windows between consecutive loud ones
    return float(runs.max() * GAP_WINDOW_S)


def espeak_pcm(text: str) -> tuple[bytes, int]:
    """Real speech made at test time with Debian's espeak-ng: (PCM s16le mono, rate)."""
    raw = subprocess.run(
        ["espeak-ng", "--stdout", text], check=True, capture_output=True, timeout=30
    ).stdout
    pcm = raw[44:]
    return pcm[: len(pcm) // 2 * 2], 22050


def wav_bytes(pcm: bytes | np.ndarray, rate: int) -> bytes:
    """PCM s16le mono as a WAV file (``rtc.AudioFrame.to_wav_bytes``)."""
    data = pcm.tobytes() if isinstance(pcm, np.ndarray) else pcm
    return rtc.AudioFrame(data, rate, 1, len(data) // 2).to_wav_bytes()


def espeak_wav(text: str) -> bytes:
    return wav_bytes(*espeak_pcm(text))


Speech = str | bytes | tuple[bytes | np.ndarray, int]
"""What :func:`speak` says: text, a WAV file, or (PCM s16le mono, sample rate)."""


async def speak(via: rtc.Room | RoomRelay, to: str | None = None, *, say: Speech) -> str | None:
    """The one way the end-to-end tests make the relay speak.

    ``via`` a participant's room (``to`` is the relay's identity): text goes by the speak_text
    RPC (returns the conversation id), audio as a WAV on the speak-audio byte stream (returns
    None: the id arrives with ConversationStart). ``via`` a RoomRelay in this process: the
    audio goes through a conversation handle (returns its id); text is not accepted there.
    """
    if isinstance(via, RoomRelay):
        if isinstance(say, str | bytes):
            raise TypeError("an in-process relay is given PCM: say=(pcm, rate)")
        pcm, rate = say
        data = pcm.tobytes() if isinstance(pcm, np.ndarray) else pcm
        async with await via.open_conversation() as handle:
            handle.push_frame(rtc.AudioFrame(data, rate, 1, len(data) // 2))
        return handle.id
    if to is None:
        raise TypeError("speaking through a participant needs the relay's identity (to=)")
    if isinstance(say, str):
        return await via.local_participant.perform_rpc(
            destination_identity=to, method=RPC_SPEAK_TEXT, payload=say
        )
    wav = say if isinstance(say, bytes) else wav_bytes(*say)
    await via.local_participant.send_bytes(
        wav, topic=SPEAK_AUDIO_STREAM_TOPIC, destination_identities=[to]
    )
    return None


class Listener:
    """A real participant recording the relay's audio track and protocol messages."""

    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self.messages: list[Message] = []
        self.audio: list[np.ndarray] = []
        self.relay_found = asyncio.Event()
        self._changed = asyncio.Event()
        self._audio_changed = asyncio.Event()
        self._reassembler = Reassembler()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading: set[str] = set()
        self._seen: set[tuple[str | None, int]] = set()
        self.repeats = 0
        room.on("data_received", self._on_data)
        room.on("track_subscribed", self._on_track)
        for p in room.remote_participants.values():
            for pub in p.track_publications.values():
                if pub.track is not None:
                    self._on_track(pub.track, pub, p)  # type: ignore[arg-type]

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != ANIMATION_TOPIC:
            return
        msg = self._reassembler.push(packet.data)
        if msg is None:
            return
        key = (getattr(msg, "conversation_id", None), msg.seq)
        if key[0] is not None and key in self._seen:
            self.repeats += 1  # the relay repeats a conversation's start for late joiners
            return
        self._seen.add(key)
        self.messages.append(msg)
        self._changed.set()

    def _on_track(
        self, track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant
    ) -> None:
        if track.name == AUDIO_TRACK_NAME and track.sid not in self._reading:
            self._reading.add(track.sid)
            task = asyncio.create_task(self._read(track), name="listener.audio")
            self._tasks.add(task)
            self.relay_found.set()

    async def _read(self, track: rtc.Track) -> None:
        async for ev in rtc.AudioStream(track, sample_rate=LISTEN_RATE, num_channels=1):
            self.audio.append(np.frombuffer(ev.frame.data, dtype=np.int16).copy())
            self._audio_changed.set()

    def of(self, kind: type[Message], conversation_id: str | None = None) -> list[Message]:
        return [
            m
            for m in self.messages
            if isinstance(m, kind)
            and (conversation_id is None or getattr(m, "conversation_id", None) == conversation_id)
        ]

    async def wait_for(self, kind: type[Message], conversation_id: str | None = None) -> Message:
        """Wait for the first message of a kind (and conversation), whenever it came."""
        while True:
            found = self.of(kind, conversation_id)
            if found:
                return found[0]
            self._changed.clear()
            await self._changed.wait()

    async def wait_audio_silent(self, threshold: int = 300, chunks: int = 20) -> None:
        """Wait until the last `chunks` 10 ms chunks received were silent."""
        while True:
            tail = self.audio[-chunks:]
            if len(tail) == chunks and all(int(np.abs(a).max()) < threshold for a in tail):
                return
            self._audio_changed.clear()
            await self._audio_changed.wait()

    def loud_seconds(
        self,
        threshold: int = 300,
        *,
        sent: tuple[bytes | np.ndarray, int] | None = None,
        max_gap_s: float | None = MAX_SPEECH_GAP_S,
    ) -> float:
        """Seconds from the first loud sample heard to the last.

        Audio lost in the middle fails here, not only audio lost at the ends: the longest
        silent stretch inside that span may be at most ``max_gap_s`` or, given the ``sent``
        (PCM, rate), at most the sent audio's own longest pause plus one 10 ms chunk and a
        little jitter. ``max_gap_s=None`` when the span holds several utterances.
        """
        if not self.audio:
            return 0.0
        audio = np.concatenate(self.audio)
        loud = np.flatnonzero(np.abs(audio) > threshold)
        if len(loud) == 0:
            return 0.0
        if sent is not None:
            pcm, rate = sent
            data = np.frombuffer(pcm, np.int16) if isinstance(pcm, bytes) else pcm
            max_gap_s = longest_gap_s(data, rate, threshold) + GAP_SLACK_S
        if max_gap_s is not None:
            gap = longest_gap_s(audio[loud[0] : loud[-1] + 1], LISTEN_RATE, threshold)
            assert gap <= max_gap_s, f"{gap:.2f} s of the speech went silent (> {max_gap_s:.2f})"
        return float((loud[-1] - loud[0]) / LISTEN_RATE)

    def frame_count(self, conversation_id: str) -> int:
        return sum(len(m.frames) for m in self.of(AnimationFrames, conversation_id))  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class RelayUnderTest:
    room: rtc.Room
    relay: RoomRelay
    control: RelayControl
    settings: Settings


@contextlib.asynccontextmanager
async def running_relay(
    endpoint: LiveKitEndpoint,
    room_name: str,
    *,
    motion_source: MotionSource | None = None,
    settings: Settings | None = None,
    motion_factory: Callable[[str], MotionSource] | None = None,
    tts: EspeakTts | None = None,
) -> AsyncIterator[RelayUnderTest]:
    """A RoomRelay + control in-process, joined to a real room as an agent participant."""
    settings = settings or load_settings()
    room = rtc.Room()
    await room.connect(
        endpoint.url, make_token(endpoint, "relay-agent", room_name, kind=RELAY_KIND)
    )
    source = motion_source or motion_source_from_settings(settings)
    relay = RoomRelay(room=room, settings=settings, motion_source=source)
    control = RelayControl(
        room=room,
        relay=relay,
        settings=settings,
        motion_factory=motion_factory or (lambda n: motion_source_from_settings(settings, n)),
        tts=tts,
    )
    control.register()
    await relay.start()
    try:
        yield RelayUnderTest(room, relay, control, settings)
    finally:
        await control.aclose()
        await relay.aclose()
        await room.disconnect()


__all__ = [
    "CONTROLLER",
    "AudioOnly",
    "ConversationEnd",
    "ConversationStart",
    "Interrupt",
    "JoinRoom",
    "Listener",
    "espeak_pcm",
    "espeak_wav",
    "running_relay",
    "speak",
    "wav_bytes",
]
