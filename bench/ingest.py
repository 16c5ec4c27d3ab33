"""Registration HTTP ingest: requests/s and p50/p99 latency at fixed rates (open loop), and
the ratio to a bare FastAPI endpoint inserting one document into the same MongoDB server.

    .venv/bin/python bench/ingest.py [--rates 50,100,200] [--duration 5] [--data-dir DIR]
                                     [--count-commands]

Starts an embedded stack with the registration service alone (tansu, nx-27017, the SMTP
sink, registration as a process; `--full-stack` adds the consumers, `--data-dir` uses the
stack `wok dev` runs there), onboards fresh municipalities with dialogue events and posts
public registrations to them. The bare endpoint (this file, `--bare-server`) is served by
uvicorn in its own process exactly as the services are, validates a body of the same shape
and inserts one document with the same driver into the same nx-27017.

`--count-commands` also prints the database commands the registration process sent per
request in each phase (its `wok_mongo_commands_total` on /metrics, before and after).

Targets (issue 8): saturation throughput at least 0.8 of the bare endpoint's; p99 under
50 ms at 200 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from _common import (
    CommandCounts,
    HttpPool,
    LoadResult,
    Send,
    bench_stack,
    closed_loop,
    commands_per,
    console,
    http_client,
    machine,
    mongo_commands,
    ms,
    open_loop,
    print_table,
    print_target,
    registration_body,
    run_id,
    set_up_events,
)
from pydantic import BaseModel, EmailStr

TARGET_RATIO = 0.8
TARGET_P99_S = 0.050
TARGET_RATE = 200.0


# -- the bare endpoint (runs in its own process) ---------------------------------------------


class BareRegistration(BaseModel):
    """The registration body's shape, validated as FastAPI would (not the service's rules)."""

    name: str
    email: EmailStr
    sector: str
    language: str = "de"
    consent: Literal[True]


def serve_bare(*, host: str, port: int, mongodb_uri: str) -> None:
    """A FastAPI app with one POST that validates a registration-shaped body and inserts it."""
    import uvicorn
    from fastapi import FastAPI

    from wok_runtime.mongo import mongo_client

    app = FastAPI(title="bare insert")
    collection = mongo_client(mongodb_uri)["wok_bench_bare"]["registrations"]

    @app.post("/v1/dialogue-events/{dialogue_event_id}/registrations", status_code=201)
    async def register(dialogue_event_id: str, body: BareRegistration) -> dict[str, str]:
        document = {
            "_id": uuid.uuid4().hex,
            "dialogue_event_id": dialogue_event_id,
            **body.model_dump(),
            "registered_at": datetime.now(UTC),
        }
        await collection.insert_one(document)
        return {"registration_id": document["_id"], "status": "confirmed"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_bare(mongodb_uri: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--bare-server",
                "--port",
                str(port),
                "--mongodb-uri",
                mongodb_uri,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the bare endpoint exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the bare endpoint did not start within 60 s")


def stop_bare(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- database commands of the registration process (--count-commands) --------------------------


async def registration_commands(enabled: bool, url: str) -> CommandCounts:
    return await mongo_commands({"registration": url}) if enabled else {}


def commands_per_request(before: CommandCounts, after: CommandCounts, *, completed: int) -> str:
    """Database commands per answered request, in all and the most frequent kinds."""
    per = commands_per(before, after, completed).get("registration", {})
    if not completed or not per:
        return "-"
    total = sum(commands for commands, _ in per.values())
    top = sorted(per.items(), key=lambda item: -item[1][0])[:3]
    return f"{total:.2f} (" + ", ".join(f"{c} {n} {v[0]:.2f}" for (c, n), v in top) + ")"


# -- the measurement -------------------------------------------------------------------------


def poster(client: HttpPool, *, targets: list[Any], run: str, offset: int) -> Send:
    """Registration number `offset + i` to target i mod len(targets); anything but 201 fails."""

    async def send(number: int) -> None:
        serial = offset + number
        target = targets[serial % len(targets)]
        response = await client.post_json(
            f"/v1/dialogue-events/{target.dialogue_event_id}/registrations",
            registration_body(run=run, number=serial),
        )
        if response.status != 201:
            raise RuntimeError(f"{response.status} {response.body[:200]!r}")

    return send


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) each process has used so far."""
    used = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name, pid in pids.items():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[name] = (int(fields[11]) + int(fields[12])) / tick
    return used


