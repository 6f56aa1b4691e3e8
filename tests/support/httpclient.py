"""Real HTTP for tests of the REST API: JSON in and out, error statuses as answers."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

import orjson
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httputil import HTTPHeaders

TIMEOUT = 30.0


class Answer(NamedTuple):
    status: int
    body: Any
    headers: HTTPHeaders


def ch(name: str) -> str:
    """A channel name as one path segment."""
    return quote(name, safe="")


def api_of(server: Any, token: str | None) -> Api:
    """The standalone `server`'s API as the caller with `token`."""
    return Api(server.http_url + "/api/", token)


class Api:
    """The API at `root` (ending in '/') as one caller."""

    def __init__(
        self, root: str, token: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.root = root
        self.headers = dict(headers or {})
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    def as_(self, token: str | None) -> Api:
        return Api(self.root, token)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> Answer:
        data = raw if raw is not None else None if body is None else orjson.dumps(body)
        if data is None and method in ("POST", "PATCH", "PUT"):
            data = b""
        request = HTTPRequest(
            self.root + path,
            method=method,
            headers={**self.headers, **(headers or {})},
            body=data,
            request_timeout=timeout,
            allow_nonstandard_methods=True,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code == 599:
            raise response.error  # type: ignore[misc]
        parsed = orjson.loads(response.body) if response.body else None
        return Answer(response.code, parsed, response.headers)

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.call("POST", path, body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.call("PATCH", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.call("PUT", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Answer:
        return await self.call("DELETE", path, **kw)


async def raw_request(url: str, headers: dict[str, str]) -> tuple[asyncio.StreamReader, Any]:
    """Send a GET on a bare socket (no resolver threads, no client pool); returns reader, writer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    return reader, writer


async def raw_answer(reader: asyncio.StreamReader, timeout: float = TIMEOUT) -> Answer:
    data = await asyncio.wait_for(reader.read(), timeout)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = HTTPHeaders.parse(head.split(b"\r\n", 1)[1].decode())
    return Answer(status, orjson.loads(body) if body else None, headers)


def assert_error(answer: Any, status: int, code: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["Content-Type"].startswith("application/json")
    assert set(answer.body) == {"error"}, answer.body
    assert answer.body["error"]["code"] == code, answer.body
    assert isinstance(answer.body["error"]["message"], str) and answer.body["error"]["message"]


async def held(task: asyncio.Task[Any], seconds: float = 0.5) -> None:
    """The request is still being held after a moment."""
    await asyncio.sleep(seconds)
    assert not task.done(), task.result()
