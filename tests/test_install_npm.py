"""Issue 10: the npm package as a web developer gets it, in real Chromium against the stack.

``npm pack`` the client in web/, install the tarball (with livekit-client, its peer) into a
project of its own outside the repository, type-check and bundle that project's app, which
imports only ``avatar-relay-client`` and ``livekit-client`` by name, and serve the bundle
from the demo stack (livekit-server + worker + token endpoint). The page joins, makes the
avatar speak, and must hear the audio (WebAudio energy and onsets on the played track) and
receive the conversation's frames (and open the mouth with them).

The installed project is cached in ~/.cache/avatar-relay/npm-consumer/, keyed by the tarball
and the project's package.json, so an unchanged client is installed once; npm's own cache
serves the packages (``--prefer-offline``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
from conftest import LOG_DIR
from playwright.async_api import Page
from web_page import browser_test_marks, chromium

from agent.demo import DemoStack
from agent.devserver import CACHE_DIR, PROJECT_ROOT

WEB: Final = PROJECT_ROOT / "web"
NPM: Final = shutil.which("npm")
ESBUILD: Final = WEB / "node_modules" / ".bin" / "esbuild"
TSC: Final = WEB / "node_modules" / ".bin" / "tsc"
CONSUMER_CACHE: Final = CACHE_DIR / "npm-consumer"
NPM_TIMEOUT_S: Final = 180
CACHE_MAX_AGE_S: Final = 7 * 24 * 3600

pytestmark = [
    *browser_test_marks(420),
    pytest.mark.skipif(NPM is None, reason="npm is absent"),
]

SPEAKING_ENERGY = 0.01
"""RMS of the played track while speech plays (as in test_web_browser.py)."""
OPEN_JAW = 0.25
TEXT = "Hello from a project of my own. I installed the avatar client from its tarball."

APP_TS: Final = """\
// A web developer's app: the package and its peer, imported by name, nothing else.
import { Room } from 'livekit-client';
import {
  ATTRIBUTE_ROLE, AvatarPlayer, ROLE_RELAY, RPC_SPEAK_TEXT, type AvatarMessage,
} from 'avatar-relay-client';

interface Result {
  relay: string | null; error: string | null; framesByConversation: Record<string, number>;
  peakEnergy: number; peakJaw: number; protocolErrors: number; onsets: number;
  conversationId: string | null;
}
const result: Result = {
  relay: null, error: null, framesByConversation: {}, peakEnergy: 0, peakJaw: 0,
  protocolErrors: 0, onsets: 0, conversationId: null,
};
(window as any).result = result;

const room = new Room();
const avatar = new AvatarPlayer(room, { canvas: document.querySelector('canvas')! });
avatar.on('avatarTrack', (participant) => { result.relay = participant.identity; });
avatar.on('message', (msg: AvatarMessage) => {
  if (msg.type === 'frames') {
    const seen = result.framesByConversation[msg.conversationId] ?? 0;
    result.framesByConversation[msg.conversationId] = seen + msg.frames.length;
  }
});
avatar.on('sample', (state) => {
  result.conversationId = state.conversationId;
  if (state.conversationId !== null) {
    result.peakEnergy = Math.max(result.peakEnergy, state.audioEnergy);
    result.peakJaw = Math.max(result.peakJaw, state.jawOpen);
  }
  result.protocolErrors = avatar.stats.protocolErrors;
  result.onsets = avatar.stats.onsets;
});
avatar.on('error', (err) => { result.error = String(err); });

async function join(): Promise<void> {
  await avatar.start();
  const res = await fetch('api/token', { method: 'POST' });
  if (!res.ok) throw new Error(`token: ${res.status}`);
  const { url, token } = await res.json();
  await room.connect(url, token);
}

async function speak(text: string): Promise<string> {
  const relay = [...room.remoteParticipants.values()]
    .find((p) => p.attributes[ATTRIBUTE_ROLE] === ROLE_RELAY);
  if (!relay) throw new Error('no relay in the room');
  return room.localParticipant.performRpc({
    destinationIdentity: relay.identity, method: RPC_SPEAK_TEXT, payload: text,
  });
}

