"""Map the relay's conversations onto the playout clock of received audio.

Pure and synchronous (no room I/O): the receiver hands it decoded protocol messages with their
arrival times and every audio chunk pulled from the relay's track with the time it was pulled.
It decides which relay conversation each chunk belongs to, feeds a HostModeController, and
returns the frame that belongs to that chunk (see the Synchronization design in docs).

Track mode: the relay sends frame ``k`` when its audio leaves the relay, so conversation
sample 0 plays locally at ``min_k(arrival_k - k / fps) + J`` with ``J`` the jitter-buffer
delay. Data mode: audio arrives in AudioData messages and is played from the controller.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from livekit import rtc

from avatar_relay.protocol import (
    ARKIT_CODEC,
    DEFAULT_FPS,
    AnimationFrames,
    ArkitU8Codec,
    AudioData,
    AudioOnly,
    AudioTransport,
    ConversationEnd,
    ConversationStart,
    Idle,
    Interrupt,
    Message,
    SeqStatus,
    SequenceTracker,
)

from .host_mode import BYTES_PER_SAMPLE, HostModeController, StateReason
from .origin import OriginEstimator

logger = logging.getLogger("avatar_relay.client")

ConversationEventKind = Literal["start", "end", "interrupt", "audio_only"]


@dataclass(frozen=True, slots=True)
class ConversationEvent:
    """A conversation message from the relay, for apps that react to them."""

    kind: ConversationEventKind
    conversation_id: str
    """The relay's conversation id."""
    message: ConversationStart | ConversationEnd | Interrupt | AudioOnly
    received_at: float
    """Local monotonic time the message arrived."""


@dataclass(frozen=True, slots=True)
class SyncedFrame:
    """One audio chunk as it plays, with the animation frame that belongs to it."""

    audio: rtc.AudioFrame
    """The audio to play now (the relay's track, or the conversation's data audio)."""
    conversation_id: str | None
    """The relay's conversation id; None between conversations."""
    frame: bytes | None
    """Codec payload of the frame for this audio position (held when one is missing)."""
    frame_index: int | None
    weights: Mapping[str, float] | None
    """Decoded channel weights for the ``arkit-u8`` codec, else None."""
    audio_only: bool
    """The conversation fell back to audio without animation."""
    idle: bool
    """No conversation is playing; ``frame`` is the latest idle frame, if any."""
    presented_at: float
    """Local monotonic time the chunk was pulled (when it starts to play)."""


@dataclass(slots=True)
class ReceiverStats:
    """What the receiver got, dropped and measured."""

    packets: int = 0
    """Data packets from the relay on the animation topic."""
    packets_dropped: int = 0
    """Packets rejected as malformed (ProtocolError)."""
    duplicates: int = 0
    """Messages dropped because their sequence number was already seen."""
    without_start: int = 0
    """Messages dropped because their conversation's start had not been accepted."""
    audio_gap_capped: int = 0
    """Samples of announced audio gaps not filled with silence (beyond the buffer bound)."""
    gaps: int = 0
    """Sequence gaps (missed messages)."""
    frames_received: int = 0
    """Animation frames in accepted messages."""
    frames_dropped: int = 0
    """Frames discarded: for finished or audio-only conversations, malformed, or overflow."""
    frames_late: int = 0
    """Frames that arrived after their audio had already been played."""
    audio_chunks: int = 0
    """Audio chunks presented."""
    conversations: int = 0
    """Relay conversations seen."""
    resyncs: int = 0
    """Times a playing conversation was moved to a better timing estimate."""
    reanchors: int = 0
    """Times the timing estimate moved later: the relay had fallen behind."""
    offset_ms: float | None = None
    """Smoothed lead of frames: presentation time minus arrival time (positive = early)."""
    jitter_buffer_ms: float = 0.0
    """Jitter-buffer delay J used for the mapping."""
    jitter_buffer_measured: bool = False
    """Whether J comes from the track's stats (else it is the configured default)."""


