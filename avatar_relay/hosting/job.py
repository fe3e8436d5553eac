"""A livekit-agents job whose room is served by a room host instead of its own process.

The job keeps everything livekit-agents gives a job (dispatch, load, drain, shutdown hooks)
but does not join the room itself: it hands the room to a host over a link and mirrors the
link's life. The host joins as the job's own participant, with a token carrying the same
claims as the job's (identity, kind, attributes, grants), signed with the worker's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from livekit import api
from livekit.agents import JobContext

from . import wire
from .pool import current_pool

logger = logging.getLogger("avatar_relay.hosting")

START_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 8.0


class HostedRoomError(RuntimeError):
    """The room host could not serve the room (it says why)."""


def job_token(ctx: JobContext) -> str:
    """A token for the job's participant with the job token's claims, signed by this worker."""
    claims = ctx.token_claims()
    key, secret = os.environ.get("LIVEKIT_API_KEY"), os.environ.get("LIVEKIT_API_SECRET")
    if not key or not secret:
        raise HostedRoomError("a shared worker needs LIVEKIT_API_KEY and LIVEKIT_API_SECRET set")
    token = api.AccessToken(key, secret)
    token = token.with_identity(claims.identity).with_name(claims.name)
    if claims.kind:
        token = token.with_kind(claims.kind)  # type: ignore[arg-type]
    if claims.metadata:
        token = token.with_metadata(claims.metadata)
    if claims.attributes:
        token = token.with_attributes(claims.attributes)
    if claims.video is not None:
        token = token.with_grants(claims.video)
    return token.to_jwt()


class HostedRoom:
    """The job's side of one link: started, then ended by either side."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._read_task: asyncio.Task[None] | None = None

    async def start(self, url: str, token: str) -> str:
        """Ask the host to serve the room; returns the room's name once it is served."""
        await wire.send(self._writer, {"op": "host", "url": url, "token": token})
        reply = await asyncio.wait_for(wire.receive(self._reader), START_TIMEOUT_S)
        if reply["op"] != "started":
            raise HostedRoomError(str(reply.get("error", reply)))
        self._read_task = asyncio.create_task(self._read_until_end(), name="hosted-room.link")
        return str(reply.get("room", ""))

    async def _read_until_end(self) -> None:
        reason = "room host closed the link"
        with contextlib.suppress(wire.LinkClosedError):
            while True:
                message = await wire.receive(self._reader)
                if message["op"] == "ended":
                    reason = str(message.get("reason", "ended"))
                    break
        if not self._ended.done():
            self._ended.set_result(reason)

    async def ended(self) -> str:
        """Why the hosted room ended (room empty, host gone, ...)."""
        return await asyncio.shield(self._ended)

    async def aclose(self) -> None:
        """Ask the host to end the room (Interrupt/End sent, track withdrawn) and wait."""
        if not self._ended.done():
            with contextlib.suppress(Exception):
                await wire.send(self._writer, {"op": "close"})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._ended), CLOSE_TIMEOUT_S)
        if self._read_task is not None:
            self._read_task.cancel()
            await asyncio.gather(self._read_task, return_exceptions=True)
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


async def open_hosted_room(ctx: JobContext) -> tuple[HostedRoom, str]:
    """Hand the job's room to the least busy host; returns the link and the host's socket."""
    pool = current_pool()
    socket_path = pool.choose()
    try:
        reader, writer = await asyncio.open_unix_connection(socket_path, limit=wire.MAX_LINE)
        hosted = HostedRoom(reader, writer)
        try:
            url = os.environ.get("LIVEKIT_URL")
            if not url:
                raise HostedRoomError("a shared worker needs LIVEKIT_URL set")
            await hosted.start(url, job_token(ctx))
        except BaseException:
            await hosted.aclose()
            raise
    except BaseException:
        pool.release(socket_path)
        raise
    return hosted, socket_path
