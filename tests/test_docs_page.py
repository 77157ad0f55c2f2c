"""/docs in a real browser: headless Chromium renders the page with no internet, and the
rendered page (not its HTML source) lists every route of the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.fake_github import FakeGitHub
from tests.test_server import Serve, serve  # noqa: F401  (the fixture)

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
RENDER_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[str]:
    """Headless Chromium with a fresh profile and no background traffic; yields the
    DevTools HTTP endpoint."""
    assert BROWSER is not None, "this test needs Chromium: apt-get install chromium"
    with tempfile.TemporaryDirectory(prefix="gistscan-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its own process group: its helpers end with it
        )
        try:
            # Chromium writes the port it chose to DevToolsActivePort in the profile.
            active = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + RENDER_TIMEOUT
            while not (active.exists() and active.read_text().strip()):
                assert proc.returncode is None, "chromium exited at start"
                assert time.monotonic() < deadline, "chromium did not open DevTools"
                await asyncio.sleep(0.1)
            port = active.read_text().split()[0]
            yield f"http://127.0.0.1:{port}"
        finally:
            # The whole group, not only the browser: a renderer or crash handler left running
            # would go on writing in the profile while it is deleted ("Directory not empty").
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


class Page:
    """One tab, driven over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=RENDER_TIMEOUT)
            if message.get("id") == call_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


async def test_docs_page_lists_every_route(fake: FakeGitHub, serve: Serve) -> None:  # noqa: F811
    """Chromium renders /docs from /openapi.json alone (no other origin is reachable under
    the page's CSP, nor asked for), and the rendered text names every route and method."""
    client = await serve(fake)
    base = str(client.make_url("/")).rstrip("/")
    doc = await (await client.get("/openapi.json")).json()
    routes = [f"{method.upper()} {path}" for path, item in doc["paths"].items() for method in item]
    source = await (await client.get("/docs")).text()
    # The routes come from rendering, not from the page's source.
    assert not any(path in source for path in doc["paths"] if path != "/docs")
    async with chromium() as devtools, aiohttp.ClientSession() as http:
        async with http.put(f"{devtools}/json/new?{base}/docs") as resp:
            target = await resp.json()
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            await page.call("Network.enable")
            deadline = time.monotonic() + RENDER_TIMEOUT
            while (state := await page.evaluate("document.body.dataset.rendered")) is None:
                assert time.monotonic() < deadline, "the page never rendered"
                await asyncio.sleep(0.1)
            assert state == str(len(routes)), state
            text = await page.evaluate("document.body.innerText")
            listed = await page.evaluate(
                "[...document.querySelectorAll('[data-route]')].map(e => e.dataset.route)"
            )
            title = await page.evaluate("document.title")
    assert title == "gistscan API"
    assert sorted(listed) == sorted(routes)
    for route in routes:
        method, path = route.split(" ")
        assert path in text and method in text
    # What a reader needs from the search route: its parameters and statuses.
    for words in ("pattern", "ignore_case", "max_matches", "429", "503", "415"):
        assert words in text, words
    assert json.dumps(doc["info"]["title"]).strip('"') in text
