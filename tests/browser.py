"""Open a page in a real headless Chromium and report what a person's browser would show: whether
it loaded, each image's natural width, and every console message, uncaught exception and log
error (a failed resource load is one).

The DevTools protocol is spoken over `--remote-debugging-pipe` (JSON messages separated by NUL on
file descriptors 3 and 4), so neither a port nor a websocket library is needed. The flags are those
of a browser that must not reach the network or its own update servers.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-pipe")
TIMEOUT_S = 60.0  # a generous bound on each protocol answer: the machine is shared


def find_browser() -> str | None:
    """The Chromium to use: $TOURNEY_BROWSER, or the first of CANDIDATES on PATH."""
    chosen = os.environ.get("TOURNEY_BROWSER")
    if chosen:
        return shutil.which(chosen) or (chosen if Path(chosen).is_file() else None)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@dataclass
class PageCheck:
    loaded: bool
    title: str
    images: list[dict[str, Any]]  # {"alt", "complete", "naturalWidth", "naturalHeight"}
    problems: list[str] = field(default_factory=list)  # console errors, exceptions, log errors
    details_opened: int = 0  # <details> elements opened by the check (their content rendered)
    text_length: int = 0


class _Pipe:
    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int) -> None:
        self.proc, self.to_browser, self.next_id = proc, to_browser, 0
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, args=(from_browser,), daemon=True).start()

    def _read(self, fd: int) -> None:
        buf = b""
        with os.fdopen(fd, "rb", buffering=0) as f:
            while chunk := f.read(65536):
                buf += chunk
                *messages, buf = buf.split(b"\0")
                for m in messages:
                    self.messages.put(json.loads(m))
        self.messages.put(None)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_browser, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._next()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str) -> None:
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            self.events.append(self._next())

    def _next(self) -> dict[str, Any]:
        try:
            msg = self.messages.get(timeout=TIMEOUT_S)
        except queue.Empty:
            raise TimeoutError(f"no answer from the browser in {TIMEOUT_S:.0f} s") from None
        if msg is None:
            raise RuntimeError(f"the browser exited (status {self.proc.poll()})")
        return msg


_PROBE = """JSON.stringify({
  title: document.title,
  opened: [...document.querySelectorAll('details')].map(d => { d.open = true; return 1; }).length,
  text: document.body ? document.body.innerText.length : 0,
  images: [...document.images].map(i => ({alt: i.alt, complete: i.complete,
                                          naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight}))
})"""


def _problems(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            out.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                           for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            out.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
    return out


def check_page(path: str | Path, browser: str) -> PageCheck:
    """Load the file in a fresh headless Chromium (its own profile) and probe it."""
    with tempfile.TemporaryDirectory(prefix="tourney-browser-") as profile:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()

        def wire() -> None:  # in the child: the protocol's fds 3 (read) and 4 (write)
            a, b = os.dup(to_r), os.dup(from_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        proc = subprocess.Popen([browser, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                preexec_fn=wire, close_fds=False,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        pipe = _Pipe(proc, to_w, from_r)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.events.clear()  # about:blank's own messages are not the page's
            nav = pipe.call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
            pipe.wait_event("Page.loadEventFired", session)
            probe = pipe.call("Runtime.evaluate", {"expression": _PROBE, "returnByValue": True}, session=session)
            # Opening the <details> renders their content; give layout a moment, then look again.
            time.sleep(0.2)
            pipe.call("Runtime.evaluate", {"expression": "document.body.offsetHeight"}, session=session)
            found = json.loads(probe["result"]["value"])
            problems = _problems(pipe.events)
            if nav.get("errorText"):
                problems.insert(0, f"navigation: {nav['errorText']}")
            return PageCheck(loaded=not nav.get("errorText"), title=found["title"], images=found["images"],
                             problems=problems, details_opened=found["opened"], text_length=found["text"])
        finally:
            try:
                pipe.call("Browser.close")
            except (RuntimeError, TimeoutError, OSError):
                pass
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(to_w)
