"""``python -m agent start|dev|connect ...``: the avatar-relay worker."""

from __future__ import annotations

import sys

from livekit.agents import cli

from .settings import SettingsError, load_settings
from .worker import build_server


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"avatar-relay: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    cli.run_app(build_server(settings))


if __name__ == "__main__":
    main()
