"""A room host: the relays of many rooms on one event loop, in a process of its own.

Why: each process that holds an rtc room pays the rtc runtime, its threads and an event loop;
per room that was most of the relay's cost (docs/BENCHMARKS.md, "Cost per room"). A host
serves every room a worker's jobs hand it (``agent.job_executor = "shared"``), and a worker
runs a few hosts (``agent.room_hosts``, one per CPU by default) so one host's fault stays in
its share of rooms.

Containment: every room runs in its own task; an exception in one room ends that room only
(its job ends, and the failover reconciler dispatches the room again). A host that dies ends
only its own rooms' jobs; the worker starts a new host.

Run by :class:`avatar_relay.hosting.pool.HostPool`: ``python -m avatar_relay.hosting.host
--socket PATH``. It prints ``ready`` once it listens and exits when its stdin closes (the
worker went away).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys

from livekit import api, rtc

from ..protocol.constants import ATTRIBUTE_ROLE, ROLE_RELAY
from ..rtc_logs import stop_forwarding_rtc_logs
from ..serving import RoomService, humans, room_options
from ..settings import Settings, SettingsError, load_settings
from . import wire

logger = logging.getLogger("avatar_relay.hosting")

CONNECT_TIMEOUT_S = 20.0
CLOSE_TIMEOUT_S = 5.0
"""How long a room's service may take to end its conversation and withdraw its track."""
HAND_BACK_TIMEOUT_S = 20.0
"""How long a host stays in a dead worker's room, dispatching it again, before it leaves it
(the reconcilers take over from there)."""
HAND_BACK_RETRY_S = 4.0
"""A dispatch that brought no relay in this long is made again (a duplicate relay, if the
first was only slow, is removed by the reconcilers: the first to join stays)."""


class RoomHost:
    """Serves one hosted room per accepted link (see :mod:`avatar_relay.hosting.wire`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._links: set[asyncio.Task[None]] = set()
        self._worker_gone = False
        self._closing = False

    @property
    def rooms(self) -> int:
        return len(self._links)

    async def serve_link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            await self._host_room(reader, writer)
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # Cancelled by aclose(): the room is closed; end the handler normally, because
            # asyncio's stream server logs a cancelled handler as an error with a traceback.
        except Exception:
            logger.exception("hosted room failed")
        finally:
            self._links.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _host_room(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await wire.receive(reader)
        if request["op"] != "host" or not all(
            isinstance(request.get(k), str) for k in ("url", "token")
        ):
            await wire.send(writer, {"op": "failed", "error": "expected a host request"})
            return
        room = rtc.Room()
        ended = asyncio.get_running_loop().create_future()

        def end(reason: str) -> None:
            if not ended.done():
                ended.set_result(reason)

        room.on("disconnected", lambda *_: end("room disconnected"))
        service: RoomService | None = None
        orphaned = False
        try:
            try:
                await asyncio.wait_for(
                    room.connect(request["url"], request["token"], room_options(self._settings)),
                    CONNECT_TIMEOUT_S,
                )
                service = RoomService(room, self._settings, on_empty=lambda: end("room empty"))
                await service.start()
            except Exception as exc:
                logger.warning("room not hosted: %r", exc)
                await wire.send(writer, {"op": "failed", "error": repr(exc)})
                return
            await wire.send(writer, {"op": "started", "room": room.name})
            link_task = asyncio.ensure_future(wire.receive(reader))
            try:
                await asyncio.wait([link_task, ended], return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                orphaned = self._worker_gone
                raise
            finally:
                link_task.cancel()
            if not ended.done() and link_task.exception() is not None:
                orphaned = True  # the link broke without a close: its job is gone
            reason = ended.result() if ended.done() else "job closed the link"
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(service.aclose(), CLOSE_TIMEOUT_S)
            with contextlib.suppress(Exception):
                await wire.send(writer, {"op": "ended", "reason": reason})
        finally:
            try:
                if service is not None:
                    await service.aclose()
                if orphaned and self._settings.agent.failover:
                    await self._hand_back(room, request["url"])
            finally:
                with contextlib.suppress(Exception):
                    await room.disconnect()

    async def _hand_back(self, room: rtc.Room, url: str) -> None:
        """The job that held ``room`` died with its worker: dispatch the room again now, and
        again until a new relay has joined.

        Otherwise the room would wait for the other workers' reconcilers, which wait 6 s for
        a relay they never saw (a relay seen alive is replaced within ~3 s of its heartbeat
        stopping; one that leaves cleanly leaves no stale heartbeat behind). A dispatch made
        the instant the worker died may still be given to it (the server has not noticed its
        death yet), so the host stays in the room, without its relay, until a relay appears.
        """
        name = room.name
        relay_seen = asyncio.Event()

        def check(*_: object) -> None:
            if any(
                p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
                and p.attributes.get(ATTRIBUTE_ROLE) == ROLE_RELAY
                for p in room.remote_participants.values()
            ):
                relay_seen.set()

        room.on("participant_connected", check)
        room.on("participant_attributes_changed", check)
        check()  # another reconciler may have been quicker
        attempts = 0
        try:
            async with asyncio.timeout(HAND_BACK_TIMEOUT_S), api.LiveKitAPI(url) as lk:
                while room.isconnected() and humans(room) and not relay_seen.is_set():
                    attempts += 1
                    await lk.agent_dispatch.create_dispatch(
                        api.CreateAgentDispatchRequest(
                            agent_name=self._settings.agent.name, room=name
                        )
                    )
                    logger.warning(
                        "worker gone; room dispatched again",
                        extra={"room": name, "attempt": attempts},
                    )
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(HAND_BACK_RETRY_S):
                            await relay_seen.wait()
        except TimeoutError:
            logger.warning(
                "no relay joined the room handed back; the reconcilers take over",
                extra={"room": name, "attempts": attempts},
            )
        except Exception as exc:
            logger.warning("room not handed back: %r", exc, extra={"room": name})
        finally:
            room.off("participant_connected", check)
            room.off("participant_attributes_changed", check)

    async def aclose(self, *, worker_gone: bool = False) -> None:
        """End every hosted room (their jobs see the links close).

        ``worker_gone``: the worker died, so its rooms are dispatched again before they are
        left (when failover is on and someone is still in them).
        """
        self._worker_gone = worker_gone
        self._closing = True
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)


async def run_host(socket_path: str, settings: Settings) -> None:
    """Serve links on ``socket_path`` until stdin closes."""
    host = RoomHost(settings)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    server = await asyncio.start_unix_server(host.serve_link, path=socket_path, limit=wire.MAX_LINE)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    logger.info("room host ready", extra={"pid": os.getpid(), "socket": socket_path})

    async def _watch_stdin() -> None:
        while await reader.read(4096):
            pass
        stdin_closed.set_result(None)

    watch = asyncio.create_task(_watch_stdin())
    try:
        await stdin_closed
    finally:
        watch.cancel()
        server.close()
        await host.aclose(worker_gone=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)


_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _WithExtras(logging.Formatter):
    """Appends a record's ``extra`` fields (room, pid ...) as JSON, as the worker's logs do."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        return f"{text} {json.dumps(extras, default=str)}" if extras else text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m avatar_relay.hosting.host")
    parser.add_argument("--socket", required=True)
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_WithExtras("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"avatar-relay room host: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    # Its worker decides when it ends (stdin closes): a Ctrl-C meant for the worker reaches
    # the whole process group, and the worker first drains its jobs, which close their rooms.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_forwarding_rtc_logs()
    asyncio.run(run_host(args.socket, settings))


if __name__ == "__main__":
    main()