(window as any).app = { join, speak };
join().catch((err) => { result.error = String(err); });
"""

INDEX_HTML: Final = """\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>my avatar app</title></head>
<body><canvas width="480" height="540"></canvas><script type="module" src="app.js"></script></body>
</html>
"""

TSCONFIG: Final = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "target": "ES2022",
        "module": "ESNext",
        "moduleResolution": "Bundler",
        "lib": ["ES2022", "DOM", "DOM.Iterable"],
        "types": [],
        # livekit-client's own declarations import its devDependencies' types.
        "skipLibCheck": True,
    },
    "files": ["app.ts"],
}


def _run(cmd: list[str], cwd: Path) -> str:
    """Run a build step; its output goes into the failure message."""
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}) in {cwd}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


def _prune_cache(*, keep: Path) -> None:
    """Forget installed projects unused for CACHE_MAX_AGE_S (one per client version tried)."""
    if not CONSUMER_CACHE.is_dir():
        return
    for entry in CONSUMER_CACHE.iterdir():
        stamp = entry / ".installed"
        if (
            entry != keep
            and stamp.is_file()
            and time.time() - stamp.stat().st_mtime > CACHE_MAX_AGE_S
        ):
            shutil.rmtree(entry, ignore_errors=True)


def _installed_project(tarball: Path) -> Path:
    """A project with the tarball and livekit-client installed, cached per tarball."""
    peer = json.loads((WEB / "node_modules" / "livekit-client" / "package.json").read_text())
    package_json = {
        "name": "my-avatar-app",
        "version": "1.0.0",
        "private": True,
        "type": "module",
        "dependencies": {
            "avatar-relay-client": f"file:{tarball.name}",
            "livekit-client": peer["version"],
        },
    }
    manifest = json.dumps(package_json, indent=2)
    key = hashlib.sha256(tarball.read_bytes() + manifest.encode()).hexdigest()[:16]
    project = CONSUMER_CACHE / key
    _prune_cache(keep=project)
    if (project / ".installed").is_file():
        (project / ".installed").touch()
        return project
    CONSUMER_CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=CONSUMER_CACHE))
    shutil.copy2(tarball, staging / tarball.name)
    (staging / "package.json").write_text(manifest)
    assert NPM is not None
    _run(
        [NPM, "install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
        staging,
    )
    (staging / ".installed").touch()
    try:
        staging.rename(project)  # atomic: a concurrent run may have won, which is as good
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return project


@pytest.fixture(scope="module")
def app_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The consumer app, type-checked and bundled from the installed package."""
    assert ESBUILD.exists() and TSC.exists(), "run `cd web && npm ci` first"
    assert NPM is not None
    packed = tmp_path_factory.mktemp("npm-pack")
    out = _run([NPM, "pack", "--json", "--pack-destination", str(packed)], WEB)
    tarball = packed / json.loads(out)[0]["filename"]
    project = _installed_project(tarball)

    installed = project / "node_modules" / "avatar-relay-client"
    assert (installed / "src" / "index.d.ts").is_file()
    assert not (installed / "demo").exists(), "the demo page was packed"
    # The peer is the app's own copy, not one nested under the package.
    assert not (installed / "node_modules" / "livekit-client").exists()

    app = tmp_path_factory.mktemp("my-avatar-app")
    (app / "app.ts").write_text(APP_TS)
    (app / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    # Resolve packages from the installed project, as if the app lived in it.
    os.symlink(project / "node_modules", app / "node_modules")
    _run([str(TSC), "-p", "tsconfig.json"], app)
    dist = app / "dist"
    dist.mkdir()
    _run(
        [
            str(ESBUILD),
            "app.ts",
            "--bundle",
            "--format=esm",
            "--minify",
            "--target=chrome110",
            f"--outfile={dist / 'app.js'}",
            f"--metafile={app / 'meta.json'}",
            "--log-level=warning",
        ],
        app,
    )
    # Every bundled module came from the installed project, none from the repository's web/.
    inputs = [(app / p).resolve() for p in json.loads((app / "meta.json").read_text())["inputs"]]
    ours = [p for p in inputs if p.is_relative_to(installed.resolve() / "src")]
    assert ours, inputs
    assert not [p for p in inputs if p.is_relative_to(WEB.resolve())], inputs
    peer_dir = project.resolve() / "node_modules" / "livekit-client"
    assert any(p.is_relative_to(peer_dir) for p in inputs)
    (dist / "index.html").write_text(INDEX_HTML)
    return dist


@pytest.fixture
async def stack(app_dist: Path) -> AsyncIterator[DemoStack]:
    demo = DemoStack(port=0, room=f"npm-{uuid.uuid4().hex[:8]}", web_dir=app_dist, log_dir=LOG_DIR)
    await demo.start()
    try:
        yield demo
    finally:
        await demo.aclose()


async def _wait(page: Page, condition: str, timeout_s: float) -> None:
    """Wait until ``condition`` over ``r`` (the page's result) holds, or the page failed."""
    await page.wait_for_function(
        f"() => {{ const r = window.result; return r.error !== null || ({condition}); }}",
        timeout=timeout_s * 1000,
    )
    error = await page.evaluate("window.result.error")
    assert error is None, f"the app failed: {error}"


async def test_installed_tarball_plays_the_avatar_in_chromium(stack: DemoStack) -> None:
    errors: list[str] = []
    async with chromium() as browser:
        page = await browser.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(stack.url)
        await _wait(page, "r.relay !== null", 60)

        conversation_id = await page.evaluate("(text) => window.app.speak(text)", TEXT)
        assert conversation_id, "the relay did not start a conversation"
        await _wait(page, f"(r.framesByConversation[{conversation_id!r}] ?? 0) > 0", 30)
        await _wait(page, f"r.peakEnergy > {SPEAKING_ENERGY} && r.onsets > 0", 15)
        await _wait(page, f"r.peakJaw > {OPEN_JAW}", 15)
        # The utterance plays out and the player goes back to idle.
        await _wait(page, "r.conversationId === null", 30)
        result = await page.evaluate("window.result")
        await page.close()
    assert result["protocolErrors"] == 0
    assert result["framesByConversation"][conversation_id] >= 25, result
    assert not errors, f"uncaught errors in the page: {errors}"
