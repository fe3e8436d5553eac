"""Direct control of the avatar through the real livekit-server: speak, interrupt, switch, auth."""

from __future__ import annotations

import asyncio
import io
import threading
import wave

import pytest
from livekit import rtc
from relay_helpers import (
    CONTROLLER,
    JoinRoom,
    Listener,
    espeak_wav,
    running_relay,
    speak,
)

import avatar_relay.relay.tts as tts_module
from agent.devserver import LiveKitEndpoint
from avatar_relay.protocol import (
    AnimationFrames,
    AudioOnly,
    ConversationEnd,
    ConversationStart,
    Interrupt,
)
from avatar_relay.protocol.constants import (
    RPC_ERROR_BAD_REQUEST,
    RPC_ERROR_RATE_LIMITED,
    RPC_ERROR_UNAUTHORIZED,
    RPC_ERROR_UNAVAILABLE,
    RPC_INTERRUPT,
    RPC_SET_MOTION_SOURCE,
    RPC_SPEAK_TEXT,
)
from avatar_relay.relay import PhaseChanged, RelayBusyError
from avatar_relay.relay.tts import EspeakTts, Pcm
from avatar_relay.settings import TtsSettings, load_settings

pytestmark = pytest.mark.e2e
AGENT = "relay-agent"


async def test_speak_text_plays_audio_with_frames_of_one_conversation(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    async with running_relay(livekit_server, room_name):
        viewer = await join_room(room_name, "viewer", attributes=CONTROLLER)
        listener = Listener(viewer)
        async with asyncio.timeout(10):
            await listener.relay_found.wait()
        conversation_id = await speak(viewer, AGENT, say="Hello from the relay.")
        async with asyncio.timeout(15):
            end = await listener.wait_for(ConversationEnd, conversation_id)
            await listener.wait_audio_silent()
        start = listener.of(ConversationStart, conversation_id)[0]
        assert isinstance(start, ConversationStart) and start.codec == "arkit-u8"
        assert isinstance(end, ConversationEnd)
        assert listener.frame_count(conversation_id) == end.frame_count > 0
        # One frame per 40 ms of the conversation's audio, and the audio really played.
        duration = end.audio_samples / start.sample_rate
        assert end.frame_count == -(-end.audio_samples * 25 // start.sample_rate)
        assert listener.loud_seconds() >= 0.6 * duration
        # Frames arrive in order with contiguous indices.
        indices = [
            i
            for m in listener.of(AnimationFrames, conversation_id)
            for i in range(m.first_frame, m.first_frame + len(m.frames))  # type: ignore[attr-defined]
        ]
        assert indices == list(range(end.frame_count))
        await listener.aclose()


async def test_speak_text_answers_before_a_long_utterance_has_played(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    """Regression: once complete audio was fed at playback pace (issue 11, item 5) the RPC
    awaited the feeding, so speak_text answered only ~2 s before its audio ended (a long
    text got the caller's RPC timeout although it played). PROTOCOL.md: the id comes at once."""
    async with running_relay(livekit_server, room_name):
        viewer = await join_room(room_name, "viewer", attributes=CONTROLLER)
        listener = Listener(viewer)
        async with asyncio.timeout(10):
            await listener.relay_found.wait()
        text = " ".join(["The avatar keeps on talking for quite a while now."] * 4)
        async with asyncio.timeout(15):
            conversation_id = await speak(viewer, AGENT, say=text)
        frames_at_answer = listener.frame_count(conversation_id)
        async with asyncio.timeout(40):
            end = await listener.wait_for(ConversationEnd, conversation_id)
        assert isinstance(end, ConversationEnd)
        assert end.frame_count > 25 * 8  # long enough that the old wait was visible
        assert frames_at_answer < 25 * 3, f"answered after {frames_at_answer} frames had played"
        await listener.aclose()


async def test_unauthorized_and_malformed_requests_get_clear_errors(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    async with running_relay(livekit_server, room_name) as rut:
        stranger = await join_room(room_name, "stranger")  # no controller attribute
        controller = await join_room(room_name, "controller", attributes=CONTROLLER)
        listener = Listener(stranger)
        refused = [(RPC_SPEAK_TEXT, "hi"), (RPC_INTERRUPT, ""), (RPC_SET_MOTION_SOURCE, "clap")]
        for method, payload in refused:
            with pytest.raises(rtc.RpcError) as err:
                await stranger.local_participant.perform_rpc(
                    destination_identity=AGENT, method=method, payload=payload
                )
            assert err.value.code == RPC_ERROR_UNAUTHORIZED
        malformed = [
            (RPC_SPEAK_TEXT, "   "),
            (RPC_SPEAK_TEXT, "x" * 5000),
            (RPC_SET_MOTION_SOURCE, "?"),
        ]
        for method, payload in malformed:
            with pytest.raises(rtc.RpcError) as err:
                await controller.local_participant.perform_rpc(
                    destination_identity=AGENT, method=method, payload=payload
                )
            assert err.value.code == RPC_ERROR_BAD_REQUEST
        # Nothing was started by any of them, and the relay still serves a good request.
        assert rut.relay.current_conversation_id is None
        assert not listener.of(ConversationStart)
        cid = await speak(controller, AGENT, say="Still here.")
        async with asyncio.timeout(15):
            await listener.wait_for(ConversationEnd, cid)
        await listener.aclose()


async def test_speak_audio_stream_plays_a_wav_and_rejects_garbage(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    async with running_relay(livekit_server, room_name):
        controller = await join_room(room_name, "controller", attributes=CONTROLLER)
        stranger = await join_room(room_name, "stranger")
        listener = Listener(controller)
        wav = espeak_wav("Testing one two three.")
        # Garbage and an unauthorized sender start nothing.
        await speak(controller, AGENT, say=b"RIFF\x00\x00not a wav at all")
        await speak(stranger, AGENT, say=wav)
        await speak(controller, AGENT, say=wav)
        async with asyncio.timeout(15):
            end = await listener.wait_for(ConversationEnd)
        assert len(listener.of(ConversationStart)) == 1
        with wave.open(io.BytesIO(wav)) as w:
            expected = w.getnframes() / w.getframerate()
        assert isinstance(end, ConversationEnd)
        assert abs(end.audio_samples / 24000 - expected) < 0.05
        await listener.aclose()


async def test_interrupt_rpc_stops_audio_and_sends_interrupt(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    async with running_relay(livekit_server, room_name) as rut:
        controller = await join_room(room_name, "controller", attributes=CONTROLLER)
        listener = Listener(controller)
        text = "This is a long sentence that the avatar will not be allowed to finish saying."
        cid = await speak(controller, AGENT, say=text)
        async with asyncio.timeout(10):
            await listener.wait_for(AnimationFrames, cid)
        interrupted = await controller.local_participant.perform_rpc(
            destination_identity=AGENT, method=RPC_INTERRUPT, payload=""
        )
        assert interrupted == cid
        async with asyncio.timeout(5):
            await listener.wait_for(Interrupt, cid)
            await listener.wait_audio_silent()
        assert not listener.of(ConversationEnd, cid)
        assert rut.relay.current_conversation_id is None
        # The next request works normally after the interrupt.
        cid2 = await speak(controller, AGENT, say="Okay.")
        async with asyncio.timeout(10):
            await listener.wait_for(ConversationEnd, cid2)
        await listener.aclose()


async def test_switch_to_clapperboard_changes_codec_of_next_conversation(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    async with running_relay(livekit_server, room_name):
        controller = await join_room(room_name, "controller", attributes=CONTROLLER)
        listener = Listener(controller)
        name = await controller.local_participant.perform_rpc(
            destination_identity=AGENT, method=RPC_SET_MOTION_SOURCE, payload="clapperboard"
        )
        assert name == "clapperboard"
        cid = await speak(controller, AGENT, say="Clap.")
        async with asyncio.timeout(10):
            start = await listener.wait_for(ConversationStart, cid)
            await listener.wait_for(ConversationEnd, cid)
        assert isinstance(start, ConversationStart)
        assert listener.frame_count(cid) > 0
        await listener.aclose()


async def test_switching_source_mid_conversation_keeps_its_animation(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    """Regression: switching closed the old source at once, failing the playing conversation
    (and every queued one) to audio-only; the switch must apply from the next one on."""
    async with running_relay(livekit_server, room_name):
        controller = await join_room(room_name, "controller", attributes=CONTROLLER)
        listener = Listener(controller)
        text = "The avatar keeps moving its mouth while the motion source is switched."
        first = await speak(controller, AGENT, say=text)
        second = await speak(controller, AGENT, say="Queued before.")
        async with asyncio.timeout(10):
            await listener.wait_for(AnimationFrames, first)
        await controller.local_participant.perform_rpc(
            destination_identity=AGENT, method=RPC_SET_MOTION_SOURCE, payload="clapperboard"
        )
        third = await speak(controller, AGENT, say="After.")
        async with asyncio.timeout(30):
            ends = [await listener.wait_for(ConversationEnd, c) for c in (first, second, third)]
        assert not listener.of(AudioOnly)
        for cid, end in zip((first, second, third), ends, strict=True):
            assert isinstance(end, ConversationEnd)
            assert listener.frame_count(cid) == end.frame_count > 0
        starts = [listener.of(ConversationStart, c)[0] for c in (first, second, third)]
        channels = [len(s.channels) for s in starts]  # type: ignore[union-attr]
        assert channels[0] == channels[1] > channels[2]  # embedded, embedded, clapperboard
        await listener.aclose()


async def test_control_requests_are_rate_limited_per_caller(
    livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
) -> None:
    """Issue 14: a caller flooding the control plane is refused with 4429; others are not."""
    base = load_settings()
    settings = base.model_copy(
        update={"auth": base.auth.model_copy(update={"rate_burst": 3, "rate_per_second": 0.001})}
    )
    async with running_relay(livekit_server, room_name, settings=settings):
        flooder = await join_room(room_name, "flooder", attributes=CONTROLLER)
        other = await join_room(room_name, "other", attributes=CONTROLLER)
        codes: list[int] = []
        for _ in range(6):
            try:
                await flooder.local_participant.perform_rpc(
                    destination_identity=AGENT, method=RPC_INTERRUPT, payload=""
                )
                codes.append(0)
            except rtc.RpcError as exc:
                codes.append(exc.code)
        assert codes[:3] == [0, 0, 0]
        assert codes[3:] == [RPC_ERROR_RATE_LIMITED] * 3
        # Another caller has its own budget; an empty motion-source name is a bad request.
        assert (
            await other.local_participant.perform_rpc(
                destination_identity=AGENT, method=RPC_INTERRUPT, payload=""
            )
            == ""
        )
        with pytest.raises(rtc.RpcError) as info:
            await other.local_participant.perform_rpc(
                destination_identity=AGENT, method=RPC_SET_MOTION_SOURCE, payload=" "
            )
        assert info.value.code == RPC_ERROR_BAD_REQUEST


class CountingTts(EspeakTts):
    """espeak-ng, counting the syntheses it was asked for."""

    def __init__(self) -> None:
        super().__init__(TtsSettings())
        self.calls = 0

    async def synthesize(self, text: str) -> Pcm:
        self.calls += 1
        return await super().synthesize(text)


class TestDefect7CostlyWorkIsNotDoneForNothing:
    """Issue 13, defect 7: TTS ran before the queue-capacity check; a WAV of up to 10 MB was
    parsed on the event loop (holding the audio and frames of what was playing)."""

    async def test_a_full_relay_refuses_speak_text_before_synthesizing(
        self, livekit_server: LiveKitEndpoint, join_room: JoinRoom, room_name: str
    ) -> None:
        tts = CountingTts()
        async with running_relay(livekit_server, room_name, tts=tts) as rut:
            controller = await join_room(room_name, "controller", attributes=CONTROLLER)
            # One conversation playing (waiting for its audio) and a full queue behind it.
            taken = asyncio.Event()
            rut.relay.player.on(
                "conversation_event",
                lambda ev: taken.set() if isinstance(ev, PhaseChanged) else None,
            )
            handles = [await rut.relay.open_conversation()]
            async with asyncio.timeout(5):
                await taken.wait()
            for _ in range(rut.relay.player.options.max_pending):
                handles.append(await rut.relay.open_conversation())
            with pytest.raises(RelayBusyError):
                rut.relay.check_capacity()
            with pytest.raises(rtc.RpcError) as err:
                await speak(controller, AGENT, say="Too many.")
            assert err.value.code == RPC_ERROR_UNAVAILABLE
            assert tts.calls == 0
            rut.relay.interrupt_all()

    async def test_a_wav_is_decoded_off_the_event_loop(
        self,
        livekit_server: LiveKitEndpoint,
        join_room: JoinRoom,
        room_name: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        decoded_on: list[threading.Thread] = []
        real_parse = tts_module.parse_wav

        def recording_parse(data: bytes) -> Pcm:
            decoded_on.append(threading.current_thread())
            return real_parse(data)

        monkeypatch.setattr(tts_module, "parse_wav", recording_parse)
        async with running_relay(livekit_server, room_name):
            controller = await join_room(room_name, "controller", attributes=CONTROLLER)
            listener = Listener(controller)
            await speak(controller, AGENT, say=espeak_wav("Off the loop."))
            async with asyncio.timeout(15):
                await listener.wait_for(ConversationStart)
            assert decoded_on and threading.main_thread() not in decoded_on
            await listener.aclose()
