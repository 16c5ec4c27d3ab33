"""Runs the nx-27017 MongoDB wire-protocol server: its logging kept free of documents, and
every command answered on the event loop's own thread.

nx-27017 logs every database command with its full content at INFO, which would copy
names and e-mail addresses into the log file; only its warnings and errors are kept.

nx-27017 hands each command to a worker thread (`asyncio.to_thread`) that then waits for
the lock of the command's database. Nothing in a command waits for another command (a
`getMore` on a change stream answers with what is there; sessions and transactions hold no
lock between commands), and the commands of one database run one at a time under that lock
anyway; the hand-over to a thread and back, and the worker threads taking turns on the lock
and the interpreter, cost almost as much CPU as the commands themselves (measured with
inserts, updates and finds from 12 clients on 3 databases: 450-540 µs per command with
them, 250-300 µs without). So the server here reads each connection's messages as they
arrive and answers each one directly, with nx-27017's own parser, command handler (locks,
storage, durability settings unchanged) and reply builder. Only the server loop is ours;
argument parsing, the pid file and signal handling stay nx-27017's. The price: a long
command (a rebuild's read of every fact) holds up the other databases' commands meanwhile,
where threads would have interleaved them.

Usage: `python -m wok_cli.mongo_server <nx-27017 arguments>`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from typing import Any

log = logging.getLogger("wok_cli.mongo_server")

HEADER_SIZE = 16


class WireConnection(asyncio.Protocol):
    """One client connection: messages are framed from the bytes received and each is
    answered before the next is read, in order, as nx-27017's own loop does."""

    def __init__(self, handler: Any) -> None:
        from nx_27017 import wire_protocol

        self._handler = handler
        self._wire = wire_protocol  # imported once per connection, not per message
        self._max_size = wire_protocol.MAX_MESSAGE_SIZE_BYTES
        self._received = bytearray()
        self._transport: asyncio.Transport | None = None
        self._connection_id = str(uuid.uuid4())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._handler.increment_connections()

    def connection_lost(self, exc: Exception | None) -> None:
        self._handler.decrement_connections()
        self._handler.close_streams_for_connection(self._connection_id)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        received = self._received
        received += data
        while len(received) >= HEADER_SIZE and self._transport is not None:
            length = int.from_bytes(received[0:4], "little", signed=True)
            if length < HEADER_SIZE or length > self._max_size:
                log.warning("invalid message length %d: connection closed", length)
                self._transport.close()
                return
            if len(received) < length:
                return
            message = bytes(received[:length])
            del received[:length]
            reply = self.answer(message)
            if reply is not None:
                self._transport.write(reply)

    def answer(self, message: bytes) -> bytes | None:
        """nx-27017's reply to one message (its `server.handle_client`, without threads)."""
        wire = self._wire
        request_id = int.from_bytes(message[4:8], "little", signed=True)
        opcode = int.from_bytes(message[12:16], "little", signed=True)
        handler = self._handler
        if opcode == wire.WireProtocol.OP_MSG:
            try:
                parsed = wire.OP_MSG.parse(message)
                parsed["_conn_id"] = self._connection_id
                sections = parsed["sections"]
                writes = any(
                    kind == "payload_docs"
                    or (kind == "body" and isinstance(body, dict) and "insert" in body)
                    for kind, body in sections
                )
                if writes:
                    request_id, document = handler.handle_insert(parsed)
                else:
                    request_id, document = handler.handle_command(parsed)
            except Exception as error:
                logging.getLogger("nx_27017").exception("Error handling OP_MSG")
                document = {"ok": 0, "errmsg": str(error)}
            try:
                return wire.ResponseBuilder.build_op_msg_reply(
                    request_id=wire._get_next_request_id(),
                    response_to=request_id,
                    document=document,
                )
            except Exception as error:
                # An answer that cannot be encoded: the client gets an error, not a closed
                # connection (a driver would send a write again after that).
                log.error("answer not encodable: %s", type(error).__name__)
                return wire.ResponseBuilder.build_op_msg_reply(
                    request_id=wire._get_next_request_id(),
                    response_to=request_id,
                    document={"ok": 0, "errmsg": "the server could not encode its answer"},
                )
        if opcode == wire.WireProtocol.OP_QUERY:
            try:
                parsed = wire.OP_QUERY.parse(message)
                parsed["_conn_id"] = self._connection_id
                reply_id, documents = handler.handle_query(parsed)
                return wire.ResponseBuilder.build_reply(reply_id, parsed["request_id"], documents)
            except Exception as error:
                logging.getLogger("nx_27017").error("Error handling OP_QUERY: %s", error)
                return None
        return wire.ResponseBuilder.build_op_msg_reply(
            request_id=0,
            response_to=request_id,
            document={"ok": 0, "errmsg": f"Unsupported opcode: {opcode}"},
        )


async def serve(host: str, port: int, handler: Any) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: WireConnection(handler), host, port)
    address = server.sockets[0].getsockname()
    logging.getLogger("nx_27017").warning("Listening on %s:%s", address[0], address[1])
    async with server:
        await server.serve_forever()


def run_server(host: str, port: int, handler: Any, use_threading: bool = True) -> None:
    """Stands in for nx-27017's `run_server_threaded` (same arguments); `--threaded` still
    selects nx-27017's own thread-per-connection server."""
    from nx_27017.server import run_server_threaded

    if use_threading:
        run_server_threaded(host, port, handler, use_threading=use_threading)
        return
    asyncio.run(serve(host, port, handler))


def main() -> None:
    from nx_27017 import daemon
    from nx_27017.nx_27017 import main as nx_main

    logging.getLogger("nx_27017").setLevel(logging.WARNING)
    daemon.run_server_threaded = run_server  # type: ignore[assignment]
    sys.argv[0] = "nx-27017"
    sys.exit(nx_main())


if __name__ == "__main__":
    main()
