"""The embedded stack's MongoDB (`python -m wok_cli.mongo_server`: nx-27017 answering every
command on its event loop): many clients and databases at once, the wire framing, a hard
kill, and logs without documents."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson
import pytest
from pymongo import ReturnDocument

from wok_cli.settings import free_ports
from wok_runtime.mongo import mongo_client

OP_MSG = 2013


@dataclass
class Server:
    data_dir: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wok_cli.mongo_server",
                "--data-dir",
                str(self.data_dir / "mongo"),
                "-p",
                str(self.port),
                "--host",
                "127.0.0.1",
                "--log-file",
                os.devnull,
                "--pid-file",
                str(self.data_dir / "nx.pid"),
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"not listening on {self.port}: {self.log.read_text()}")

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=10)
        (self.data_dir / "nx.pid").unlink(missing_ok=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    (port,) = free_ports(1)
    running = Server(data_dir=tmp_path, port=port, log=tmp_path / "nx.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()


async def test_many_clients_on_several_databases_get_exact_answers(server: Server) -> None:
    """60 takers of 10 places in each of three databases, side by side: 10 each, no more."""
    clients = [mongo_client(server.uri) for _ in range(3)]
    try:
        databases = [client[f"wok_{name}"] for client, name in zip(clients, "abc", strict=True)]
        for database in databases:
            await database.events.insert_one({"_id": "d-1", "free": 10, "taken": {}})

        async def take(database: Any, person: int) -> bool:
            found = await database.events.find_one_and_update(
                {"_id": "d-1", "free": {"$gt": 0}},
                {"$inc": {"free": -1}, "$set": {f"taken.p{person}": True}},
                return_document=ReturnDocument.AFTER,
            )
            return found is not None

        results = await asyncio.gather(
            *(take(database, person) for person in range(60) for database in databases)
        )
        assert sum(results) == 30
        for database in databases:
            stored = await database.events.find_one({"_id": "d-1"})
            assert stored is not None
            assert (stored["free"], len(stored["taken"])) == (0, 10)
    finally:
        for client in clients:
            await client.close()


def op_msg(request_id: int, command: dict[str, Any]) -> bytes:
    body = struct.pack("<I", 0) + b"\x00" + bson.encode(command)
    return struct.pack("<iiii", 16 + len(body), request_id, 0, OP_MSG) + body


def read_reply(connection: socket.socket) -> tuple[int, dict[str, Any]]:
    """(the request id answered, the reply's document)."""
    header = b""
    while len(header) < 16:
        header += connection.recv(16 - len(header))
    length, _, response_to, opcode = struct.unpack("<iiii", header)
    assert opcode == OP_MSG
    body = b""
    while len(body) < length - 16:
        body += connection.recv(length - 16 - len(body))
    return response_to, bson.decode(body[5:])


def test_messages_split_or_joined_on_the_wire_each_get_their_answer(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        joined = op_msg(1, {"ping": 1, "$db": "admin"}) + op_msg(
            2, {"insert": "notes", "documents": [{"_id": "n-1", "text": "x"}], "$db": "wok_t"}
        )
        connection.sendall(joined)
        assert read_reply(connection)[0] == 1
        answered, document = read_reply(connection)
        assert (answered, document["ok"], document["n"]) == (2, 1, 1)
        for byte in op_msg(3, {"find": "notes", "filter": {}, "$db": "wok_t"}):
            connection.sendall(bytes([byte]))
        answered, document = read_reply(connection)
        assert answered == 3
        assert document["cursor"]["firstBatch"] == [{"_id": "n-1", "text": "x"}]


def test_a_message_with_an_impossible_length_closes_only_its_connection(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as broken:
        broken.sendall(struct.pack("<iiii", 4, 1, 0, OP_MSG))
        assert broken.recv(16) == b""  # closed by the server
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as healthy:
        healthy.sendall(op_msg(7, {"ping": 1, "$db": "admin"}))
        assert read_reply(healthy) == (7, {"ok": 1.0})


async def test_what_was_acknowledged_survives_a_hard_kill(server: Server) -> None:
    client = mongo_client(server.uri)
    try:
        await client.wok_k.contacts.insert_one({"_id": "c-1", "email": "person@example.org"})
        await client.wok_k.contacts.update_one({"_id": "c-1"}, {"$set": {"confirmed": 1}})
    finally:
        await client.close()
    server.stop(signal.SIGKILL)
    server.start()
    client = mongo_client(server.uri)
    try:
        stored = await client.wok_k.contacts.find_one({"_id": "c-1"})
    finally:
        await client.close()
    assert stored == {"_id": "c-1", "email": "person@example.org", "confirmed": 1}


async def test_documents_never_reach_its_log(server: Server) -> None:
    client = mongo_client(server.uri)
    try:
        await client.wok_l.people.insert_one({"_id": "p-1", "email": "erika@example.org"})
        assert await client.wok_l.people.find_one({"email": "erika@example.org"}) is not None
    finally:
        await client.close()
    server.stop()
    log = server.log.read_text()
    assert "Listening on 127.0.0.1" in log
    assert "erika" not in log


async def test_commands_are_answered_without_worker_threads(server: Server) -> None:
    """nx-27017's own loop hands every command to a thread and back; this one answers on the
    event loop (the hand-over cost more CPU than most commands)."""
    client = mongo_client(server.uri)
    try:
        await asyncio.gather(*(client.wok_w.notes.insert_one({"_id": f"n-{n}"}) for n in range(50)))
        assert await client.wok_w.notes.count_documents({}) == 50
    finally:
        await client.close()
    assert server.process is not None
    assert len(os.listdir(f"/proc/{server.process.pid}/task")) == 1
