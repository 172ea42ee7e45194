"""Load a page in headless Chromium (Debian's ``chromium``) over the Chrome
DevTools protocol and report what a reader would see: console errors, images
that failed to load, horizontal overflow, section ids; and a full-page
screenshot. Only ``websocket-client`` is needed besides the browser binary.

    with Browser() as browser:
        seen = browser.inspect(Path("report.html"), width=1280, screenshot=Path("shot.png"))
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BINARIES = ("chromium", "chromium-browser", "google-chrome")

# What the page looks like to a reader, measured in the page itself.
PROBE = """JSON.stringify({
  brokenImages: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
  images: document.images.length,
  pageWidth: document.documentElement.scrollWidth,
  viewportWidth: document.documentElement.clientWidth,
  overflowing: [...document.querySelectorAll('body *')]
      .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
      .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : '')),
  clippedTables: [...document.querySelectorAll('table')]
      .filter(t => t.parentElement.scrollWidth > t.parentElement.clientWidth + 0.5).length,
  sections: [...document.querySelectorAll('section[id]')].map(s => s.id),
})"""


def find_chromium() -> str:
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no chromium on PATH: install it with `apt-get install -y chromium` (.ci/run does)")


@dataclass
class Seen:
    errors: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


class Browser:
    """One headless Chromium with its own throw-away profile."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="probebench-chromium-")
        self.process = subprocess.Popen(
            [
                find_chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.socket = self._connect()
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _connect(self) -> Any:
        import websocket

        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {self.process.poll()})")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as answer:
            pages = [t for t in json.load(answer) if t["type"] == "page"]
        return websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and wait for its answer, keeping the events that arrive meanwhile."""
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event} within {self.timeout} s")
            self.events.append(json.loads(self.socket.recv()))

    def inspect(self, page: Path, width: int = 1280, height: int = 900, screenshot: Path | None = None) -> Seen:
        self.events.clear()
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", url=page.resolve().as_uri())
        self.wait_for("Page.loadEventFired")
        answer = self.call("Runtime.evaluate", expression=PROBE, returnByValue=True, awaitPromise=True)
        seen = Seen(facts=json.loads(answer["result"]["value"]))
        seen.errors = _errors(self.events)
        if screenshot is not None:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            shot = self.call(
                "Page.captureScreenshot",
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1},
            )
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        return seen

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and failed loads among the events."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            found.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            found.append(params["entry"].get("text", ""))
    return found
