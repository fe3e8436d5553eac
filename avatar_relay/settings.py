"""One validated settings object.

Two ways to get one, and nothing global is read unless asked for:

- ``Settings(motion={"source": "clapperboard"})``: the packaged defaults plus what you pass;
- ``load_settings()``: for deployed workers. Precedence (highest first): keyword overrides,
  environment variables ``AVATAR_RELAY_<SECTION>__<KEY>``, the TOML file named by
  ``AVATAR_RELAY_CONFIG``, then the packaged ``avatar_relay/defaults.toml``.

The model's field defaults and ``defaults.toml`` hold the same values (a test keeps them
equal), so an installed copy behaves exactly like the repository.
"""

from __future__ import annotations

import os
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .protocol.constants import ANIMATION_TOPIC, SUPPORTED_SAMPLE_RATES

DEFAULTS_RESOURCE = "defaults.toml"
"""The packaged defaults, shipped inside the wheel (read with importlib.resources)."""
CONFIG_PATH_ENV = "AVATAR_RELAY_CONFIG"

MotionSourceName = Literal["embedded", "clapperboard", "spatius"]
ParticipantKindName = Literal[
    "standard", "ingress", "egress", "sip", "agent", "connector", "bridge"
]
"""``rtc.ParticipantKind`` names without the ``PARTICIPANT_KIND_`` prefix, lowercase: the kinds
a caller can have (a test keeps this list equal to the SDK's enum)."""

LOOKAHEAD_LIMIT_MS: dict[str, int] = {"embedded": 120, "clapperboard": 500, "spatius": 500}
"""The largest ``motion.lookahead_ms`` each source takes. The embedded generator refuses more
(``avatar_relay.motion.embedded.MAX_LOOKAHEAD_MS``, kept equal by a test); the clapperboard
ignores it; for Spatius it is the time the audio waits for the service."""
RECOGNITION_MODULES = ("pocketsphinx", "soxr")
"""What ``motion.recognition = true`` needs: the optional extra ``recognition``."""


