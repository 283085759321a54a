"""A real ``serve`` process with tracing on (sqlite), and Debian's Chromium driven by
Playwright (never ``playwright install``: its browser download cannot work here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ServerProcess, free_port

AGENTS = Path(__file__).parent / "agents.py"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: what the Apps proxy would forward for the signed-in user
USER = "ada.lovelace@example.com"
TOKEN = "dapi-forwarded-token-never-stored"


@dataclass
class ChatServer:
    server: ServerProcess
    tracking_uri: str
    chat_log: Path
    marker: Path

    @property
    def url(self) -> str:
        return self.server.url

    def requests(self) -> list[Any]:
        import json

        if not self.chat_log.exists():
            return []
        return [json.loads(line) for line in self.chat_log.read_text().splitlines()]


def start_server(tmp: Path, *args: str, tracing: bool = True) -> tuple[ServerProcess, str]:
    port = free_port()
    log = tmp / f"server-{port}.log"
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "MLFLOW_APP_AGENT_TRACING": "true" if tracing else "false",
           "CHAT_LOG": str(tmp / "requests.jsonl"), "ENDLESS_MARKER": str(tmp / "closed")}
    env.pop("DATABRICKS_APP_PORT", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow_app_agent.serve", f"{AGENTS}:chat",
             "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp,
            start_new_session=True)  # its own process group: see ServerProcess._reap_group
    server = ServerProcess(proc, port, log)
    try:
        server.wait_ready(timeout=120)
    except BaseException:
        server.stop()
        raise
    return server, uri


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    tmp = tmp_path_factory.mktemp("chat")
    server, uri = start_server(tmp)
    try:
        yield ChatServer(server, uri, tmp / "requests.jsonl", tmp / "closed")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # module, not session: Playwright's sync API keeps an event loop running on the main
    # thread while it is started, which breaks every later test that runs its own loop
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium: install Debian's 'chromium' package "
                    "(apt-get install chromium), or set CHROMIUM to its path")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Page:
    """A Playwright page plus what it reported: dialogs (none may open) and script errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.page, name)

    def send(self, text: str) -> None:
        self.page.fill("#prompt", text)
        self.page.keyboard.press("Enter")

    def wait_js(self, expression: str, timeout: float = 60.0) -> Any:
        """Poll a JS expression until truthy. (Playwright's wait_for_function evals its
        predicate, which the page's CSP rightly forbids; evaluate is not an eval.)"""
        deadline = time.monotonic() + timeout
        while True:
            value = self.page.evaluate(f"() => ({expression})")
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            time.sleep(0.05)

    def wait_turns(self, n: int, timeout: float = 60.0) -> Any:
        self.wait_js(f"document.querySelectorAll('.turn.agent.done').length >= {n}", timeout)
        return self.page.locator(".turn.agent.done").nth(n - 1)


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """``new_page(url, viewport=..., headers=...)``: a fresh context signed in as USER."""
    contexts: list[Any] = []

    def open_page(url: str, *, viewport: dict[str, int] | None = None,
                  color_scheme: str = "light", headers: dict[str, str] | None = None,
                  chat: bool = True) -> Page:
        context = browser.new_context(
            viewport=viewport or {"width": 1280, "height": 860}, color_scheme=color_scheme,
            extra_http_headers={"X-Forwarded-Email": USER, "X-Forwarded-Access-Token": TOKEN}
            if headers is None else headers)
        contexts.append(context)
        page = Page(context.new_page())
        page.goto(url)
        if chat:
            page.wait_js("window.__chat !== undefined")
        return page

    yield open_page
    for context in contexts:
        context.close()
