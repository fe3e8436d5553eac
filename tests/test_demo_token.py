"""Issue 14, finding 7: the demo's /api/token answers only its own page (Host and Origin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent.demo import DemoStack, token_request_refusal


def test_refusal_rules() -> None:
    assert token_request_refusal("127.0.0.1:8080", None, 8080) is None
    assert token_request_refusal("localhost:8080", "http://localhost:8080", 8080) is None
    assert token_request_refusal("127.0.0.1:8080", "http://127.0.0.1:8080", 8080) is None
    assert token_request_refusal("evil.example:8080", None, 8080) is not None  # DNS rebinding
    assert token_request_refusal("127.0.0.1:9999", None, 8080) is not None
    assert token_request_refusal(None, None, 8080) is not None
    assert token_request_refusal("127.0.0.1:8080", "http://evil.example", 8080) is not None
    assert token_request_refusal("127.0.0.1:8080", "null", 8080) is not None


@pytest.fixture
async def web_only(tmp_path: Path) -> AsyncIterator[tuple[DemoStack, int]]:
    """The demo's web server alone (no livekit-server): enough to see who is refused."""
    (tmp_path / "index.html").write_text("<!doctype html>")
    stack = DemoStack(port=0, web_dir=tmp_path)
    await stack._start_web()
    try:
        yield stack, int(stack.url.rsplit(":", 1)[1].strip("/"))
    finally:
        await stack.aclose()


async def test_token_endpoint_refuses_foreign_host_and_origin(
    web_only: tuple[DemoStack, int],
) -> None:
    stack, port = web_only
    url = f"http://127.0.0.1:{port}/api/token"
    async with aiohttp.ClientSession() as http:
        for headers in (
            {"Host": f"rebound.example:{port}"},
            {"Origin": "http://evil.example"},
            {"Origin": f"http://rebound.example:{port}"},
        ):
            async with http.post(url, headers=headers) as res:
                assert res.status == 403, headers
        # The page itself passes the check (and then fails only because no server runs here).
        async with http.post(url, headers={"Origin": f"http://127.0.0.1:{port}"}) as res:
            assert res.status != 403
