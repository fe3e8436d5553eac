"""Run the local Spatius server: ``python -m tests.spatius_server --port 8790``."""

from __future__ import annotations

import argparse
import asyncio
import logging

from .server import LocalSpatiusServer


async def _serve(args: argparse.Namespace) -> None:
    server = LocalSpatiusServer(
        api_key=args.api_key,
        app_id=args.app_id,
        avatar_id=args.avatar_id,
        host=args.host,
        port=args.port,
        generator=args.generator,
    )
    server.faults.frame_delay = args.frame_delay
    await server.start()
    print(f"SPATIUS_API_KEY={server.api_key}")
    print(f"SPATIUS_APP_ID={server.app_id}")
    print(f"SPATIUS_AVATAR_ID={server.avatar_id}")
    print(f"SPATIUS_CONSOLE_ENDPOINT_URL={server.console_url}")
    print(f"SPATIUS_INGRESS_ENDPOINT_URL={server.ingress_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default="local-api-key")
    parser.add_argument("--app-id", default="local-app")
    parser.add_argument("--avatar-id", default="local-avatar")
    parser.add_argument("--generator", choices=["energy", "embedded"], default="energy")
    parser.add_argument(
        "--frame-delay", type=float, default=0.0, help="seconds before each animation message"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
