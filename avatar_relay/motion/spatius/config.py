"""Which Spatius account, avatar and endpoints: constructor arguments or environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..base import MotionError

CODEC = "spatius"
"""Codec name of the relayed frames: one serialized SDK ``Message`` envelope per frame."""

ENV_API_KEY = "SPATIUS_API_KEY"
ENV_APP_ID = "SPATIUS_APP_ID"
ENV_AVATAR_ID = "SPATIUS_AVATAR_ID"
ENV_REGION = "SPATIUS_REGION"
ENV_CONSOLE_URL = "SPATIUS_CONSOLE_ENDPOINT"
ENV_INGRESS_URL = "SPATIUS_INGRESS_ENDPOINT"
"""The vendor's own names (its LiveKit plugin and docs)."""
ENV_ALIASES: Mapping[str, str] = {
    ENV_CONSOLE_URL: "SPATIUS_CONSOLE_ENDPOINT_URL",
    ENV_INGRESS_URL: "SPATIUS_INGRESS_ENDPOINT_URL",
}
"""Our earlier names, still read when the vendor's are unset."""


@dataclass(frozen=True, slots=True)
class SpatiusConfig:
    """Credentials and endpoints, each from a constructor argument or its environment variable."""

    api_key: str
    app_id: str
    avatar_id: str
    region: str
    """``auto`` asks the vendor's bootstrap API; ignored when both endpoint URLs are set."""
    console_endpoint_url: str
    ingress_endpoint_url: str

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | None,
        app_id: str | None,
        avatar_id: str | None,
        region: str | None,
        console_endpoint_url: str | None,
        ingress_endpoint_url: str | None,
        environ: Mapping[str, str],
    ) -> SpatiusConfig:
        def pick(value: str | None, variable: str, *, required: bool) -> str:
            if value is None:
                value = environ.get(variable, "") or environ.get(ENV_ALIASES.get(variable, ""), "")
            chosen = value.strip()
            if required and not chosen:
                raise MotionError(
                    f"spatius: {variable} is not set (set the environment variable "
                    f"or pass it to SpatiusMotionSource)"
                )
            return chosen

        return cls(
            api_key=pick(api_key, ENV_API_KEY, required=True),
            app_id=pick(app_id, ENV_APP_ID, required=True),
            avatar_id=pick(avatar_id, ENV_AVATAR_ID, required=True),
            region=pick(region, ENV_REGION, required=False) or "auto",
            console_endpoint_url=pick(console_endpoint_url, ENV_CONSOLE_URL, required=False),
            ingress_endpoint_url=pick(ingress_endpoint_url, ENV_INGRESS_URL, required=False),
        )


