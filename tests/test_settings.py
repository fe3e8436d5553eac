"""Settings: defaults, environment and file overrides, and clear errors for broken configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from livekit import rtc

import avatar_relay.settings as settings_module
from agent.devserver import PROJECT_ROOT
from avatar_relay.motion import EmbeddedMotionSource, motion_source_from_settings
from avatar_relay.motion.embedded import MAX_LOOKAHEAD_MS as EMBEDDED_MAX_LOOKAHEAD_MS
from avatar_relay.protocol.constants import ANIMATION_TOPIC
from avatar_relay.relay.auth import KIND_PREFIX, kind_name
from avatar_relay.settings import (
    CONFIG_PATH_ENV,
    LOOKAHEAD_LIMIT_MS,
    ParticipantKindName,
    Settings,
    SettingsError,
    load_settings,
    make_settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own AVATAR_RELAY_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("AVATAR_RELAY_"):
            monkeypatch.delenv(name)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "override.toml"
    path.write_text(text)
    return path


def test_defaults_come_from_default_toml() -> None:
    s = load_settings()
    assert s.agent.name == "avatar-relay"
    assert s.audio.sample_rate == 24000 and s.audio.queue_ms == 200
    assert s.audio.chunk_ms == 100 and s.audio.transport == "track"
    assert s.relay.frames_per_message == 5
    assert s.motion.source == "embedded" and s.motion.lookahead_ms == 100
    assert s.relay.topic == ANIMATION_TOPIC
    assert not s.auth.allow_all and not s.auth.dev_mode
    assert s.auth.attributes == {"avatar-relay.controller": "true"}


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_RELAY_MOTION__SOURCE", "clapperboard")
    monkeypatch.setenv("AVATAR_RELAY_AUDIO__SAMPLE_RATE", "16000")
    monkeypatch.setenv("AVATAR_RELAY_MOTION__LOOKAHEAD_MS", "40")
    monkeypatch.setenv("AVATAR_RELAY_RELAY__TOPIC", "custom.topic")
    monkeypatch.setenv("AVATAR_RELAY_AGENT__METRICS_PORT", "12345")
    s = load_settings()
    assert s.motion.source == "clapperboard"
    assert s.audio.sample_rate == 16000
    assert s.motion.lookahead_ms == 40
    assert s.relay.topic == "custom.topic"
    assert s.agent.metrics_port == 12345
    # Keys not overridden keep their defaults.
    assert s.audio.queue_ms == 200 and s.agent.name == "avatar-relay"


def test_config_file_overrides_defaults_and_env_overrides_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write_config(
        tmp_path,
        "[audio]\nsample_rate = 48000\nqueue_ms = 300\n[auth]\ndev_mode = true\nallow_all = true\n"
        '[motion]\nsource = "clapperboard"\n',
    )
    monkeypatch.setenv(CONFIG_PATH_ENV, str(path))
    s = load_settings()
    assert s.audio.sample_rate == 48000 and s.audio.queue_ms == 300
    assert s.auth.dev_mode and s.auth.allow_all
    assert s.motion.source == "clapperboard"
    assert s.motion.lookahead_ms == 100  # untouched keys keep the default file's values
    monkeypatch.setenv("AVATAR_RELAY_MOTION__SOURCE", "embedded")
    assert load_settings().motion.source == "embedded"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"AVATAR_RELAY_AUDIO__SAMPLE_RATE": "12345"}, "audio.sample_rate"),
        ({"AVATAR_RELAY_AUDIO__SAMPLE_RATE": "fast"}, "audio.sample_rate"),
        ({"AVATAR_RELAY_AUDIO__QUEUE_MS": "5"}, "audio.queue_ms"),
        ({"AVATAR_RELAY_MOTION__SOURCE": "puppet"}, "motion.source"),
        ({"AVATAR_RELAY_MOTION__LOOKAHEAD_MS": "-1"}, "motion.lookahead_ms"),
        # issue 13, defect 5: more than the embedded source takes fails here, not in every job
        ({"AVATAR_RELAY_MOTION__LOOKAHEAD_MS": "300"}, "motion.lookahead_ms = 300"),
        ({"AVATAR_RELAY_AUTH__ALLOW_ALL": "true"}, "auth.allow_all"),
        ({"AVATAR_RELAY_AUDIO__TRANSPORT": "pigeon"}, "audio.transport"),
    ],
)
def test_bad_environment_values_name_the_key(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], key: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert key in str(err.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[audio]\nsample_rate = 44000\n", "audio.sample_rate"),
        ("[audio]\nsample_rte = 16000\n", "audio.sample_rte"),
        ("[bogus]\nx = 1\n", "bogus"),
        ("[auth]\nallow_all = true\n", "auth.allow_all"),
        ('[relay]\ntopic = ""\n', "relay.topic"),
    ],
)
def test_bad_config_file_values_name_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, key: str
) -> None:
    monkeypatch.setenv(CONFIG_PATH_ENV, str(write_config(tmp_path, text)))
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert key in str(err.value)


def test_malformed_toml_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CONFIG_PATH_ENV, str(write_config(tmp_path, "[audio\nsample_rate = 1\n")))
    with pytest.raises(SettingsError, match="configuration file"):
        load_settings()


def test_missing_config_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv(CONFIG_PATH_ENV, str(missing))
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert CONFIG_PATH_ENV in str(err.value) and str(missing) in str(err.value)


def test_allow_all_is_accepted_in_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_RELAY_AUTH__ALLOW_ALL", "true")
    monkeypatch.setenv("AVATAR_RELAY_AUTH__DEV_MODE", "true")
    assert load_settings().auth.allow_all


def test_several_problems_are_all_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_RELAY_AUDIO__SAMPLE_RATE", "1")
    monkeypatch.setenv("AVATAR_RELAY_MOTION__SOURCE", "puppet")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "audio.sample_rate" in str(err.value) and "motion.source" in str(err.value)


@pytest.mark.parametrize(
    ("extra_env", "expected"),
    [
        ({"AVATAR_RELAY_AUDIO__SAMPLE_RATE": "12345"}, "audio.sample_rate"),
        ({CONFIG_PATH_ENV: "/nonexistent/avatar-relay.toml"}, CONFIG_PATH_ENV),
    ],
)
def test_worker_cli_exits_2_with_a_clear_message_on_broken_config(
    extra_env: dict[str, str], expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_RELAY_")}
    # No server is needed: the settings are validated before anything connects.
    env.update(LIVEKIT_URL="ws://127.0.0.1:9", LIVEKIT_API_KEY="k", LIVEKIT_API_SECRET="s")
    env.update(extra_env)
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "start"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert proc.stderr.startswith("avatar-relay:")
    assert "Traceback" not in proc.stderr


def test_packaged_defaults_equal_the_models_defaults() -> None:
    """Regression (issue 10): installed copies lacked config/default.toml and silently fell
    back to model defaults that differed (auth.attributes was {}). Now the defaults file ships
    in the package and both hold the same values."""
    assert load_settings() == Settings()
    assert Settings().auth.attributes == {"avatar-relay.controller": "true"}


def test_make_settings_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_RELAY_MOTION__SOURCE", "clapperboard")
    assert make_settings().motion.source == "embedded"
    assert make_settings(motion={"lookahead_ms": 60}).motion.lookahead_ms == 60


def test_make_settings_names_the_bad_key() -> None:
    with pytest.raises(SettingsError, match=r"motion\.lookahead_ms"):
        make_settings(motion={"lookahead_ms": -1})
    with pytest.raises(ValueError, match=r"relay\.nonsense"):
        make_settings(relay={"nonsense": 1})


class TestDefect5SettingsTheSourcesReject:
    """Issue 13, defect 5: values that validated but failed every job, or never matched."""

    def test_a_lookahead_the_embedded_source_refuses_is_refused_naming_the_key(self) -> None:
        with pytest.raises(SettingsError, match=r"motion\.lookahead_ms = 121 .*'embedded'"):
            make_settings(motion={"lookahead_ms": 121})
        # The bound belongs to the chosen source: Spatius waits up to 500 ms for the service.
        assert make_settings(motion={"source": "spatius", "lookahead_ms": 400}).motion
        with pytest.raises(SettingsError, match=r"motion\.lookahead_ms"):
            make_settings(motion={"source": "spatius", "lookahead_ms": 501})

    def test_every_accepted_lookahead_builds_the_source(self) -> None:
        for source, limit in LOOKAHEAD_LIMIT_MS.items():
            if source != "spatius":  # needs the vendor's credentials; bound checked above
                settings = make_settings(motion={"source": source, "lookahead_ms": limit})
                assert motion_source_from_settings(settings).name == source
        assert LOOKAHEAD_LIMIT_MS["embedded"] == EMBEDDED_MAX_LOOKAHEAD_MS

    def test_auth_kinds_are_exactly_the_sdks_participant_kinds(self) -> None:
        sdk = {name.removeprefix(KIND_PREFIX).lower() for name in rtc.ParticipantKind.keys()}
        assert set(get_args(ParticipantKindName)) == sdk
        with pytest.raises(SettingsError, match=r"auth\.kinds"):
            make_settings(auth={"kinds": ["robot"]})
        for value in rtc.ParticipantKind.values():
            name = kind_name(value)
            assert name is not None and make_settings(auth={"kinds": [name]}).auth.kinds

    def test_recognition_is_switched_on_by_its_key_only(self) -> None:
        settings = make_settings(motion={"lookahead_ms": 120})
        assert not settings.motion.recognition
        source = motion_source_from_settings(settings)
        assert isinstance(source, EmbeddedMotionSource) and not source.recognition
        on = make_settings(motion={"recognition": True})
        source = motion_source_from_settings(on)
        assert isinstance(source, EmbeddedMotionSource) and source.recognition

    def test_recognition_without_its_extra_is_refused_naming_the_key(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(settings_module, "RECOGNITION_MODULES", ("no_such_module_xyz",))
        with pytest.raises(SettingsError, match=r"motion\.recognition = true needs"):
            make_settings(motion={"recognition": True})
