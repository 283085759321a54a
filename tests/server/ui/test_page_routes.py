"""The page's routes and the browser-facing rules, in-process: content negotiation, assets,
security headers, JSON-only POST bodies, CORS only when configured, ``ui=False``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from mlflow_app_agent.server import create_app
from mlflow_app_agent.server.settings import ServerSettings
from mlflow_app_agent.server.ui import page as ui_page

from ..test_routes import assert_error
from .agents import chat

HTML = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
MSG = {"input": [{"role": "user", "content": "hi"}]}


def client_for(**settings: Any) -> TestClient:
    settings.setdefault("tracing", False)
    return TestClient(create_app(chat, **settings), raise_server_exceptions=False)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with client_for() as c:
        yield c


@pytest.mark.parametrize("path", ["/", "/chat"])
def test_browsers_get_the_page_api_clients_keep_json(client: TestClient, path: str) -> None:
    resp = client.get(path, headers=HTML)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    csp = resp.headers["content-security-policy"]
    for rule in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                 "frame-ancestors 'none'", "base-uri 'none'", "connect-src 'self'"):
        assert rule in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["cache-control"] == "no-store"
    assert "<script>" not in resp.text  # no inline script: only <script src=...>
    for accept in (None, "*/*", "application/json"):
        api = client.get(path, headers={"accept": accept} if accept else {})
        assert_error(api, 404, "not_found", "POST /invocations")


def test_the_forwarded_user_is_escaped_into_the_page(client: TestClient) -> None:
    resp = client.get("/", headers={**HTML, "x-forwarded-email": '"><script>x()</script>',
                                    "x-forwarded-access-token": "dapi-secret"})
    assert "<script>x()" not in resp.text
    assert 'content="&quot;&gt;&lt;script&gt;x()&lt;/script&gt;"' in resp.text
    assert "dapi-secret" not in resp.text


def test_assets_are_content_hashed_immutable_and_within_budget(client: TestClient) -> None:
    html = client.get("/", headers=HTML).text
    urls = re.findall(r'(?:src|href)="(ui/assets/[^"]+)"', html)
    assert len(urls) == len(ui_page.ASSET_FILES)
    total = len(html.encode())
    for url in urls:
        assert re.search(r"\.[0-9a-f]{12}\.", url), url
        resp = client.get("/" + url)
        assert resp.status_code == 200
        assert resp.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["content-type"].split(";")[0] in ("text/javascript", "text/css")
        total += len(resp.content)
    assert total <= ui_page.MAX_PAGE_BYTES, total
    assert ui_page.bundle().total_bytes <= ui_page.MAX_PAGE_BYTES
    assert_error(client.get("/ui/assets/app.000000000000.js"), 404, "not_found")


@pytest.mark.parametrize("path", ["/invocations", "/responses", "/feedback"])
@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x"])
def test_post_routes_take_only_json(client: TestClient, path: str, ctype: str | None) -> None:
    headers = {"content-type": ctype} if ctype else {}
    resp = client.post(path, content=b'{"input": [{"role": "user", "content": "hi"}]}',
                       headers=headers)
    assert_error(resp, 415, "unsupported_media_type", "Content-Type: application/json")


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "Application/JSON", "application/vnd.api+json"])
def test_json_content_types_are_accepted(client: TestClient, ctype: str) -> None:
    resp = client.post("/invocations", content=b'{"input": [{"role": "user", "content": "x"}]}',
                       headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text


def test_no_cors_unless_configured() -> None:
    preflight = {"origin": "https://evil.example", "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type"}
    with client_for() as c:
        resp = c.options("/responses", headers=preflight)
        assert "access-control-allow-origin" not in resp.headers
        resp = c.post("/invocations", json=MSG, headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in resp.headers
    with client_for(cors_origins="https://portal.example, https://other.example") as c:
        ok = c.options("/responses", headers={**preflight, "origin": "https://portal.example"})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://portal.example"
        denied = c.options("/responses", headers=preflight)
        assert "access-control-allow-origin" not in denied.headers


def test_no_ui_setting_turns_the_page_off(monkeypatch: pytest.MonkeyPatch) -> None:
    with client_for(ui=False) as c:
        assert_error(c.get("/", headers=HTML), 404, "not_found")
        assert c.get("/ui/assets/x.js").status_code == 404
    monkeypatch.setenv("MLFLOW_APP_AGENT_UI", "false")
    assert ServerSettings.from_env().ui is False


def test_openapi_describes_feedback(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/feedback"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["value"] == {"type": "boolean"}
    assert {"404", "415", "422"} <= set(op["responses"])


@pytest.mark.parametrize("body,words", [
    ({"value": True}, ["exactly one of request_id or trace_id"]),
    ({"request_id": "a", "trace_id": "b", "value": True}, ["exactly one"]),
    ({"request_id": "a", "value": "yes"}, ["value must be true"]),
    ({"request_id": "a'; drop", "value": True}, ["request_id must be"]),
    ({"request_id": "a", "value": True, "comment": 3}, ["comment must be a string"]),
    ({"request_id": "a", "value": True, "score": 5}, ["unknown field(s) score"]),
])
def test_feedback_bodies_are_checked(client: TestClient, body: dict[str, Any],
                                     words: list[str]) -> None:
    assert_error(client.post("/feedback", json=body), 422, "invalid_request", *words)


def test_feedback_needs_a_trace_and_with_require_auth_a_user() -> None:
    body = {"request_id": "r1", "value": True}
    with client_for() as c:  # tracing off
        assert_error(c.post("/feedback", json=body), 404, "not_found", "tracing is off")
    with client_for(require_auth=True) as c:
        assert_error(c.post("/feedback", json=body), 401, "unauthenticated")
