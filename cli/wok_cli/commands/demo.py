"""`wok demo`: the main job. Plays a program on the embedded stack and checks the aggregates."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from wok_cli.demo import (
    METRICS,
    MUNICIPALITIES,
    DemoResult,
    Endpoints,
    run_demo,
    verdict,
    write_html_report,
)
from wok_cli.devstack import EmbeddedStack, StackSettings, StackStartError, running_stack
from wok_runtime.logging import configure_logging

MunicipalitiesOption = Annotated[
    int,
    typer.Option(
        "--municipalities",
        "-n",
        min=1,
        max=len(MUNICIPALITIES),
        help="How many model municipalities take part",
    ),
]
ReportOption = Annotated[
    Path, typer.Option("--report", help="Where to write the HTML report", dir_okay=False)
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the aggregates to agree")
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The stack to use (default: WOK_DATA_DIR or ./.wok); if none runs there, "
        "a fresh one is started in <data dir>/demo and stopped afterwards",
        file_okay=False,
    ),
]


@contextlib.contextmanager
def stack_for_demo(settings: StackSettings, console: Console) -> Iterator[Endpoints]:
    """The running stack on the data dir, or a fresh one of the demo's own."""
    endpoints = running_stack(Path(settings.data_dir))
    if endpoints is not None:
        console.print(f"Using the stack running on {settings.data_dir}.")
        yield Endpoints(
            registration_url=endpoints.service_urls["registration"],
            admin_key=endpoints.admin_key,
            kafka_bootstrap=endpoints.kafka_bootstrap,
            topic_prefix=endpoints.topic_prefix,
        )
        return
    demo_settings = settings.model_copy(update={"data_dir": Path(settings.data_dir) / "demo"})
    stack = EmbeddedStack(demo_settings, reset=True)
    with console.status("Starting the embedded stack…"):
        stack.start()
    try:
        console.print(f"Embedded stack started (logs in {stack.logs_dir}).")
        yield Endpoints(
            registration_url=stack.url("registration"),
            admin_key=stack.admin_key,
            kafka_bootstrap=stack.kafka_bootstrap,
            topic_prefix=stack.settings.topic_prefix,
        )
    finally:
        with console.status("Stopping the embedded stack…"):
            stack.stop()


def summary(result: DemoResult) -> Table:
    table = Table(title="Program aggregate on exchange.aggregates.v1", title_justify="left")
    table.add_column("metric", style="bold")
    for column in ("played now", "expected", "aggregate"):
        table.add_column(column, justify="right")
    table.add_column("")
    styles = {"agrees": "green", "withheld": "yellow", "differs": "red"}
    for name in METRICS:
        expected, observed = result.expected[name], result.observed.get(name)
        judged = verdict(name, expected, observed)
        table.add_row(
            name,
            str(result.played_totals[name]),
            "unknown" if expected is None else str(expected),
            "withheld" if observed is None else str(observed),
            Text(judged, styles[judged]),
        )
    return table


def municipalities_table(result: DemoResult) -> Table:
    table = Table(title="What each municipality played", title_justify="left")
    for column in ("municipality", "AGS", "dialogue events", "confirmed", "waitlisted"):
        table.add_column(column, justify="left" if column in ("municipality", "AGS") else "right")
    for played in result.played:
        table.add_row(
            played.name,
            played.ags,
            str(played.dialogue_events),
            str(played.confirmed),
            str(played.waitlisted),
        )
    return table


def demo(
    municipalities: MunicipalitiesOption = 22,
    report: ReportOption = Path("wok-report.html"),
    timeout: TimeoutOption = 180.0,
    data_dir: DataDirOption = None,
) -> None:
    """Play a program with the model municipalities and check the aggregates agree.

    Onboards the municipalities, schedules their dialogue events, registers residents
    (each gets a confirmation e-mail), waits until the program aggregate published on
    exchange.aggregates.v1 equals what was played, prints a summary, writes an HTML report.
    """
    configure_logging(service="wok", level="WARNING")
    console = Console()
    settings = StackSettings(data_dir=data_dir) if data_dir else StackSettings()
    try:
        with stack_for_demo(settings, console) as endpoints:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                tasks: dict[str, int] = {}

                def advance(step: str, done: int, total: int) -> None:
                    if step not in tasks:
                        tasks[step] = progress.add_task(step, total=total)
                    progress.update(tasks[step], completed=done, total=total)

                result = asyncio.run(
                    run_demo(
                        endpoints,
                        municipalities=municipalities,
                        timeout_s=timeout,
                        progress=advance,
                    )
                )
    except StackStartError as error:
        console.print(Text(str(error), style="red"))
        raise typer.Exit(1) from None
    console.print(municipalities_table(result))
    console.print(summary(result))
    path = write_html_report(result, report)
    console.print(f"HTML report: {path.resolve()}")
    if not result.agreed:
        console.print(
            Text(
                f"The aggregates did not agree with what was played within {timeout:.0f} s.", "red"
            )
        )
        raise typer.Exit(1)
    console.print(
        Text(
            f"The aggregates agree with what was played ({result.seconds:.1f} s).",
            style="green",
        )
    )
