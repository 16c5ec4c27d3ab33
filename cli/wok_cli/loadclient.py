"""A lean HTTP/1.1 keep-alive client for load: the benchmarks' measured requests and the
fault tests' thousands of registrations and reads (`HttpPool`)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpPool:
    """A lean HTTP/1.1 keep-alive client for thousands of requests.

    httpx spends time quadratic in the number of queued requests when an open loop backs up
    (its pool scans every waiting request on each change) and several times this client's
    CPU per request, which on two cores the services under test would miss. Here a request
    waits for a free connection in a FIFO queue (the wait counts as latency, as a user's
    would), and up to `connections` connections are opened."""

    def __init__(self, base_url: str, *, connections: int = 32, timeout_s: float = 30.0) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._limit = connections
        self._timeout_s = timeout_s
        self._opened = 0
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._all: list[asyncio.StreamWriter] = []

    async def _acquire(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """A connection, and whether it was used before (the server may have closed it)."""
        if self._idle.empty() and self._opened < self._limit:
            self._opened += 1
            try:
                reader, writer = await asyncio.open_connection(self._host, self._port)
            except BaseException:
                self._opened -= 1
                raise
            self._all.append(writer)
            return reader, writer, False
        reader, writer = await self._idle.get()
        return reader, writer, True

    def _discard(self, writer: asyncio.StreamWriter) -> None:
        self._opened -= 1
        writer.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One request; a connection error or timeout raises (OSError, TimeoutError)."""
        body = b"" if json_body is None else json.dumps(json_body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if json_body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        message = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        while True:
            reader, writer, reused = await self._acquire()
            try:
                writer.write(message)
                answer, keep = await asyncio.wait_for(_read_response(reader), self._timeout_s)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                self._discard(writer)
                unanswered = not isinstance(error, asyncio.IncompleteReadError) or not error.partial
                if reused and unanswered:
                    continue  # closed by the server while idle (keep-alive timeout): reconnect
                raise
            except BaseException:
                self._discard(writer)
                raise
            if keep:
                self._idle.put_nowait((reader, writer))
            else:
                self._discard(writer)
            return answer

    async def post_json(self, path: str, payload: Any) -> Response:
        return await self.request("POST", path, json_body=payload)

    async def close(self) -> None:
        for writer in self._all:
            writer.close()
        self._all.clear()

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[Response, bool]:
    """One HTTP/1.1 response: (status and body, whether the connection stays open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b"".join(chunks)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Response(status, body), headers.get("connection", "").lower() != "close"
