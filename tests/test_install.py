"""Issue 10: the built wheel works in a user's own project, exactly as the repository does.

A fresh virtual environment installs the wheel (not editable) offline from the dependency
wheels that scripts/setup.sh caches. A temporary project whose entry file is ``agent.py``
(the name LiveKit's starter templates use) imports the public API, and the installed
``avatar-relay`` console script serves a dispatched room through the real livekit-server.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
import venv
import wave
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import LOG_DIR
from relay_helpers import CONTROLLER, JoinRoom, Listener, espeak_wav

from agent.devserver import PROJECT_ROOT, LiveKitEndpoint, WorkerProcess, dispatch_relay
from avatar_relay.protocol import ConversationEnd
from avatar_relay.protocol.constants import ATTRIBUTE_ROLE, SPEAK_AUDIO_STREAM_TOPIC
from avatar_relay.settings import load_settings

sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
from deps_key import deps_key  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CACHE = Path(os.environ.get("AVATAR_RELAY_CACHE", Path.home() / ".cache" / "avatar-relay"))
WHEELHOUSE = CACHE / f"wheelhouse-{deps_key(PROJECT_ROOT / 'pyproject.toml')}"

USER_AGENT_PY = '''\
"""A user's own LiveKit project: its entry file is agent.py, like LiveKit's templates."""
import json

import avatar_relay
from avatar_relay import AvatarRelay, AvatarReceiver, HostModeController, build_server
from avatar_relay.protocol import ANIMATION_TOPIC

print(json.dumps({"all": sorted(avatar_relay.__all__), "topic": ANIMATION_TOPIC,
                  "relay": AvatarRelay.__module__, "file": avatar_relay.__file__}))
'''


def clean_env() -> dict[str, str]:
    """The environment without the developer's avatar-relay overrides or Python paths."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AVATAR_RELAY_") and k not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=clean_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


class Installed:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dist = root / "dist"
        self.project = root / "my-voice-agent"

    @property
    def wheel(self) -> Path:
        return next(self.dist.glob("avatar_relay-*.whl"))

    def make_venv(self, name: str, requirement: str) -> Path:
        """A fresh venv with ``requirement`` installed offline from the wheelhouse."""
        env_dir = self.root / name
        venv.create(env_dir, with_pip=True)
        python = env_dir / "bin" / "python"
        run(python, "-m", "pip", "install", "-q", "--no-index",
            "--find-links", WHEELHOUSE, requirement)  # fmt: skip
        return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if not (WHEELHOUSE / ".complete").is_file():
        pytest.fail(f"no dependency wheels at {WHEELHOUSE}: run scripts/setup.sh")
    inst = Installed(tmp_path_factory.mktemp("install"))
    # The sdist, then the wheel from the unpacked sdist (build's default): the wheel is made
    # from exactly what the sdist ships, never from a stale build/ directory of the checkout.
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", inst.dist, PROJECT_ROOT)
    inst.project.mkdir()
    (inst.project / "agent.py").write_text(USER_AGENT_PY)
    return inst


def test_wheel_installs_only_avatar_relay_with_its_defaults(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.startswith("avatar_relay-")}
    assert top_level == {"avatar_relay"}, top_level
    assert "avatar_relay/defaults.toml" in names and "avatar_relay/py.typed" in names
    assert list(installed.dist.glob("avatar_relay-*.tar.gz")), "no sdist was built"


@pytest.fixture(scope="module")
def agent_python(installed: Installed) -> Path:
    return installed.make_venv("venv-agent", f"{installed.wheel}[agent]")


def test_users_agent_py_imports_the_public_api(installed: Installed, agent_python: Path) -> None:
    out = json.loads(run(agent_python, "agent.py", cwd=installed.project))
    assert "site-packages" in out["file"], out["file"]  # the installed copy, not the checkout
    assert {"AvatarRelay", "AvatarReceiver", "HostModeController", "build_server"} <= set(
        out["all"]
    )
    assert out["topic"] == "avatar-relay.animation"


def test_installed_settings_equal_the_repository(installed: Installed, agent_python: Path) -> None:
    code = "from avatar_relay import load_settings; print(load_settings().model_dump_json())"
    installed_settings = json.loads(run(agent_python, "-c", code, cwd=installed.project))
    env = clean_env()
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        repo_settings = json.loads(load_settings().model_dump_json())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert installed_settings == repo_settings
    assert installed_settings["auth"]["attributes"] == {"avatar-relay.controller": "true"}


