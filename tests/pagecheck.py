"""Check a local HTML page in headless Chromium: the DevTools protocol over a
pipe (stdlib only), for the tests of report.html.

`check_page` loads the page in a 1280x900 viewport, collects console
messages, exceptions and log entries (failed loads, blocked content), checks
that every image decoded, measures where the elements with the ids asked for
end, and saves a full-page screenshot; the browser is killed whatever
happens. Run it by hand: `python -m tests.pagecheck PAGE.html SHOT.png [ID...]`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

#: Where the tests keep their screenshots ($L2COMPILE_TEST_ARTIFACTS).
ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "test"

CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--mute-audio", "--hide-scrollbars", "--force-device-scale-factor=1",
    "--window-size=1280,900", "--remote-debugging-pipe",
)  # fmt: skip
#: The viewport the page is laid out in: the first screen of a laptop.
VIEWPORT = (1280, 900)
CONSOLE_LEVELS = ("error", "warning", "assert")
PAGE_JS = """JSON.stringify([document.title, Array.from(document.images, i =>
  [i.complete && i.naturalWidth > 0, (i.currentSrc || i.src || '').slice(0, 80)])])"""
#: Where each element of the ids (a JSON list, formatted in) ends, in CSS
#: pixels from the top of the page; null for an id not on the page.
BOTTOMS_JS = """JSON.stringify(Object.fromEntries(%s.map(id => {
  const e = document.getElementById(id);
  return [id, e ? e.getBoundingClientRect().bottom + window.scrollY : null];
})))"""


def find_chromium() -> str:
    env = os.environ.get("CHROMIUM")
    for name in [env] if env else CANDIDATES:
        if path := shutil.which(name):
            return path
    raise FileNotFoundError("no chromium: apt-get install chromium, or set $CHROMIUM")


class Cdp:
    """Minimal CDP client: NUL-terminated JSON; chromium reads fd 3 and writes fd 4."""

    def __init__(self, wfd: int, rfd: int, deadline: float) -> None:
        self.wfd, self.rfd, self.deadline = wfd, rfd, deadline
        self.buf, self.next_id = bytearray(), 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self) -> dict[str, Any]:
        start = 0
        while (end := self.buf.find(b"\0", start)) < 0:
            start = len(self.buf)
            remaining = self.deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.rfd], [], [], remaining)[0]:
                raise TimeoutError("timed out waiting for chromium")
            if not (chunk := os.read(self.rfd, 1 << 20)):
                raise ConnectionError("chromium closed the devtools pipe")
            self.buf += chunk
        message: dict[str, Any] = json.loads(bytes(self.buf[:end]))
        del self.buf[: end + 1]
        return message

    def send(self, method: str, session: str = "", **params: object) -> dict[str, Any]:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        while (reply := self._read_message()).get("id") != self.next_id:
            self.events.append(reply)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def wait_event(self, method: str, since: int = 0) -> None:
        while not any(ev.get("method") == method for ev in self.events[since:]):
            since = len(self.events)
            self.events.append(self._read_message())


def _collect(events: list[dict[str, Any]], out: dict[str, Any]) -> None:
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p["type"] in CONSOLE_LEVELS:
            args = [a.get("value", a.get("description", a["type"])) for a in p["args"]]
            out["console"].append(
                {"level": p["type"], "text": " ".join(map(str, args))}
            )
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            text = d.get("exception", {}).get("description", d["text"])
            out["exceptions"].append(
                {"text": text, "url": d.get("url"), "line": d["lineNumber"]}
            )
        elif method == "Log.entryAdded":
            out["log"].append(
                {k: p["entry"].get(k) for k in ("source", "level", "text", "url")}
            )


def _await_exit(pid: int, wait: float) -> None:
    """Poll (not reaping: keeps the pgid reserved) until pid exits or `wait` ends."""
    end = time.monotonic() + wait
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    while not os.waitid(os.P_PID, pid, flags) and time.monotonic() < end:
        time.sleep(0.02)


def check_page(
    html_path: str | Path,
    screenshot_path: str | Path,
    timeout: float = 30,
    ids: Sequence[str] = (),
) -> dict[str, Any]:
    """Load a local page in headless Chromium, save a full-page PNG, report
    problems, and where each element of `ids` ends (`bottoms`, CSS pixels)."""
    start = time.monotonic()
    url, chromium = Path(html_path).resolve().as_uri(), find_chromium()
    profile = tempfile.mkdtemp(prefix="pagecheck-")
    cmd_r, cmd_w = os.pipe()  # created first, so cmd_r is never 4 and res_w never 3
    res_r, res_w = os.pipe()
    out: dict[str, Any] = {"url": url, "console": [], "log": [], "exceptions": []}
    pid, closed = 0, False
    try:
        actions: list[Any] = [
            (os.POSIX_SPAWN_OPEN, n, os.devnull, os.O_RDWR, 0) for n in range(3)
        ]
        actions += [(os.POSIX_SPAWN_DUP2, cmd_r, 3), (os.POSIX_SPAWN_DUP2, res_w, 4)]
        argv = [chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        env = {**os.environ, "TMPDIR": profile}  # Singleton*, shm files go in profile
        pid = os.posix_spawn(chromium, argv, env, file_actions=actions, setsid=True)
        os.close(cmd_r)
        os.close(res_w)
        cdp = Cdp(cmd_w, res_r, start + timeout)
        target = cdp.send("Target.createTarget", url="about:blank")["targetId"]
        attached = cdp.send("Target.attachToTarget", targetId=target, flatten=True)
        sid = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            cdp.send(f"{domain}.enable", sid)
        width, height = VIEWPORT
        cdp.send(
            "Emulation.setDeviceMetricsOverride",
            sid,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        mark = len(cdp.events)
        if error := cdp.send("Page.navigate", sid, url=url).get("errorText"):
            raise RuntimeError(f"navigation to {url} failed: {error}")
        cdp.wait_event("Page.loadEventFired", since=mark)
        value = cdp.send("Runtime.evaluate", sid, expression=PAGE_JS)["result"]["value"]
        title, images = json.loads(value)
        where = BOTTOMS_JS % json.dumps(list(ids))
        value = cdp.send("Runtime.evaluate", sid, expression=where)["result"]["value"]
        out["bottoms"] = json.loads(value)
        size = cdp.send("Page.getLayoutMetrics", sid)["cssContentSize"]
        clip = dict(x=0, y=0, width=size["width"], height=size["height"], scale=1)
        png = cdp.send(
            "Page.captureScreenshot", sid, clip=clip, captureBeyondViewport=True
        )
        Path(screenshot_path).write_bytes(base64.b64decode(png["data"]))
        _collect(cdp.events, out)
        broken = [src for ok, src in images if not ok]
        loaded = len(images) - len(broken)
        out.update(title=title, images_total=len(images), images_loaded=loaded)
        out.update(broken_images=broken, screenshot=str(screenshot_path))
        cdp.deadline = min(cdp.deadline, time.monotonic() + 2)
        with contextlib.suppress(TimeoutError, ConnectionError):
            cdp.send("Browser.close")
            closed = True
        return out
    finally:
        if pid:
            _await_exit(pid, 3 if closed else 0)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # also renderer, gpu, zygote, ...
            os.waitpid(pid, 0)
        for fd in (cmd_w, res_r) if pid else (cmd_r, cmd_w, res_r, res_w):
            os.close(fd)
        shutil.rmtree(profile, ignore_errors=True)
        out["elapsed_s"] = round(time.monotonic() - start, 3)


def check_in_chromium(
    page: Path, shot: str, images: int, first_screen: Sequence[str] = ()
) -> None:
    """The page renders in headless Chromium with no console errors and
    every image loaded, and each element of `first_screen` (ids) ends on its
    first screen (VIEWPORT); its screenshot is kept (README: Development)."""
    try:
        find_chromium()
    except FileNotFoundError:
        if os.environ.get("CI"):
            raise  # .ci/run installs it
        pytest.skip("no chromium here: apt-get install chromium")
    shots = Path(os.environ.get("L2COMPILE_TEST_ARTIFACTS", ARTIFACTS))
    shots.mkdir(parents=True, exist_ok=True)
    found = check_page(page, shots / shot, ids=first_screen)
    assert found["console"] == [] and found["exceptions"] == []
    assert [e for e in found["log"] if e["level"] in ("error", "warning")] == []
    assert found["images_total"] == images and found["images_loaded"] == images
    height = VIEWPORT[1]
    for name, bottom in found["bottoms"].items():
        assert bottom is not None, f"{page}: no element with id {name!r}"
        assert bottom <= height, (
            f"{page}: #{name} ends at {bottom:.0f} px, below the first screen "
            f"({VIEWPORT[0]}x{height}); see {shots / shot}"
        )


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: pagecheck.py PAGE.html SCREENSHOT.png [ID...]")
    found = check_page(sys.argv[1], sys.argv[2], ids=sys.argv[3:])
    print(json.dumps(found, indent=2))
