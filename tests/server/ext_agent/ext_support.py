"""Shipped with the extension agent in its code_paths: a middleware, a resource the
start-up hook opens and the shutdown hook closes, and app factories for --app-factory."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any


class StampHeader:
    """Pure ASGI middleware adding ``x-stamp`` to every HTTP response."""

    def __init__(self, app: Any, value: str = "on") -> None:
        self.app = app
        self.value = value.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-stamp", self.value)]}
            await send(message)

        await self.app(scope, receive, stamped)


class Ledger:
    """A real resource: a sqlite connection the hooks open and close."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False)
        self.conn.execute("create table if not exists hits (n integer)")
        self.closed = False

    def hit(self) -> int:
        self.conn.execute("insert into hits values (1)")
        return int(self.conn.execute("select count(*) from hits").fetchone()[0])

    def close(self) -> None:
        self.conn.close()
        self.closed = True


def marker_dir() -> Path:
    return Path(os.environ.get("EXT_MARKER_DIR", "."))


def record(event: str, **facts: Any) -> None:
    with (marker_dir() / "events.jsonl").open("a") as out:
        out.write(json.dumps({"event": event, **facts}) + "\n")


def wrapping_factory(app: Any) -> Any:
    """--app-factory: returns the same app with one more route."""
    from starlette.responses import JSONResponse

    async def factory_route(request: Any) -> Any:
        return JSONResponse({"from": "factory"})

    app.router.add_route("/from-factory", factory_route)
    return app


def broken_factory(app: Any) -> Any:
    """--app-factory that returns something that is not an ASGI app."""
    return {"not": "an app"}