def test_participant_install_is_light(installed: Installed) -> None:
    """The base install (no extra) imports the client and protocol without livekit-agents,
    and its console script explains which extra the worker needs."""
    python = installed.make_venv("venv-participant", str(installed.wheel))
    code = (
        "import importlib.util, avatar_relay.client, avatar_relay.protocol as p\n"
        "assert importlib.util.find_spec('livekit.agents') is None\n"
        "from avatar_relay import AvatarReceiver, HostModeController\n"
        "m = p.Idle(seq=3, codec='arkit-u8', fps=25.0, channels=('jawOpen',), first_frame=0)\n"
        "assert p.decode_message(p.encode_message(m)) == m\n"
        "print('ok')\n"
    )
    assert run(python, "-c", code, cwd=installed.project).strip() == "ok"
    done = subprocess.run(
        [str(python.parent / "avatar-relay"), "start"],
        env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "avatar-relay[agent]" in done.stderr, done.stderr


@pytest.fixture
async def installed_worker(
    installed: Installed, agent_python: Path, livekit_server: LiveKitEndpoint
) -> AsyncIterator[WorkerProcess]:
    proc = WorkerProcess(
        livekit_server,
        command=(str(agent_python.parent / "avatar-relay"), "start"),
        cwd=installed.project,
        log_path=LOG_DIR / "installed-worker.log",
    )
    await proc.start()
    try:
        yield proc
    finally:
        await proc.aclose()


async def test_installed_console_script_serves_a_dispatched_room(
    livekit_server: LiveKitEndpoint,
    installed_worker: WorkerProcess,
    join_room: JoinRoom,
    room_name: str,
) -> None:
    wav = espeak_wav("The installed avatar speaks.")
    with wave.open(io.BytesIO(wav)) as w:
        duration = w.getnframes() / w.getframerate()
    room = await join_room(room_name, "viewer", attributes=CONTROLLER)
    listener = Listener(room)
    await dispatch_relay(livekit_server, room_name, "avatar-relay")
    async with asyncio.timeout(30):
        await listener.relay_found.wait()
    relay = next(p for p in room.remote_participants.values() if p.attributes.get(ATTRIBUTE_ROLE))
    await room.local_participant.send_bytes(
        wav, topic=SPEAK_AUDIO_STREAM_TOPIC, destination_identities=[relay.identity]
    )
    async with asyncio.timeout(duration + 15):
        end = await listener.wait_for(ConversationEnd)
        await listener.wait_audio_silent()
    assert isinstance(end, ConversationEnd) and end.frame_count > 0
    assert listener.frame_count(end.conversation_id) == end.frame_count
    assert listener.loud_seconds() >= duration * 0.7
    await listener.aclose()


async def test_example_voice_agent_greets_through_the_installed_avatar(
    installed: Installed,
    agent_python: Path,
    livekit_server: LiveKitEndpoint,
    join_room: JoinRoom,
    room_name: str,
) -> None:
    """examples/agent.py, copied into a project of its own and run on the installed wheel,
    greets a waiting user through the avatar: audio heard, frames received."""
    project = installed.root / "example-project"
    project.mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "examples" / "agent.py", project / "agent.py")
    worker = WorkerProcess(
        livekit_server,
        # `dev` binds the health endpoint to a free port (start binds 8081).
        command=(str(agent_python), "agent.py", "dev"),
        cwd=project,
        env={"AGENT_NAME": "greeter"},
        log_path=LOG_DIR / "example-agent.log",
    )
    await worker.start()
    try:
        listener = Listener(await join_room(room_name, "user"))
        await dispatch_relay(livekit_server, room_name, "greeter")
        async with asyncio.timeout(40):
            end = await listener.wait_for(ConversationEnd)
            await listener.wait_audio_silent()
        assert isinstance(end, ConversationEnd) and end.frame_count > 0
        assert listener.frame_count(end.conversation_id) == end.frame_count
        # Three sentences: espeak-ng pauses up to ~0.4 s between them.
        assert listener.loud_seconds(max_gap_s=0.6) > 1.0
        await listener.aclose()
    finally:
        await worker.aclose()
