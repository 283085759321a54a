"""The chat page: people who open the app's URL in a browser talk to the agent there.

``GET /`` and ``GET /chat`` answer a browser (``Accept: text/html``) with the page; API
clients keep the JSON they got before. The page streams answers from ``POST /responses``
(the same route and contract as API clients), and thumbs up/down + a comment go to
``POST /feedback`` (:mod:`.feedback`), which logs them on the answer's MLflow trace.

Assets ship inside the wheel (``static/``, no CDN: workspaces may block egress) and are
served from memory at content-hashed URLs (``ui/assets/app.<sha256[:12]>.js``, cached
for a year, immutable); the HTML itself is never cached. Nothing is built: no Node
toolchain at build or run time. Two small, maintained libraries are vendored unchanged
(only their ``sourceMappingURL`` comment removed; licences in ``licenses/``), both fetched
with ``npm pack``:

* **marked 18.2.1** (MIT, ``static/vendor/marked.umd.js``): CommonMark/GFM markdown to
  HTML — fast, dependency-free, ~53 KB, what model answers (lists, tables, code) need;
* **DOMPurify 3.5.0** (Apache-2.0 or MPL-2.0, used under Apache-2.0,
  ``static/vendor/purify.min.js``): model output is untrusted, so marked's HTML is
  sanitized before it touches the DOM (no ``<script>``, no ``on*=`` handlers, no
  ``javascript:`` URLs). Hand-written sanitizers are how XSS happens; this one is the
  browser vendors' reference.

Every page response carries a strict Content-Security-Policy (scripts, styles, images and
connections from the app itself only; no inline script; ``frame-ancestors 'none'``),
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``. The page never
sees the user's token and keeps the conversation in memory only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def install_ui(app: FastAPI) -> None:
    """Add ``GET /``, ``GET /chat`` and the asset route to ``app``."""
    from mlflow_app_agent.server.ui import page

    for path in ("/", "/chat"):
        app.router.add_route(path, page.chat_page, methods=["GET"])
    app.router.add_route("/ui/assets/{name}", page.asset, methods=["GET"])