class SettingsError(ValueError):
    """The configuration is broken; the message names every bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentSettings(_Section):
    name: str = Field(default="avatar-relay", min_length=1, max_length=64)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8081, ge=0, le=65535)
    metrics_port: int | None = Field(default=9464, ge=0, le=65535)
    load_threshold: float = Field(default=0.7, gt=0.0)
    failover: bool = True
    max_rooms: int = Field(default=0, ge=0, le=10_000)
    rooms_per_core: float | None = Field(default=None, gt=0.0, le=1000.0)
    job_executor: Literal["shared", "process", "thread"] = "shared"
    room_hosts: int = Field(default=0, ge=0, le=256)
    idle_processes: int | None = Field(default=None, ge=0, le=64)
    ice_gathering: Literal["once", "continual"] = "once"
    single_peer_connection: bool = True


class AudioSettings(_Section):
    sample_rate: int = 24000
    queue_ms: int = Field(default=200, ge=20, le=2000)
    chunk_ms: int = Field(default=100, ge=10, le=200)
    transport: Literal["track", "data", "both"] = "track"

    @field_validator("chunk_ms")
    @classmethod
    def _whole_webrtc_frames(cls, value: int) -> int:
        if value % 10:
            raise ValueError("must be a multiple of 10 ms (WebRTC's frame)")
        return value

    @model_validator(mode="after")
    def _queue_holds_two_chunks(self) -> AudioSettings:
        if self.queue_ms < 2 * self.chunk_ms:
            raise ValueError(f"queue_ms must be at least 2 * chunk_ms ({2 * self.chunk_ms})")
        return self

    @field_validator("sample_rate")
    @classmethod
    def _supported_rate(cls, value: int) -> int:
        if value not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(f"must be one of {SUPPORTED_SAMPLE_RATES}")
        return value


class MotionSettings(_Section):
    source: MotionSourceName = "embedded"
    lookahead_ms: int = Field(default=100, ge=0, le=max(LOOKAHEAD_LIMIT_MS.values()))
    seed: int = 0
    stall_timeout_ms: int = Field(default=500, ge=50, le=10_000)
    spatius_telemetry: bool = False
    recognition: bool = False

    @model_validator(mode="after")
    def _fits_the_source(self) -> MotionSettings:
        limit = LOOKAHEAD_LIMIT_MS[self.source]
        if self.lookahead_ms > limit:
            raise ValueError(
                f"motion.lookahead_ms = {self.lookahead_ms} is more than the {self.source!r} "
                f"source takes ({limit})"
            )
        if self.recognition:
            missing = [m for m in RECOGNITION_MODULES if find_spec(m) is None]
            if missing:
                raise ValueError(
                    f"motion.recognition = true needs {', '.join(missing)}: "
                    "pip install 'avatar-relay[recognition]'"
                )
        return self


class RelaySettings(_Section):
    topic: str = Field(default=ANIMATION_TOPIC, min_length=1, max_length=128)
    idle_interval_ms: int = Field(default=200, ge=40, le=10_000)
    frames_per_message: int = Field(default=5, ge=1, le=10)
    max_speak_audio_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_speak_text_chars: int = Field(default=2000, ge=1, le=100_000)


class AuthSettings(_Section):
    dev_mode: bool = False
    allow_all: bool = False
    identities: tuple[str, ...] = ()
    attributes: dict[str, str] = Field(default_factory=lambda: {"avatar-relay.controller": "true"})
    kinds: tuple[ParticipantKindName, ...] = ()
    rate_per_second: float = Field(default=2.0, gt=0, le=1000)
    rate_burst: int = Field(default=10, ge=1, le=10_000)

    @model_validator(mode="after")
    def _allow_all_only_in_dev(self) -> AuthSettings:
        if self.allow_all and not self.dev_mode:
            raise ValueError("auth.allow_all is only permitted with auth.dev_mode = true")
        return self


class TtsSettings(_Section):
    voice: str = Field(default="en-us", pattern=r"^[A-Za-z0-9_+\-]{1,32}$")
    words_per_minute: int = Field(default=165, ge=80, le=450)


class Settings(BaseModel):
    """Everything a relay and its worker need, validated once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentSettings = AgentSettings()
    audio: AudioSettings = AudioSettings()
    motion: MotionSettings = MotionSettings()
    relay: RelaySettings = RelaySettings()
    auth: AuthSettings = AuthSettings()
    tts: TtsSettings = TtsSettings()


class _LayeredSettings(BaseSettings, Settings):
    """``Settings`` read from the packaged defaults, a config file and the environment."""

    model_config = SettingsConfigDict(
        env_prefix="AVATAR_RELAY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        with resources.as_file(resources.files(__package__).joinpath(DEFAULTS_RESOURCE)) as f:
            files = [f]
        override = os.environ.get(CONFIG_PATH_ENV)
        if override:
            files.append(Path(override))
        # Later files win over earlier ones; the environment wins over every file.
        toml_sources = [
            TomlConfigSettingsSource(settings_cls, toml_file=f) for f in reversed(files)
        ]
        return (init_settings, env_settings, *toml_sources)


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )


def make_settings(**overrides: object) -> Settings:
    """The packaged defaults with ``overrides`` (sections as dicts); reads no file or variable.

    Raises SettingsError (a ValueError) naming every bad key.
    """
    try:
        return Settings.model_validate(overrides)
    except ValidationError as exc:
        raise SettingsError(f"invalid avatar-relay settings: {_describe(exc)}") from exc


def load_settings(**overrides: object) -> Settings:
    """Settings of a deployed worker: defaults, config file, environment, then ``overrides``.

    Raises SettingsError naming every problem.
    """
    override = os.environ.get(CONFIG_PATH_ENV)
    if override and not Path(override).is_file():
        raise SettingsError(f"{CONFIG_PATH_ENV}={override!r} is not a readable file")
    try:
        layered = _LayeredSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(f"invalid avatar-relay configuration: {_describe(exc)}") from exc
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise SettingsError(f"invalid avatar-relay configuration file: {exc}") from exc
    return Settings.model_validate(layered.model_dump())