@dataclass(slots=True)
class _Relayed:
    """What the receiver knows about one relay conversation."""

    cid: str
    tracker: SequenceTracker = field(default_factory=SequenceTracker)
    has_start: bool = False
    fps: float = float(DEFAULT_FPS)
    codec: ArkitU8Codec | None = None
    transport: AudioTransport = "track"
    source_rate: int | None = None
    timing: OriginEstimator = field(default_factory=OriginEstimator)
    """When sample 0 left the relay, from the frames' arrivals."""
    start_arrival: float | None = None
    pending: dict[int, tuple[bytes, float]] = field(default_factory=dict)
    arrivals: dict[int, float] = field(default_factory=dict)
    local_cid: str | None = None
    anchor: float | None = None
    """The origin estimate the playing mapping uses."""
    local_open: bool = False
    fed: int = 0
    """Media position (receiver samples) of the next sample to feed."""
    played: int = 0
    total: int | None = None
    """Conversation length in receiver samples, once ConversationEnd arrived."""
    done: bool = False
    """Nothing more will be fed (ended, interrupted, finished or skipped)."""
    audio_only: bool = False
    data_next: int | None = None
    """Data mode: next expected source-rate sample."""
    resampler: rtc.AudioResampler | None = None

    def origin(self, jitter: float, now: float, frame_wait: float) -> float | None:
        """Local time at which sample 0 plays, or None before enough timing evidence.

        Frames are the evidence (each is sent when its audio leaves the relay). The start
        message is sent when audio is captured, up to the relay's queue earlier, so it only
        anchors conversations without frames: audio-only ones, or after ``frame_wait``.
        """
        if self.timing.best is not None:
            return self.timing.best + jitter
        if self.start_arrival is not None and (
            self.audio_only or now >= self.start_arrival + frame_wait
        ):
            return self.start_arrival + jitter
        return None


