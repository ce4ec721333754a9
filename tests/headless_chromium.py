"""Drive headless Chromium from a test over the DevTools protocol, through a pipe.

Why this driver: ``--remote-debugging-pipe`` makes Chromium speak the DevTools
protocol (JSON messages ending in a NUL byte) on file descriptors 3 and 4, so the
test needs nothing beyond the standard library and Debian's ``chromium``: no
WebDriver binary whose version must match the browser (Selenium with
``chromium-driver``), no websocket library, and no TCP port that another test run
on the same machine could hold. It can wait until the page has loaded, evaluate
JavaScript in the rendered page (the DOM and each image's ``naturalWidth``) and
take a screenshot, which ``--dump-dom`` alone cannot. The few protocol methods used
(``Target.*``, ``Page.navigate``, ``Page.captureScreenshot``, ``Runtime.evaluate``)
have been stable for years.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

# What Chromium needs to run headless as root in a container (see the issue).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """``$SPMCLI_CHROMIUM``, else ``chromium`` (Debian's package) or another Chrome on the PATH."""
    configured = os.environ.get("SPMCLI_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium with one page. Use as a context manager."""

    def __init__(self, executable: str, width: int = 1280, height: int = 900, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="spmcli-chromium-")
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def use_pipes_as_3_and_4() -> None:
            os.dup2(commands_read, 3)
            os.dup2(replies_write, 4)

        self._log = open(Path(self._profile.name) / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        self._process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self._profile.name}", f"--window-size={width},{height}"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            pass_fds=(3, 4),
            preexec_fn=use_pipes_as_3_and_4,  # the test process has one thread: safe
        )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        pages = [target for target in self.call("Target.getTargets")["targetInfos"] if target["type"] == "page"]
        target = pages[0]["targetId"] if pages else self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone: nothing to close
            self.call("Browser.close")
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._commands)
        os.close(self._replies)
        self._log.close()
        self._profile.cleanup()

    def log(self) -> str:
        return (Path(self._profile.name) / "chromium.log").read_text(errors="replace")

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._replies], [], [], remaining)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited:\n{self.log()[-2000:]}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            # Anything else is an event; none is needed.

    def open(self, url: str) -> None:
        """Navigate and wait until the page has loaded (every image decoded or failed by then)."""
        result = self.call("Page.navigate", session=True, url=url)
        if result.get("errorText"):
            raise RuntimeError(f"cannot open {url}: {result['errorText']}")
        # Asking the page itself avoids mistaking a late event of the previous page for this one's.
        check = f"document.location.href === {json.dumps(url)} && document.readyState === 'complete'"
        deadline = time.monotonic() + self.timeout
        while not self.evaluate(check):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            time.sleep(0.02)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable; promises awaited)."""
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, full_page: bool = True) -> bytes:
        """A PNG of the page (the whole page, not only the window, by default)."""
        return base64.b64decode(
            self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=full_page)["data"]
        )
