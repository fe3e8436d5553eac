"""Hypothesis strategies producing valid protocol v1 messages of every type."""

from __future__ import annotations

from hypothesis import strategies as st

from avatar_relay.protocol import (
    ARKIT_52,
    HEAD_POSE,
    MAX_INT,
    SUPPORTED_SAMPLE_RATES,
    AnimationFrames,
    AudioData,
    AudioOnly,
    AudioTransport,
    ConversationEnd,
    ConversationStart,
    Idle,
    Interrupt,
    Message,
)

wire_ints = st.integers(min_value=0, max_value=MAX_INT)
small_ints = st.integers(min_value=0, max_value=10_000)
cids = st.text(min_size=1, max_size=64)
fps_values = st.floats(min_value=1.0, max_value=240.0, allow_nan=False)
names = st.text(min_size=1, max_size=64)
opaque_frames = st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=20)


@st.composite
def starts(draw: st.DrawFn) -> ConversationStart:
    arkit = draw(st.booleans())
    if arkit:
        pool = ARKIT_52 + HEAD_POSE
        channels = tuple(
            draw(st.lists(st.sampled_from(pool), min_size=1, max_size=55, unique=True))
        )
        codec = "arkit-u8"
    else:
        channels = tuple(draw(st.lists(names, max_size=8, unique=True)))
        codec = draw(names.filter(lambda n: n != "arkit-u8"))
    transports: list[AudioTransport] = ["track", "data", "both"]
    transport = draw(st.sampled_from(transports))
    track = draw(st.text(min_size=0 if transport == "data" else 1, max_size=256))
    return ConversationStart(
        conversation_id=draw(cids),
        seq=0,  # a start is always message 0 of its conversation
        codec=codec,
        fps=draw(fps_values),
        channels=channels,
        sample_rate=draw(st.sampled_from(SUPPORTED_SAMPLE_RATES)),
        audio_track=track,
        audio_transport=transport,
        lookahead_ms=draw(st.integers(min_value=0, max_value=60_000)),
        sent_at_us=draw(wire_ints),
    )


@st.composite
def idles(draw: st.DrawFn) -> Idle:
    channels = tuple(draw(st.lists(st.sampled_from(HEAD_POSE), min_size=1, unique=True)))
    frames = draw(st.lists(st.binary(min_size=len(channels), max_size=len(channels)), max_size=10))
    return Idle(
        seq=draw(wire_ints),
        codec="arkit-u8",
        fps=draw(fps_values),
        channels=channels,
        first_frame=draw(small_ints),
        frames=tuple(frames),
        sent_at_us=draw(wire_ints),
    )


messages: st.SearchStrategy[Message] = st.one_of(
    starts(),
    st.builds(
        AnimationFrames,
        conversation_id=cids,
        seq=wire_ints,
        first_frame=small_ints,
        frames=opaque_frames.map(tuple),
        sent_at_us=wire_ints,
    ),
    st.builds(
        AudioData,
        conversation_id=cids,
        seq=wire_ints,
        first_sample=small_ints,
        pcm=st.binary(min_size=1, max_size=500).map(lambda b: b + b),
        sent_at_us=wire_ints,
    ),
    st.builds(
        ConversationEnd,
        conversation_id=cids,
        seq=wire_ints,
        frame_count=wire_ints,
        audio_samples=wire_ints,
        sent_at_us=wire_ints,
    ),
    st.builds(Interrupt, conversation_id=cids, seq=wire_ints, sent_at_us=wire_ints),
    st.builds(
        AudioOnly,
        conversation_id=cids,
        seq=wire_ints,
        reason=st.text(max_size=256),
        sent_at_us=wire_ints,
    ),
    idles(),
)
