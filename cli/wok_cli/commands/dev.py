"""`wok dev`: the embedded stack in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from wok_cli.devstack import EmbeddedStack, StackSettings, StackStartError
from wok_runtime.logging import configure_logging

SUPERVISE_INTERVAL_S = 1.0

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Database files, caught mails and logs (default: WOK_DATA_DIR or ./.wok)",
        file_okay=False,
    ),
]
ResetOption = Annotated[
    bool,
    typer.Option(
        "--reset",
        help="Delete the database and the caught mails first "
        "(the broker keeps messages in memory, so it starts empty anyway)",
    ),
]


def dev(data_dir: DataDirOption = None, reset: ResetOption = False) -> None:
    """Start the embedded stack and keep it running until Ctrl-C.

    Runs tansu, nx-27017, an SMTP sink and the four services; logs go to <data dir>/logs.
    """
    # The stack's own progress is shown here; library chatter would only interleave with it.
    configure_logging(service="wok", level="WARNING")
    console = Console()
    settings = StackSettings(data_dir=data_dir) if data_dir else StackSettings()
    stack = EmbeddedStack(settings, reset=reset)
    # SIGTERM ends `wok dev` as Ctrl-C does, so the children are stopped in order either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with console.status("Starting the embedded stack…"):
            stack.start()
        console.print(stack_summary(stack))
        console.print("Running. Press Ctrl-C to stop.")
        supervise(stack, console)
    except KeyboardInterrupt:
        console.print("Stopping…")
    except StackStartError as error:
        console.print(Text(str(error), style="red"))
        raise typer.Exit(1) from None
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    console.print("Stopped.")


def supervise(stack: EmbeddedStack, console: Console) -> None:
    """Wait for Ctrl-C, reporting any process of the stack that ends meanwhile."""
    reported: set[str] = set()
    while True:
        time.sleep(SUPERVISE_INTERVAL_S)
        for name, code in stack.exited().items():
            if name not in reported:
                reported.add(name)
                console.print(
                    Text(f"{name} exited with code {code}; see {stack.log_path(name)}", "yellow")
                )


def stack_summary(stack: EmbeddedStack) -> Group:
    """The addresses and keys of a running stack, as `wok dev` prints them."""
    addresses = Table(title="Weltoffene Kommune: embedded stack", title_justify="left")
    addresses.add_column("what", style="bold")
    addresses.add_column("address")
    addresses.add_column("API docs")
    for name, url in stack.service_urls.items():
        addresses.add_row(name, url, f"{url}/docs")
    addresses.add_row("Kafka bootstrap", stack.kafka_bootstrap, "")
    if stack.settings.topic_prefix:
        addresses.add_row("topic prefix", stack.settings.topic_prefix, "")
    addresses.add_row("MongoDB", stack.mongodb_uri, "")
    addresses.add_row("SMTP", f"{stack.smtp_host}:{stack.smtp_port}", "")
    addresses.add_row("mail folder", str(stack.mail_dir), "")
    addresses.add_row("logs", str(stack.logs_dir), "")

    keys = Table(title="Keys", title_justify="left")
    keys.add_column("setting", style="bold")
    keys.add_column("value")
    keys.add_row("WOK_ADMIN_KEY", stack.admin_key)
    keys.add_row("WOK_FEDERAL_KEY", stack.federal_key)
    keys.add_row("WOK_SERVICE_KEY", stack.service_key)
    parts: list[Table | Text] = [addresses, keys]
    if stack.generated_keys:
        parts.append(
            Text(
                f"Generated for this run: {', '.join(stack.generated_keys)}. "
                "Set them in the environment to keep the same keys next time.",
                style="dim",
            )
        )
    return Group(*parts)