class PlayoutSync:
    """Relay conversations in, synchronized :class:`SyncedFrame` out.

    Timing evidence: each frame gives an estimate of when its conversation's sample 0 left the
    relay (arrival - k / fps); the least-delayed one is the best, and it moves later when the
    relay fell behind (re-anchoring, see :class:`OriginEstimator`).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 48000,
        default_jitter_delay: float = 0.04,
        controller: HostModeController | None = None,
        max_conversations: int = 16,
        max_pending_frames: int = 1024,
        frame_wait: float = 0.5,
        audio_path_delay: float = 0.02,
        resync_threshold: float = 0.015,
    ) -> None:
        if default_jitter_delay < 0 or audio_path_delay < 0:
            raise ValueError("default_jitter_delay and audio_path_delay must be non-negative")
        if max_conversations < 1 or max_pending_frames < 1:
            raise ValueError("max_conversations and max_pending_frames must be positive")
        self._controller = controller or HostModeController(sample_rate=sample_rate)
        if self._controller.sample_rate != sample_rate:
            raise ValueError("the controller's sample rate must equal the receiver's")
        self._sr = sample_rate
        self._default_jitter = default_jitter_delay
        self._jitter = default_jitter_delay
        self._max_conversations = max_conversations
        self._max_pending = max_pending_frames
        self._frame_wait = frame_wait
        self._path_delay = audio_path_delay
        self._resync_samples = round(resync_threshold * sample_rate)
        self._convs: OrderedDict[str, _Relayed] = OrderedDict()
        self._by_local: dict[str, _Relayed] = {}
        self._idle_tracker = SequenceTracker()
        self._idle: tuple[Idle, int, bytes, ArkitU8Codec | None] | None = None
        self._codecs: dict[tuple[str, ...], ArkitU8Codec | None] = {}
        self.stats = ReceiverStats(jitter_buffer_ms=default_jitter_delay * 1000)

    @property
    def controller(self) -> HostModeController:
        return self._controller

    @property
    def sample_rate(self) -> int:
        return self._sr

    @property
    def jitter_delay(self) -> float:
        return self._jitter

    def set_jitter_delay(self, seconds: float | None) -> None:
        """Use a measured jitter-buffer delay; None falls back to the configured default."""
        self._jitter = self._default_jitter if seconds is None else max(0.0, seconds)
        self.stats.jitter_buffer_ms = self._jitter * 1000
        self.stats.jitter_buffer_measured = seconds is not None

    def reset(self, *, reason: StateReason = "networkError") -> None:
        """Forget every conversation (the relay left); playback stops."""
        self._controller.interrupt(reason=reason)
        self._convs.clear()
        self._by_local.clear()
        self._idle_tracker = SequenceTracker()
        self._idle = None

    # -- messages ------------------------------------------------------------------------------

    def on_message(self, msg: Message, arrival: float) -> ConversationEvent | None:
        """Apply one message from the relay; return an event for conversation messages."""
        if isinstance(msg, Idle):
            self._on_idle(msg)
            return None
        if isinstance(msg, ConversationStart):
            return self._on_start(msg, arrival)
        conv = self._convs.get(msg.conversation_id)
        if conv is None:
            # No accepted start: the codec and timing are unknown. Dropped without creating
            # state or touching a sequence tracker (docs/PROTOCOL.md, order of checks), so
            # the repeated start that follows is in order and a flood of unknown ids costs
            # nothing.
            self.stats.without_start += 1
            return None
        status = conv.tracker.observe(msg.seq)
        if status is SeqStatus.DUPLICATE:
            self.stats.duplicates += 1
            return None
        if status is SeqStatus.GAP:
            self.stats.gaps += 1
        if isinstance(msg, AnimationFrames):
            self._on_frames(conv, msg, arrival)
            return None
        if isinstance(msg, AudioData):
            self._on_audio_data(conv, msg)
            return None
        if isinstance(msg, ConversationEnd):
            self._on_end(conv, msg)
            return ConversationEvent("end", conv.cid, msg, arrival)
        if isinstance(msg, Interrupt):
            self._on_interrupt(conv)
            return ConversationEvent("interrupt", conv.cid, msg, arrival)
        self._on_audio_only(conv)
        return ConversationEvent("audio_only", conv.cid, msg, arrival)

    def _conversation(self, cid: str) -> _Relayed:
        conv = self._convs.get(cid)
        if conv is None:
            conv = _Relayed(cid, timing=OriginEstimator(self._resync_samples / self._sr))
            self._convs[cid] = conv
            self.stats.conversations += 1
            self._evict()
        return conv

    def _evict(self) -> None:
        while len(self._convs) > self._max_conversations:
            victim = next((c for c in self._convs.values() if c.done), None)
            if victim is None:
                # Never the one being played: the oldest of the others. Conversations not
                # mapped yet (local_cid None) are never the playing one, even when nothing
                # plays (comparing None with None made every candidate "playing").
                playing = self._controller.get_current_conversation_id()
                victim = next(
                    c for c in self._convs.values() if c.local_cid is None or c.local_cid != playing
                )  # the limit is at least 1, so at most one conversation is the playing one
                self._close_local(victim)
            del self._convs[victim.cid]
            if victim.local_cid is not None:
                self._by_local.pop(victim.local_cid, None)

    def _codec(self, codec: str, channels: tuple[str, ...]) -> ArkitU8Codec | None:
        if codec != ARKIT_CODEC:
            return None
        if channels not in self._codecs:
            try:
                self._codecs[channels] = ArkitU8Codec(channels)
            except ValueError:
                logger.debug("undecodable arkit-u8 channel list", extra={"channels": channels})
                self._codecs[channels] = None
        return self._codecs[channels]

    def _on_start(self, msg: ConversationStart, arrival: float) -> ConversationEvent | None:
        known = self._convs.get(msg.conversation_id)
        if known is not None and known.has_start:
            self.stats.duplicates += 1  # the relay repeats a playing conversation's start
            return None
        conv = self._conversation(msg.conversation_id)
        conv.tracker.observe(msg.seq)
        conv.has_start = True
        conv.fps = msg.fps
        conv.codec = self._codec(msg.codec, msg.channels)
        conv.transport = msg.audio_transport
        conv.source_rate = msg.sample_rate
        if conv.start_arrival is None:
            conv.start_arrival = arrival
        if conv.local_cid is not None and conv.local_open:
            self._controller.fps = msg.fps
        logger.debug(
            "conversation start",
            extra={"conversation_id": conv.cid, "codec": msg.codec, "transport": conv.transport},
        )
        return ConversationEvent("start", conv.cid, msg, arrival)

    def _on_idle(self, msg: Idle) -> None:
        if self._idle_tracker.observe(msg.seq) is SeqStatus.DUPLICATE:
            self.stats.duplicates += 1
            return
        if not msg.frames:
            return
        codec = self._codec(msg.codec, msg.channels)
        last = msg.frames[-1]
        if codec is not None and len(last) != len(codec.channels):
            self.stats.frames_dropped += len(msg.frames)
            return
        self._idle = (msg, msg.first_frame + len(msg.frames) - 1, last, codec)

    def _valid_frames(self, conv: _Relayed, frames: tuple[bytes, ...]) -> bool:
        return conv.codec is None or all(len(f) == len(conv.codec.channels) for f in frames)

    def _on_frames(self, conv: _Relayed, msg: AnimationFrames, arrival: float) -> None:
        count = len(msg.frames)
        self.stats.frames_received += count
        if conv.done or conv.audio_only or not self._valid_frames(conv, msg.frames):
            self.stats.frames_dropped += count
            return
        self._note_timing(conv, arrival, msg.first_frame, msg.sent_at_us)
        if conv.local_cid is None:
            for i, payload in enumerate(msg.frames):
                conv.pending[msg.first_frame + i] = (payload, arrival)
            overflow = len(conv.pending) - self._max_pending
            if overflow > 0:
                for k in sorted(conv.pending)[:overflow]:
                    del conv.pending[k]
                self.stats.frames_dropped += overflow
            return
        self._deliver(conv, msg.first_frame, msg.frames, arrival)

    def _note_timing(self, conv: _Relayed, arrival: float, k: int, sent_at_us: int) -> None:
        sent_at = sent_at_us / 1e6 if sent_at_us > 0 else None
        if conv.timing.on_frames(arrival, k / conv.fps, sent_at):
            self.stats.reanchors += 1

    def _deliver(
        self, conv: _Relayed, first: int, frames: tuple[bytes, ...] | list[bytes], arrival: float
    ) -> None:
        """Hand frames of a mapped conversation to the controller, counting late ones."""
        assert conv.local_cid is not None
        spf = self._sr / conv.fps
        for i in range(len(frames)):
            k = first + i
            if (k + 1) * spf <= conv.played:
                self.stats.frames_late += 1
            elif len(conv.arrivals) < self._max_pending:
                conv.arrivals[k] = arrival
        self._controller.yield_frames_data(frames, conv.local_cid, first_frame=first)

    def _on_end(self, conv: _Relayed, msg: ConversationEnd) -> None:
        rate = conv.source_rate or self._sr
        conv.total = round(msg.audio_samples * self._sr / rate)
        if conv.transport == "data":
            self._finish_data(conv)
        elif conv.local_cid is not None and conv.fed >= conv.total:
            self._close_local(conv)
            conv.done = True
        elif conv.local_cid is None and conv.timing.best is None and conv.start_arrival is None:
            conv.done = True  # joined at its very end: nothing to play

    def _on_interrupt(self, conv: _Relayed) -> None:
        conv.done = True
        conv.pending.clear()
        if conv.local_cid is not None and (
            conv.local_open or self._controller.get_current_conversation_id() == conv.local_cid
        ):
            self._controller.interrupt(reason="serverError")
        conv.local_open = False

    def _on_audio_only(self, conv: _Relayed) -> None:
        conv.audio_only = True
        self.stats.frames_dropped += len(conv.pending)
        conv.pending.clear()
        if conv.local_cid is not None:
            self._controller.yield_frames_data(None, conv.local_cid)

    def _close_local(self, conv: _Relayed) -> None:
        if conv.local_open:
            self._controller.yield_audio_data(b"", end=True)
            conv.local_open = False

    # -- audio -------------------------------------------------------------------------------

    def _map(self, conv: _Relayed, audio: bytes, first_sample: int, end: bool) -> None:
        """Open the controller conversation for ``conv`` and flush its pending frames."""
        self._controller.fps = conv.fps
        local = self._controller.yield_audio_data(audio, end, first_sample=first_sample)
        conv.local_cid = local
        conv.local_open = not end
        conv.played = first_sample
        self._by_local[local] = conv
        if conv.audio_only:
            self._controller.yield_frames_data(None, local)
        run: list[bytes] = []
        run_start = 0
        run_arrival = 0.0
        for k in sorted(conv.pending):
            payload, arrival = conv.pending[k]
            if run and k == run_start + len(run):
                run.append(payload)
                continue
            if run:
                self._deliver(conv, run_start, run, run_arrival)
            run, run_start, run_arrival = [payload], k, arrival
        if run:
            self._deliver(conv, run_start, run, run_arrival)
        conv.pending.clear()

    def _on_audio_data(self, conv: _Relayed, msg: AudioData) -> None:
        if conv.transport != "data" or conv.done:
            return  # track transport plays from the track ("both" included)
        pcm = msg.pcm
        source_rate = conv.source_rate or self._sr
        if conv.data_next is not None and msg.first_sample != conv.data_next:
            delta = msg.first_sample - conv.data_next
            if delta > 0:
                # Lost messages become silence, but never more than the controller can
                # buffer: an index jump must not allocate without bound (issue 14).
                fill = min(delta, self._max_gap_samples(source_rate))
                self.stats.audio_gap_capped += delta - fill
                pcm = bytes(fill * BYTES_PER_SAMPLE) + pcm
            else:
                pcm = pcm[-delta * BYTES_PER_SAMPLE :]
        first = conv.data_next is None
        # A re-sent older message must never move the expected position backwards.
        conv.data_next = max(
            conv.data_next or 0, msg.first_sample + len(msg.pcm) // BYTES_PER_SAMPLE
        )
        if source_rate != self._sr:
            if conv.resampler is None:
                conv.resampler = rtc.AudioResampler(source_rate, self._sr, num_channels=1)
            frames = conv.resampler.push(bytearray(pcm)) if pcm else []
            pcm = b"".join(bytes(f.data.cast("B")) for f in frames)
        if first:
            start = round(msg.first_sample * self._sr / source_rate)
            self._map(conv, pcm, start, end=False)
        elif conv.local_open:
            self._controller.yield_audio_data(pcm)

    def _max_gap_samples(self, rate: int) -> int:
        """Most silence (at ``rate``) a gap may insert: the controller's audio buffer."""
        return self._controller.max_buffered_samples * rate // self._sr

    def _finish_data(self, conv: _Relayed) -> None:
        if conv.resampler is not None and conv.local_open:
            tail = b"".join(bytes(f.data.cast("B")) for f in conv.resampler.flush())
            self._controller.yield_audio_data(tail)
        self._close_local(conv)
        conv.done = True

    def _track_conversation(self, now: float, samples: int) -> _Relayed | None:
        """The relay conversation a track chunk pulled at ``now`` belongs to, if any."""
        live = [c for c in self._convs.values() if not c.done and c.transport != "data"]
        half = samples / self._sr / 2
        for i, conv in enumerate(live):
            if conv.local_cid is not None:
                later = live[i + 1 :]
                if any((o := self._origin(c, now)) is not None and o <= now for c in later):
                    self._close_local(conv)  # its end never came; the next one is playing
                    conv.done = True
                    continue
                return conv
            origin = self._origin(conv, now)
            if origin is None:
                continue  # no timing evidence yet; a later conversation may have some
            if now + half < origin:
                return None
            position = max(0, round((now - origin) * self._sr))
            if conv.total is not None and position >= conv.total:
                conv.done = True  # joined after it finished playing
                continue
            return conv
        return None

    def _origin(self, conv: _Relayed, now: float) -> float | None:
        # Audio also waits for the sender's codec to fill a packet (Opus: 20 ms) while a
        # frame's data packet leaves at once; that delay adds to the jitter buffer's.
        return conv.origin(self._jitter + self._path_delay, now, self._frame_wait)

    def _feed_track(self, conv: _Relayed, pcm: bytes, samples: int, now: float) -> None:
        origin = self._origin(conv, now)
        position = conv.fed
        resync = False
        if conv.local_cid is None:
            assert origin is not None
            position = max(0, round((now - origin) * self._sr))
            conv.anchor = origin
        elif origin is not None and conv.anchor is not None:
            moved = conv.anchor - origin
            if abs(moved) * self._sr > self._resync_samples:
                # A better estimate arrived (an earlier frame, a new J): move to it. Only
                # evidence moves the mapping, never the pull times, which can come in bursts.
                # Forward skips audio positions; backward holds the picture meanwhile.
                self.stats.resyncs += 1
                position = max(0, conv.fed + round(moved * self._sr))
                conv.anchor = origin
                resync = True
        end = conv.total is not None and position + samples >= conv.total
        if conv.total is not None and end:
            pcm = pcm[: max(0, conv.total - position) * BYTES_PER_SAMPLE]
        if conv.local_cid is None:
            self._map(conv, pcm, position, end)
        else:
            # Always positioned: after a move backward (the relay fell behind) the controller
            # drops the audio it already has, so it starves and holds the picture until the
            # track's audio has caught up with what it showed.
            self._controller.yield_audio_data(pcm, end, first_sample=position)
            conv.local_open = not end
            if resync and position > conv.fed:
                # Discard the skipped span: at most what is buffered (a far-off frame index
                # must not make the controller build a huge chunk of silence).
                skip = min(position - conv.fed, self._controller.buffered_samples)
                if skip > 0:
                    self._controller.playout(skip)
        conv.fed = position + len(pcm) // BYTES_PER_SAMPLE  # moves back after a re-anchor
        if end:
            conv.done = True

    def on_audio(self, frame: rtc.AudioFrame, now: float) -> SyncedFrame:
        """Present one chunk of the relay's track pulled at ``now`` (monotonic seconds)."""
        if frame.sample_rate != self._sr:
            raise ValueError(f"audio at {frame.sample_rate} Hz, receiver runs at {self._sr} Hz")
        samples = frame.samples_per_channel
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm[:: frame.num_channels]
        conv = self._track_conversation(now, samples)
        if conv is not None:
            self._feed_track(conv, pcm.tobytes(), samples, now)
        chunk = self._controller.playout(samples)
        self.stats.audio_chunks += 1
        relayed = self._by_local.get(chunk.conversation_id or "")
        if relayed is None:
            return self._present_idle(frame, now)
        relayed.played = chunk.position + samples - chunk.starved_samples
        audio = frame
        if relayed.transport == "data":
            audio = rtc.AudioFrame(chunk.audio, self._sr, 1, samples)
        weights = None
        if chunk.frame is not None and relayed.codec is not None:
            weights = self._weights(relayed.codec, chunk.frame)
        if chunk.frame_index is not None and chunk.frame_index == chunk.target_frame:
            arrival = relayed.arrivals.pop(chunk.frame_index, None)
            if arrival is not None:
                self._measure_offset(now - arrival)
        for k in [k for k in relayed.arrivals if k < (chunk.target_frame or 0)]:
            del relayed.arrivals[k]
        return SyncedFrame(
            audio=audio,
            conversation_id=relayed.cid,
            frame=chunk.frame,
            frame_index=chunk.frame_index,
            weights=weights,
            audio_only=chunk.audio_only,
            idle=False,
            presented_at=now,
        )

    def _present_idle(self, frame: rtc.AudioFrame, now: float) -> SyncedFrame:
        payload: bytes | None = None
        index: int | None = None
        weights: Mapping[str, float] | None = None
        if self._idle is not None:
            _, index, payload, codec = self._idle
            if codec is not None:
                weights = self._weights(codec, payload)
        return SyncedFrame(frame, None, payload, index, weights, False, True, now)

    @staticmethod
    def _weights(codec: ArkitU8Codec, payload: bytes) -> Mapping[str, float] | None:
        try:
            values = codec.decode(payload)
        except ValueError:
            return None
        return dict(zip(codec.channels, (float(v) for v in values), strict=True))

    def _measure_offset(self, lead: float) -> None:
        ms = lead * 1000
        prev = self.stats.offset_ms
        self.stats.offset_ms = ms if prev is None else prev + 0.1 * (ms - prev)
