"""Shared fixtures: a real livekit-server per test session, and real rtc participants."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from livekit import api, rtc

from agent.devserver import LiveKitEndpoint, LocalLiveKitServer

LOG_DIR = Path(os.environ.get("AVATAR_RELAY_TEST_LOGS", "/tmp/avatar-relay-test-logs"))


@pytest.fixture(scope="session")
async def livekit_server() -> AsyncIterator[LiveKitEndpoint]:
    """A real livekit-server on 127.0.0.1 with free ports; its log is printed if it fails."""
    server = LocalLiveKitServer(log_dir=LOG_DIR)
    endpoint = await server.start()
    try:
        yield endpoint
    finally:
        await server.aclose()


def make_token(
    endpoint: LiveKitEndpoint,
    identity: str,
    room: str,
    *,
    attributes: dict[str, str] | None = None,
    kind: str = "standard",
) -> str:
    """A join token for a test participant."""
    token = (
        api.AccessToken(endpoint.api_key, endpoint.api_secret)
        .with_identity(identity)
        .with_kind(kind)  # type: ignore[arg-type]
        .with_grants(api.VideoGrants(room_join=True, room=room))
    )
    if attributes:
        token = token.with_attributes(attributes)
    return token.to_jwt()


@pytest.fixture
def room_name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def join_room(
    livekit_server: LiveKitEndpoint,
) -> AsyncIterator[object]:
    """Factory joining real rtc participants; every room is disconnected after the test."""
    rooms: list[rtc.Room] = []

    async def _join(
        room: str,
        identity: str,
        *,
        attributes: dict[str, str] | None = None,
        kind: str = "standard",
    ) -> rtc.Room:
        r = rtc.Room()
        await r.connect(
            livekit_server.url,
            make_token(livekit_server, identity, room, attributes=attributes, kind=kind),
        )
        rooms.append(r)
        return r

    yield _join
    for r in rooms:
        await r.disconnect()
