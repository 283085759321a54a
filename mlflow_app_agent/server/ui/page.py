"""Serving the page and its content-hashed assets, with the security headers."""

from __future__ import annotations

import functools
import hashlib
import html
from dataclasses import dataclass
from importlib import resources

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mlflow_app_agent.server.auth import context_from, request_id_from

#: what the page is built from, in ``static/`` (the HTML names them by these keys)
ASSET_FILES = ("app.css", "app.js", "vendor/marked.umd.js", "vendor/purify.min.js")
#: the budget the page's assets must stay within, uncompressed (tests check it)
MAX_PAGE_BYTES = 300 * 1024

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml"}

# Scripts, styles, images and fetches from the app itself only; no inline script or style
# element, no plugins, no <base> tricks, no framing (the page acts as the signed-in user:
# clickjacking its feedback or send buttons must not be possible). Images: model answers
# may contain markdown images; an outside URL would leak the conversation to that host.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")

SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


@dataclass(frozen=True)
class Asset:
    url_name: str  # e.g. app.3f2a1b9c0d4e.js
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Bundle:
    template: str
    assets: dict[str, Asset]  # by url_name
    urls: dict[str, str]  # source file -> url path relative to the page

    @property
    def total_bytes(self) -> int:
        return len(self.template.encode()) + sum(len(a.body) for a in self.assets.values())


def _hashed_name(path: str, body: bytes) -> str:
    name = path.rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    if stem.endswith(".umd") or stem.endswith(".min"):  # marked.umd.js -> marked.<h>.umd.js
        base, _, kind = stem.rpartition(".")
        stem, ext = base, f"{kind}.{ext}"
    return f"{stem}.{hashlib.sha256(body).hexdigest()[:12]}.{ext}"


@functools.cache
def bundle() -> Bundle:
    """Read the assets once per process and name each by its content hash."""
    root = resources.files("mlflow_app_agent.server.ui") / "static"
    assets: dict[str, Asset] = {}
    urls: dict[str, str] = {}
    for path in ASSET_FILES:
        body = (root / path).read_bytes()
        url_name = _hashed_name(path, body)
        ext = "." + path.rsplit(".", 1)[-1]
        assets[url_name] = Asset(url_name, body, _TYPES[ext])
        urls[path] = f"ui/assets/{url_name}"
    template = (root / "index.html").read_text(encoding="utf-8")
    for path, url in urls.items():
        template = template.replace("{{" + path + "}}", url)
    return Bundle(template, assets, urls)


def wants_html(accept: str | None) -> bool:
    """A browser navigation (``text/html`` listed), not an API client's default ``*/*``."""
    return bool(accept) and "text/html" in (accept or "").lower()


async def chat_page(request: Request) -> Response:
    if not wants_html(request.headers.get("accept")):
        raise HTTPException(404)  # API clients: the same JSON 404 as before the page
    ctx = context_from(request.headers, request_id_from(request.headers))
    user = ctx.user or ""
    body = bundle().template.replace("{{user}}", html.escape(user, quote=True))
    headers = {**SECURITY_HEADERS, "cache-control": "no-store", "vary": "Accept"}
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


async def asset(request: Request) -> Response:
    found = bundle().assets.get(request.path_params["name"])
    if found is None:
        raise HTTPException(404)
    headers = {**SECURITY_HEADERS, "cache-control": "public, max-age=31536000, immutable"}
    return Response(found.body, media_type=found.content_type, headers=headers)