def cpu_per_request(
    before: dict[str, float], after: dict[str, float], *, server: str, completed: int
) -> str:
    """CPU ms per answered request of the endpoint's process and of nx-27017."""
    if not completed or server not in after or "nx-27017" not in after:
        return "-"
    own = (after[server] - before[server]) * 1000 / completed
    mongo = (after["nx-27017"] - before["nx-27017"]) * 1000 / completed
    return f"{own:.2f} + {mongo:.2f}"


def row(name: str, rate: str, result: LoadResult, cpu: str = "-") -> list[str]:
    return [
        name,
        rate,
        str(result.completed),
        str(result.failures),
        f"{result.throughput:.1f}",
        ms(result.p(50)),
        ms(result.p(99)),
        ms(max(result.latencies, default=float("nan"))),
        cpu,
    ]


async def measure(arguments: argparse.Namespace) -> int:
    rates = [float(rate) for rate in arguments.rates.split(",") if rate]
    services = None if arguments.full_stack else ["registration"]
    run = run_id()
    counting = arguments.count_commands
    commands: list[str] = []
    async with bench_stack(arguments.data_dir, services=services) as stack:
        registration_url = stack.registration_url
        log_dir = stack.embedded.logs_dir if stack.embedded else Path(tempfile.gettempdir())
        bare, bare_url = start_bare(stack.mongodb_uri, log_dir / "bench-bare.log")
        # CPU per request is only attributable on a stack this script started.
        pids: dict[str, int] = {}
        if stack.embedded is not None:
            for process in ("registration", "nx-27017"):
                if (pid := stack.embedded.pid(process)) is not None:
                    pids[process] = pid
            pids["bare insert"] = bare.pid
        try:
            async with (
                http_client(stack.registration_url) as setup,
                HttpPool(stack.registration_url, connections=arguments.connections) as registration,
                HttpPool(bare_url, connections=arguments.connections) as bare_client,
            ):
                with console.status("onboarding municipalities and scheduling events…"):
                    targets = await set_up_events(
                        setup,
                        admin_key=stack.admin_key,
                        municipalities=arguments.municipalities,
                        events_per_municipality=arguments.events,
                        capacity=arguments.capacity,
                        seed=int(time.time()),
                    )
                endpoints = {"registration": registration, "bare insert": bare_client}
                offsets = {"registration": 0, "bare insert": 0}

                def next_send(name: str, count: int) -> Send:
                    send = poster(
                        endpoints[name],
                        targets=targets,
                        run=f"{run}-{name[0]}",
                        offset=offsets[name],
                    )
                    offsets[name] += count
                    return send

                for name in endpoints:  # warm-up: connections, lazy imports, caches
                    await open_loop(
                        next_send(name, arguments.warmup), rate=50, count=arguments.warmup
                    )
                rows = []
                at_rate: dict[tuple[str, float], LoadResult] = {}
                for rate in rates:
                    count = max(1, int(rate * arguments.duration))
                    for name in endpoints:
                        # Let the previous phase's outbox relay catch up before measuring.
                        await asyncio.sleep(arguments.settle)
                        with console.status(f"{name}: {count} requests at {rate:g}/s…"):
                            before = cpu_seconds(pids)
                            counted = await registration_commands(counting, registration_url)
                            result = await open_loop(next_send(name, count), rate=rate, count=count)
                            cpu = cpu_per_request(
                                before, cpu_seconds(pids), server=name, completed=result.completed
                            )
                            if counting and name == "registration":
                                await asyncio.sleep(0.5)  # the relay's share of the last ones
                                per = commands_per_request(
                                    counted,
                                    await registration_commands(counting, registration_url),
                                    completed=result.completed,
                                )
                                commands.append(f"{rate:g}/s: {per}")
                        at_rate[(name, rate)] = result
                        rows.append(row(name, f"{rate:g}/s", result, cpu))
                        for example in result.failure_examples:
                            console.print(f"[yellow]{name} failure: {example}[/yellow]")
                saturation: dict[str, LoadResult] = {}
                for name in endpoints:
                    await asyncio.sleep(arguments.settle)
                    with console.status(
                        f"{name}: {arguments.concurrency} clients for {arguments.duration:g} s…"
                    ):
                        # Closed-loop has no fixed count; offsets leave room for 10^6 requests.
                        before = cpu_seconds(pids)
                        counted = await registration_commands(counting, registration_url)
                        result = await closed_loop(
                            next_send(name, 1_000_000),
                            concurrency=arguments.concurrency,
                            duration_s=arguments.duration,
                        )
                        cpu = cpu_per_request(
                            before, cpu_seconds(pids), server=name, completed=result.completed
                        )
                        if counting and name == "registration":
                            await asyncio.sleep(0.5)
                            per = commands_per_request(
                                counted,
                                await registration_commands(counting, registration_url),
                                completed=result.completed,
                            )
                            commands.append(f"max: {per}")
                    saturation[name] = result
                    rows.append(row(name, f"max ({arguments.concurrency} clients)", result, cpu))
        finally:
            stop_bare(bare)

    console.print(f"machine: {machine()}")
    console.print(
        f"registrations to {arguments.municipalities} municipalities x {arguments.events} "
        f"dialogue events (capacity {arguments.capacity}); latency from when each request "
        "was due (open loop); CPU ms per request of the endpoint's process + nx-27017 (the "
        "outbox relay's share included, counted while the phase ran)"
    )
    print_table(
        "Registration HTTP ingest",
        [
            "endpoint",
            "offered",
            "ok",
            "failed",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "CPU ms/req",
        ],
        rows,
    )
    for line in commands:
        console.print(f"registration database commands per request at {line}")
    ratio = saturation["registration"].throughput / max(saturation["bare insert"].throughput, 1e-9)
    print_target(
        f"registration throughput >= {TARGET_RATIO} x bare insert",
        measured=(
            f"{saturation['registration'].throughput:.1f} / "
            f"{saturation['bare insert'].throughput:.1f} req/s = {ratio:.2f}"
        ),
        met=ratio >= TARGET_RATIO and saturation["bare insert"].completed > 0,
    )
    top_rate = TARGET_RATE if TARGET_RATE in rates else max(rates)
    at_top = at_rate[("registration", top_rate)]
    print_target(
        f"registration p99 < {TARGET_P99_S * 1000:.0f} ms at {top_rate:g} req/s",
        measured=f"{ms(at_top.p(99))} ms",
        met=at_top.p(99) < TARGET_P99_S and at_top.failures == 0,
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200", help="offered rates, req/s")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per rate")
    parser.add_argument("--warmup", type=int, default=50, help="requests before measuring")
    parser.add_argument("--concurrency", type=int, default=16, help="clients at saturation")
    parser.add_argument("--connections", type=int, default=64, help="HTTP connections at most")
    parser.add_argument("--settle", type=float, default=2.0, help="pause between phases (s)")
    parser.add_argument("--municipalities", type=int, default=4)
    parser.add_argument("--events", type=int, default=5, help="dialogue events each")
    parser.add_argument("--capacity", type=int, default=100, help="places per event")
    parser.add_argument("--full-stack", action="store_true", help="run the consumers too")
    parser.add_argument("--data-dir", type=Path, help="measure the stack `wok dev` runs here")
    parser.add_argument(
        "--count-commands",
        action="store_true",
        help="print the registration process's database commands per request",
    )
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mongodb-uri", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.bare_server:
        serve_bare(host="127.0.0.1", port=arguments.port, mongodb_uri=arguments.mongodb_uri)
        return
    sys.exit(asyncio.run(measure(arguments)))


if __name__ == "__main__":
    main()
