"""The chat page in headless Chromium against a real ``serve`` process (tracing to sqlite)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .agents import ANSWER
from .conftest import TOKEN, USER, ChatServer, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOCS = Path(__file__).resolve().parents[3] / "docs"


def _wait(predicate: Any, timeout: float = 90.0, what: str = "condition",
          status: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    seen = f" (the page says: {status.inner_text()!r})" if status is not None else ""
    raise AssertionError(f"timed out waiting for {what}{seen}")


def test_streamed_answer_grows_then_finishes(chat_server: ChatServer, new_page: Any) -> None:
    page = new_page(chat_server.url + "/")
    # every change of the answer's text, as the page renders it (one per animation frame)
    page.evaluate("""() => {
        window.__lengths = [];
        new MutationObserver(() => {
            const el = document.querySelector('.turn.agent .answer');
            if (el) window.__lengths.push(el.textContent.length);
        }).observe(document.getElementById('log'), {subtree: true, childList: true,
                                                    characterData: true});
    }""")
    page.send("What happened to my orders?")
    turn = page.wait_turns(1)
    lengths = page.evaluate("window.__lengths")
    assert len(set(lengths)) > 3, lengths  # painted while streaming, not once at the end
    assert "last three orders" in turn.locator(".answer").inner_text()
    # markdown rendered: bold, a table, a code block with a copy button
    assert turn.locator(".answer strong").first.inner_text() == "last three orders"
    assert turn.locator(".answer table td").first.inner_text() == "A-1001"
    assert turn.locator(".code pre code").inner_text().strip() == 'client.orders.track("A-1002")'
    assert turn.locator(".code button").inner_text() == "Copy"
    # the header: agent name, git commit (served from a file in this checkout), the user
    assert page.inner_text("#agent-name") == "support-bot"
    assert page.locator("#user").get_attribute("title") == f"Signed in as {USER}"
    assert page.errors == [] and page.dialogs == []


def test_second_request_carries_the_first_exchange(chat_server: ChatServer,
                                                   new_page: Any) -> None:
    page = new_page(chat_server.url + "/chat")
    page.focus("#prompt")  # keyboard only: type, Shift+Enter is a newline, Enter sends
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#prompt") == "first line\nsecond line"
    page.keyboard.press("Enter")
    page.wait_turns(1)
    before = len(chat_server.requests())
    page.send("and my invoice?")
    second = page.wait_turns(2)
    assert "This is turn 2" in second.inner_text()
    sent = chat_server.requests()[before]
    assert [item.get("role") for item in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "first line\nsecond line"
    assert sent[1]["content"][0]["text"] == ANSWER
    assert sent[2]["content"] == "and my invoice?"
    # New chat: the next request starts a fresh history
    page.click("#new-chat")
    assert page.locator(".turn").count() == 0
    before = len(chat_server.requests())
    page.send("hello again")
    page.wait_turns(1)
    assert [i.get("role") for i in chat_server.requests()[before]] == ["user"]


def test_tool_call_renders_collapsed(chat_server: ChatServer, new_page: Any) -> None:
    page = new_page(chat_server.url + "/")
    page.send("weather in Amsterdam?")
    turn = page.wait_turns(1)
    tool = turn.locator("details.tool")
    assert tool.count() == 1
    assert tool.get_attribute("open") is None
    assert "get_weather" in tool.locator("summary").inner_text()
    args = tool.locator(".tool-section pre").first
    assert not args.is_visible()
    tool.locator("summary").focus()  # keyboard: Enter toggles the disclosure
    page.keyboard.press("Enter")
    assert args.is_visible()
    assert '"city": "Amsterdam"' in args.inner_text()
    assert '"temperature": 14' in tool.locator(".tool-section pre").nth(1).inner_text()
    assert "14 °C and cloudy" in turn.locator(".answer").inner_text()


def test_stop_closes_the_agents_generator(chat_server: ChatServer, new_page: Any) -> None:
    chat_server.marker.unlink(missing_ok=True)
    page = new_page(chat_server.url + "/")
    page.send("endless")
    page.wait_js("(document.querySelector('.turn.agent .answer') || {textContent: ''})"
                 ".textContent.length > 20")
    assert not chat_server.marker.exists()
    assert page.is_visible("#stop")
    page.click("#stop")
    _wait(chat_server.marker.exists, what="the agent's generator to be closed server-side")
    turn = page.wait_turns(1)
    assert "Stopped." in turn.inner_text()
    assert page.is_visible("#send") and not page.is_visible("#stop")


def test_model_output_cannot_run_script(chat_server: ChatServer, new_page: Any) -> None:
    page = new_page(chat_server.url + "/")
    page.send("xss")
    turn = page.wait_turns(1)
    page.wait_for_timeout(300)  # give an onerror handler time to fire, if one survived
    assert page.dialogs == []
    answer = turn.locator(".answer")
    assert "Here you go" in answer.inner_text()
    assert answer.locator("script").count() == 0
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    hrefs = [a.get_attribute("href") for a in answer.locator("a").all()]
    assert not any(h and h.strip().lower().startswith("javascript:") for h in hrefs), hrefs
    assert page.errors == []


def test_feedback_lands_on_the_trace_as_the_signed_in_user(chat_server: ChatServer,
                                                           new_page: Any) -> None:
    import mlflow

    page = new_page(chat_server.url + "/")
    page.send("What happened to my orders?")
    turn = page.wait_turns(1)
    trace_id = turn.get_attribute("data-trace-id")
    assert trace_id and trace_id.startswith("tr-")
    turn.locator(".thumb.down").click()
    turn.locator(".comment textarea").fill("A-1002 was delivered yesterday")
    turn.locator(".comment button[type=submit]").click()
    status = turn.locator(".fb-status")
    _wait(lambda: "comment was recorded" in status.inner_text(), what="comment saved",
          status=status)

    client = mlflow.MlflowClient(tracking_uri=chat_server.tracking_uri)

    def feedback() -> list[Any]:
        info = client.get_trace(trace_id).info
        return [a for a in info.assessments if a.name == "user_feedback"]

    [down] = feedback()
    assert down.source.source_type == "HUMAN" and down.source.source_id == USER
    assert down.feedback.value is False
    assert down.rationale == "A-1002 was delivered yesterday"
    assert TOKEN not in repr(down.to_dictionary())

    turn.locator(".thumb.up").click()
    _wait(lambda: status.inner_text() == "Thanks for the feedback.", what="thumbs up saved",
          status=status)
    [up] = feedback()  # updated, not a second assessment
    assert up.assessment_id == down.assessment_id
    assert up.feedback.value is True and up.source.source_id == USER
    assert up.rationale == "A-1002 was delivered yesterday"  # a thumb click keeps the comment
    assert turn.locator(".thumb.up").get_attribute("aria-pressed") == "true"


def test_agent_error_shows_the_request_id(chat_server: ChatServer, new_page: Any) -> None:
    page = new_page(chat_server.url + "/")
    page.send("fail")
    turn = page.wait_turns(1)
    error = turn.locator(".error")
    assert "the orders database is unreachable" in error.inner_text()
    request_id = turn.get_attribute("data-request-id")
    assert request_id and error.locator(".rid code").inner_text() == request_id
    assert turn.locator(".feedback").count() == 0


def test_server_down_is_a_clear_message(tmp_path: Path, new_page: Any, browser: Any) -> None:
    server, _ = start_server(tmp_path, tracing=False)
    try:
        page = new_page(server.url + "/")
        page.wait_js("document.getElementById('agent-name').textContent === 'support-bot'")
    finally:
        server.stop()
    page.send("are you there?")
    turn = page.wait_turns(1)
    assert "Can't reach the server" in turn.locator(".error").inner_text()
    assert page.is_visible("#send")


_ATTACKER = """<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" action="{target}/invocations">
<input name='{{"input":[{{"role":"user","content":"from a form","x":"' value='"}}]}}'>
</form>
<script>
window.results = {{}};
const body = JSON.stringify({{input: [{{role: "user", content: "cross-origin"}}]}});
async function go() {{
  for (const path of ["/invocations", "/responses", "/feedback"]) {{
    try {{
      await fetch("{target}" + path, {{method: "POST", mode: "no-cors",
        headers: {{"Content-Type": "text/plain"}}, body}});
      window.results["plain " + path] = "sent";
    }} catch (e) {{ window.results["plain " + path] = "blocked: " + e.name; }}
    try {{
      const r = await fetch("{target}" + path, {{method: "POST",
        headers: {{"Content-Type": "application/json"}}, body}});
      window.results["json " + path] = "read " + r.status;
    }} catch (e) {{ window.results["json " + path] = "blocked: " + e.name; }}
  }}
  window.done = true;
}}
go();
</script></body></html>"""


@pytest.fixture
def attacker_origin(tmp_path: Path, chat_server: ChatServer) -> Iterator[str]:
    """Another loopback origin (``localhost`` vs the server's ``127.0.0.1``) with a page
    that tries to drive the agent from the user's browser."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(_ATTACKER.format(target=chat_server.url))
    handler = partial(SimpleHTTPRequestHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _refused_415(chat_server: ChatServer) -> int:
    """415s in the server's access log (one JSON object a line)."""
    count = 0
    for line in chat_server.server.log.read_text().splitlines():
        if line.startswith("{") and '"event":"access"' in line:
            count += json.loads(line).get("status") == 415
    return count


def test_another_origin_cannot_drive_the_agent(chat_server: ChatServer, attacker_origin: str,
                                               new_page: Any) -> None:
    before = len(chat_server.requests())
    log_before = _refused_415(chat_server)
    # no proxy headers: Playwright's extra headers would force a preflight on every request
    page = new_page(attacker_origin + "/index.html", headers={}, chat=False)
    page.wait_js("window.done === true", timeout=30)
    results = page.evaluate("window.results")
    for path in ("/invocations", "/responses", "/feedback"):
        assert results[f"plain {path}"] == "sent"  # a simple request: it is sent ...
        assert results[f"json {path}"].startswith("blocked"), results  # preflight denied
    page.evaluate("document.getElementById('f').submit()")
    page.wait_for_url(chat_server.url + "/invocations")
    assert "unsupported_media_type" in page.inner_text("body")
    # ... and the server refused every one of them before the agent ran
    _wait(lambda: _refused_415(chat_server) >= log_before + 4, what="the server's 415s")
    assert len(chat_server.requests()) == before


@pytest.mark.parametrize("name,viewport,scheme", [
    ("chat-desktop", {"width": 1280, "height": 860}, "light"),
    ("chat-phone", {"width": 390, "height": 844}, "dark"),
])
def test_screenshots(chat_server: ChatServer, new_page: Any, tmp_path: Path, name: str,
                     viewport: dict[str, int], scheme: str) -> None:
    """Desktop (light) and phone (dark) screenshots; ``SAVE_SCREENSHOTS=1`` copies them to
    docs/img/ (what README and docs/server.md show)."""
    page = new_page(chat_server.url + "/", viewport=viewport, color_scheme=scheme)
    page.wait_js("document.querySelectorAll('#agent-meta .pill').length > 0")
    page.send("What happened to my orders?")
    first = page.wait_turns(1)
    page.send("weather in Amsterdam?")
    page.wait_turns(2)
    first.locator(".thumb.up").click()
    status = first.locator(".fb-status")
    _wait(lambda: "Thanks" in status.inner_text(), what="feedback saved", status=status)
    out = tmp_path / f"{name}.png"
    page.screenshot(path=str(out))
    assert out.stat().st_size > 10_000
    if os.environ.get("SAVE_SCREENSHOTS"):
        (DOCS / "img").mkdir(exist_ok=True)
        shutil.copy(out, DOCS / "img" / out.name)


def test_feedback_on_unknown_or_another_users_answer_is_404(chat_server: ChatServer) -> None:
    import httpx

    url = chat_server.url
    headers = {"X-Forwarded-Email": USER, "X-Request-Id": "owned-by-ada",
               "X-MLflow-App-Agent-Trace": "always"}
    answer = httpx.post(url + "/responses", json={"input": "hello"}, headers=headers,
                        timeout=60)
    trace_id = answer.headers["x-mlflow-trace-id"]
    eve = {"X-Forwarded-Email": "eve@example.com"}
    for body in ({"request_id": "owned-by-ada"}, {"trace_id": trace_id},
                 {"request_id": "never-sent"}, {"trace_id": "tr-" + "0" * 32}):
        resp = httpx.post(url + "/feedback", json={**body, "value": False}, headers=eve,
                          timeout=90)
        assert resp.status_code == 404, resp.text
        assert "no traced answer" in resp.json()["error"]["message"]
    mine = httpx.post(url + "/feedback", json={"request_id": "owned-by-ada", "value": True},
                      headers={"X-Forwarded-Email": USER}, timeout=90)
    assert mine.status_code == 200, mine.text
    assert mine.json()["trace_id"] == trace_id and mine.json()["updated"] is False
