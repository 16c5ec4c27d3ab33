"""Start-up: `wok dev` as a subprocess until every service answers `/readyz`, N times.

    .venv/bin/python bench/startup.py [--repeat 3]

Each round starts `wok dev --data-dir <new temporary folder>` on free ports (set through
the `WOK_*` variables, so it runs beside anything else), polls each service's `/readyz`
from here until all four answer 200, records the time since the process was started, then
ends it with SIGTERM (as Ctrl-C does) and waits for it to stop its children.

Target (issue 8): under 10 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import console, machine, percentile, print_table, print_target

from wok_cli.settings import SERVICE_NAMES, free_ports

TARGET_S = 10.0


def wok_command() -> list[str]:
    """The `wok` entry point beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("wok")
    return [str(script)] if script.exists() else [sys.executable, "-m", "wok_cli"]


def one_start(*, timeout_s: float) -> tuple[float, dict[str, float]]:
    """Seconds until all services were ready, and when each one first was."""
    folder = Path(tempfile.mkdtemp(prefix="wok-bench-startup-"))
    kafka, mongo, smtp, *service_ports = free_ports(3 + len(SERVICE_NAMES))
    ports = dict(zip(SERVICE_NAMES, service_ports, strict=True))
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("WOK_")},
        "WOK_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka}",
        "WOK_MONGODB_URI": f"mongodb://127.0.0.1:{mongo}",
        "WOK_SMTP_PORT": str(smtp),
        **{f"WOK_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    log_path = folder / "wok-dev.out"
    ready: dict[str, float] = {}
    began = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*wok_command(), "dev", "--data-dir", str(folder / "data")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    try:
        with httpx.Client(timeout=1.0) as client:
            while len(ready) < len(ports):
                if process.poll() is not None:
                    raise SystemExit(
                        f"wok dev exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
                    )
                if time.monotonic() - began > timeout_s:
                    raise SystemExit(f"not ready within {timeout_s} s: only {sorted(ready)}")
                for name, port in ports.items():
                    if name in ready:
                        continue
                    try:
                        response = client.get(f"http://127.0.0.1:{port}/readyz")
                    except httpx.HTTPError:
                        continue
                    if response.status_code == 200:
                        ready[name] = time.monotonic() - began
                time.sleep(0.05)
        return max(ready.values()), ready
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="how many starts")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after (s)")
    arguments = parser.parse_args()
    totals = []
    rows = []
    for number in range(1, arguments.repeat + 1):
        with console.status(f"start {number} of {arguments.repeat}…"):
            total, ready = one_start(timeout_s=arguments.timeout)
        totals.append(total)
        rows.append(
            [str(number), f"{total:.2f}", *(f"{ready[name]:.2f}" for name in SERVICE_NAMES)]
        )
    console.print(f"machine: {machine()}")
    print_table(
        "wok dev until every service answers /readyz (s since the process started)",
        ["start", "all ready", *SERVICE_NAMES],
        rows,
    )
    console.print(
        f"median {percentile(totals, 50):.2f} s, worst {max(totals):.2f} s over {len(totals)}"
    )
    print_target(
        f"wok dev ready < {TARGET_S:g} s",
        measured=f"worst {max(totals):.2f} s",
        met=max(totals) < TARGET_S,
    )


if __name__ == "__main__":
    main()
