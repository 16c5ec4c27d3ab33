"""Notification alone: from a registration's `ParticipantRegistered` on the topic to its
confirmation in the SMTP sink, p50/p99, with the CPU each process spent per mail.

    .venv/bin/python bench/notification.py [--rate 200] [--duration 5]

Starts an embedded stack with registration and notification only (reporting, assessment
and exchange would only share the CPU), posts public registrations at a fixed rate (open
loop) and follows `registration.events.v1` without a consumer group. The outbox relay's
own delay is the arrival on the topic minus the 201; notification's part is the e-mail's
arrival in the sink (the sink stamps it into the `.eml` file name) minus the arrival of
the registration's event on the topic, per registration. CPU per mail: the CPU seconds
each process of the stack used during the run (from /proc), divided by the mails.

Target (issue 8): 201 -> e-mail p99 under 2 s at 200 registrations/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from _common import (
    HttpPool,
    Target,
    bench_stack,
    console,
    http_client,
    machine,
    ms,
    percentile,
    print_p99_target,
    print_table,
    register_at_rate,
    run_id,
    set_up_events,
)
from freshness import Follower, MailArrivals, Observations, wait_until

from wok_contracts.topics import REGISTRATION_EVENTS

TARGET_MAIL_P99_S = 2.0
PROCESSES = ("nx-27017", "tansu", "smtp-sink", "registration", "notification")


def cpu_seconds(stack: object) -> dict[str, float]:
    """CPU seconds (user + system) of each process of the stack so far, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for name in PROCESSES:
        try:
            pid = stack.pid(name)  # type: ignore[attr-defined]
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, KeyError, AttributeError, TypeError):
            continue
        found[name] = (int(fields[11]) + int(fields[12])) / ticks
    return found


@contextlib.asynccontextmanager
async def profiled_notification(stack: Any, profile: Path | None) -> AsyncIterator[None]:
    """With `--profile FILE`: notification runs here under cProfile (its statistics go to
    FILE when it stops) instead of as one of the stack's processes."""
    if profile is None:
        yield
        return
    assert stack.embedded is not None
    environment = {**os.environ, **stack.embedded.service_environment()}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "wok_notification"),
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{stack.embedded.settings.port_of('notification')}"
    try:
        async with http_client(url) as probe:
            for _ in range(100):
                with contextlib.suppress(Exception):
                    if (await probe.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.2)
        yield
    finally:
        # SIGINT: uvicorn re-raises the signal it stopped on, and only a KeyboardInterrupt
        # (not the default SIGTERM death) lets cProfile write its statistics
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), timeout=30)


async def measure(arguments: argparse.Namespace) -> int:
    run = run_id()
    count = max(1, int(arguments.rate * arguments.duration))
    services = ["registration"] if arguments.profile else ["registration", "notification"]
    async with (
        bench_stack(None, services=services) as stack,
        http_client(stack.registration_url) as setup,
        HttpPool(stack.registration_url, connections=64) as client,
        profiled_notification(stack, arguments.profile),
    ):
        with console.status("onboarding municipalities and scheduling events…"):
            targets: list[Target] = await set_up_events(
                setup,
                admin_key=stack.admin_key,
                municipalities=arguments.municipalities,
                events_per_municipality=arguments.events,
                capacity=arguments.capacity,
                seed=int(time.time()),
            )
        await asyncio.sleep(2)  # notification has remembered the dialogue events
        observations = Observations(
            registrations_topic=stack.topic(REGISTRATION_EVENTS),
            municipalities={target.ags for target in targets},
        )
        follower = Follower(
            stack.kafka_bootstrap, [stack.topic(REGISTRATION_EVENTS)], observations.on_record
        )
        await follower.start()
        began = time.time()
        cpu_before = cpu_seconds(stack.embedded)
        try:
            registered = await register_at_rate(
                client, targets, run=run, rate=arguments.rate, count=count
            )
            # registration id -> wall-clock time of its 201; address -> registration id
            ingest, created, addresses = registered.ingest, registered.created, registered.addresses
            # Each mail read once: a new reader every half second read every file again.
            arrivals = MailArrivals(stack.mail_dir, addresses, began - 1)
            mails = arrivals.found

            def all_mailed() -> bool:
                return len(arrivals.update()) >= len(created)

            await wait_until(
                "waiting for every confirmation e-mail…", all_mailed, timeout_s=arguments.timeout
            )
            cpu_after = cpu_seconds(stack.embedded)
        finally:
            await follower.stop()

    published = observations.published
    relay = [published[rid] - at for rid, at in created.items() if rid in published]
    notification = [mails[rid] - published[rid] for rid in mails if rid in published]
    total = [mails[rid] - at for rid, at in created.items() if rid in mails]
    console.print(f"machine: {machine()}")
    console.print(
        f"{count} registrations offered at {arguments.rate:g}/s: {ingest.completed} answered "
        f"201 ({ingest.throughput:.1f}/s), {ingest.failures} failed; {len(mails)} mails"
    )
    rows = [
        [name, f"{len(lags)} / {len(created)}"]
        + [ms(percentile(lags, q)) for q in (50, 99)]
        + [ms(max(lags, default=float("nan")))]
        for name, lags in (
            ("201 -> ParticipantRegistered (relay)", relay),
            ("ParticipantRegistered -> e-mail (notification)", notification),
            ("201 -> e-mail", total),
        )
    ]
    print_table("Confirmation e-mails", ["path", "seen", "p50 ms", "p99 ms", "max ms"], rows)
    if mails and published:
        first = min(published[rid] for rid in mails if rid in published)
        span = max(mails.values()) - first
        console.print(f"notification throughput: {len(mails) / max(span, 1e-9):.1f} mails/s")
    per_mail = {
        name: (cpu_after.get(name, 0.0) - cpu_before.get(name, 0.0)) / max(1, len(mails))
        for name in cpu_before
    }
    console.print(
        "CPU per mail: " + ", ".join(f"{name} {s * 1000:.2f} ms" for name, s in per_mail.items())
    )
    print_p99_target(
        f"201 -> e-mail p99 < {TARGET_MAIL_P99_S:g} s at {arguments.rate:g}/s",
        total,
        expected=count,
        limit_s=TARGET_MAIL_P99_S,
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="registrations/s")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load")
    parser.add_argument("--municipalities", type=int, default=4)
    parser.add_argument("--events", type=int, default=5, help="dialogue events per municipality")
    parser.add_argument("--capacity", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for mails")
    parser.add_argument(
        "--profile", type=Path, help="run notification under cProfile, statistics to this file"
    )
    sys.exit(asyncio.run(measure(parser.parse_args())))


if __name__ == "__main__":
    main()
