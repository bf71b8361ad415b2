"""Loads a local HTML page in headless Chromium over the DevTools protocol (pipe transport, no extra package).

It records every request, console error and exception, each image's size once loaded, and a
screenshot; tests then check the page as a person would see it.
"""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-extensions", "--disable-default-apps", "--mute-audio",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """The Chromium executable, or None."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@dataclass
class PageVisit:
    """What loading the page showed."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)  # complete, naturalWidth, naturalHeight, alt
    height: int = 0
    screenshot: bytes = b""


class _Pipe:
    """The DevTools protocol over Chromium's fds 3 (commands in) and 4 (replies out), NUL-separated JSON."""

    def __init__(self, executable: str, profile: str):
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4. The ends are first copied above 9
        # (close-on-exec), so that moving them to 3 and 4 in the child cannot overwrite one with the other.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser, from_browser)]
        os.close(to_browser)
        os.close(from_browser)

        def to_3_and_4():  # dup2 leaves 3 and 4 open across exec
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(  # close_fds=False: closing would also close 3 and 4 after the move
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=to_3_and_4,
        )
        for fd in high:
            os.close(fd)
        self._buffer, self._next_id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._receive(deadline))

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)


_IMAGES = "JSON.stringify({height: document.documentElement.scrollHeight, images: Array.from(document.images).map(" \
          "i => ({complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight, alt: i.alt}))})"


def visit(path: str, executable: str, width: int = 1280, timeout: float = 60) -> PageVisit:
    """Opens ``path`` (a local HTML file), waits for its load event, and records what happened."""
    with tempfile.TemporaryDirectory() as profile:
        pipe = _Pipe(executable, profile)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Network", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
            pipe.events.clear()
            pipe.send("Page.navigate", {"url": "file://" + os.path.abspath(path)}, session=session)
            pipe.wait_for("Page.loadEventFired", timeout)
            page = json.loads(pipe.send("Runtime.evaluate", {"expression": _IMAGES, "returnByValue": True},
                                        session=session)["result"]["value"])
            shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
            result = PageVisit(images=page["images"], height=page["height"], screenshot=base64.b64decode(shot["data"]))
            for event in pipe.events:
                _record(event, result)
            return result
        finally:
            pipe.close()


def _record(event: dict, visit: PageVisit) -> None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Network.requestWillBeSent":
        visit.requests.append(params["request"]["url"])
    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        visit.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
    elif method == "Runtime.exceptionThrown":
        visit.console_errors.append(params["exceptionDetails"].get("text", "exception"))
    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
        visit.console_errors.append(params["entry"]["text"])
