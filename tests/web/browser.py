"""A headless Chromium (Debian's `chromium` package) driven over the DevTools protocol, for the web gallery tests.

Only what the tests need: open a page, read it, fill and submit a form, follow a link, take a screenshot at a
given window size. Chromium talks to 127.0.0.1 only; nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    def __init__(self, process: subprocess.Popen, session: aiohttp.ClientSession, ws) -> None:
        self._process = process
        self._session = session
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: asyncio.Queue = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls):
        assert CHROMIUM is not None, "install Debian's chromium package (the README's test requirements)"
        port = _free_port()
        profile = tempfile.mkdtemp(prefix="salon-chromium-")
        process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--disable-background-networking", "--disable-sync", "--disable-component-update",
             "--hide-scrollbars", f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
             f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": profile},
        )  # fmt: skip
        session = aiohttp.ClientSession()
        browser = None
        try:
            page = None
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                        pages = [t for t in await response.json() if t.get("type") == "page"]
                        if pages:
                            page = pages[0]
                            break
                await asyncio.sleep(0.05)
            assert page is not None, "chromium did not open its DevTools port"
            ws = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024)
            browser = cls(process, session, ws)
            await browser.call("Page.enable")
            yield browser
        finally:
            if browser is not None:
                browser._reader.cancel()
                await browser._ws.close()
            await session.close()
            process.terminate()
            process.wait(10)
            shutil.rmtree(profile, ignore_errors=True)

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                await self._events.put(data)

    async def call(self, method: str, **params) -> dict:
        number = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        await self._ws.send_str(json.dumps({"id": number, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, 30)
        assert "error" not in reply, reply
        return reply.get("result", {})

    async def _loaded(self) -> None:
        while (await asyncio.wait_for(self._events.get(), 30))["method"] != "Page.loadEventFired":
            pass

    async def goto(self, url: str) -> None:
        while not self._events.empty():
            self._events.get_nowait()
        await self.call("Page.navigate", url=url)
        await self._loaded()

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def text(self, selector: str = "body") -> str:
        return await self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText")

    async def texts(self, selector: str) -> list[str]:
        return await self.evaluate(
            f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.innerText)"
        )

    async def url(self) -> str:
        return await self.evaluate("location.href")

    async def fill_and_submit(self, values: dict[str, str | bool]) -> None:
        """Set the filter form's fields as a person would and press its button (a GET navigation)."""
        script = ["const f = document.querySelector('form');"]
        for name, value in values.items():
            if isinstance(value, bool):
                script.append(f"f.elements[{json.dumps(name)}].checked = {json.dumps(value)};")
            else:
                script.append(f"f.elements[{json.dumps(name)}].value = {json.dumps(value)};")
        script.append("f.querySelector('button').click();")
        while not self._events.empty():
            self._events.get_nowait()
        await self.evaluate("".join(script))
        await self._loaded()

    async def click(self, selector: str) -> None:
        while not self._events.empty():
            self._events.get_nowait()
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
        await self._loaded()

    async def screenshot(self, path: Path, width: int, height: int, mobile: bool = False) -> Path:
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=mobile,
        )  # fmt: skip
        await asyncio.sleep(0.2)
        data = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(data["data"]))
        return path
