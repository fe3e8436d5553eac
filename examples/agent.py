"""A voice agent with an avatar: the smallest complete livekit-agents project using avatar-relay.

    pip install 'avatar-relay[agent]'
    export LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    python agent.py start            # or: dev

Dispatch it by name (``lk dispatch create --agent-name greeter --room my-room``). It greets
whoever joins through the avatar; every participant sees the mouth move with the voice.
It speaks with espeak-ng so that it runs offline; put your own STT, LLM and TTS plugins in
the ``AgentSession`` for a real conversation.
"""

from __future__ import annotations

import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli

from avatar_relay import AvatarRelay
from avatar_relay.relay import EspeakAgentTTS

server = AgentServer()


@server.rtc_session(agent_name=os.environ.get("AGENT_NAME", "greeter"))
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    session: AgentSession[None] = AgentSession(tts=EspeakAgentTTS())

    # Before session.start: the session's audio goes only to the avatar's track.
    # AvatarRelay.start registers its own shutdown callback with the job.
    avatar = AvatarRelay(motion_source="embedded", lookahead_ms=100)
    await avatar.start(session, ctx.room)

    await session.start(agent=Agent(instructions="You greet people."), room=ctx.room)
    await session.say("Hello! I am your avatar. Watch my mouth move as I speak.")


if __name__ == "__main__":
    cli.run_app(server)
