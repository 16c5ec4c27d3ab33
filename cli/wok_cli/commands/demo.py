"""`wok demo`: the main job. Plays a program on the embedded stack and checks its outcome."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from wok_cli.demo import (
    FIELD_NAMES,
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
            assessment_url=endpoints.service_urls["assessment"],
            admin_key=endpoints.admin_key,
            kafka_bootstrap=endpoints.kafka_bootstrap,
            topic_prefix=endpoints.topic_prefix,
            mail_dir=endpoints.mail_dir or None,
            service_key=endpoints.service_key,
            exchange_url=endpoints.service_urls.get("exchange", ""),
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
            assessment_url=stack.url("assessment"),
            admin_key=stack.admin_key,
            kafka_bootstrap=stack.kafka_bootstrap,
            topic_prefix=stack.settings.topic_prefix,
            mail_dir=str(stack.mail_dir),
            exclusive=True,
            service_key=stack.service_key,
            exchange_url=stack.url("exchange"),
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


def _field(found: tuple[int, float] | None) -> str:
    return "–" if found is None else f"{found[0]} ({found[1]})"


def municipalities_table(result: DemoResult) -> Table:
    table = Table(
        title="What each municipality played",
        title_justify="left",
        caption="Fields: " + ", ".join(f"{n} {name}" for n, name in FIELD_NAMES.items()),
        caption_justify="left",
    )
    left = ("municipality", "AGS", "weakest field", "strongest field")
    for column in (
        "municipality",
        "AGS",
        "dialogue events",
        "confirmed",
        "waitlisted",
        "cancelled",
        "promoted",
        "overall index",
        "weakest field",
        "strongest field",
    ):
        table.add_column(column, justify="left" if column in left else "right")
    for played in result.played:
        assessment = played.assessment
        table.add_row(
            played.name,
            played.ags,
            str(played.dialogue_events),
            str(played.confirmed),
            str(played.waitlisted),
            str(len(played.cancelled)),
            str(len(played.promoted)),
            Text("not assessed", "red")
            if assessment is None
            else ("–" if assessment.overall is None else str(assessment.overall)),
            "–" if assessment is None else _field(assessment.weakest),
            "–" if assessment is None else _field(assessment.strongest),
        )
    return table


def mails_table(result: DemoResult) -> Table | None:
    if result.mails is None:
        return None
    table = Table(title="Confirmation mails by language", title_justify="left")
    for column in ("language", "registrations", "confirmation mails", "right to left"):
        table.add_column(column, justify="left" if column == "language" else "right")
    for language, registrations in result.mails.registrations.items():
        table.add_row(
            language,
            str(registrations),
            str(result.mails.confirmations.get(language, 0)),
            str(result.mails.right_to_left.get(language, 0)),
        )
    return table


def peers_table(result: DemoResult) -> Table | None:
    if not result.peers:
        return None
    table = Table(title="Peer exchange (exchange service)", title_justify="left")
    table.add_column("municipality", style="bold")
    table.add_column("peers and feed")
    for played in result.played:
        if played.ags in result.peers:
            table.add_row(played.name, result.peers[played.ags])
    return table


def checks_table(result: DemoResult) -> Table:
    table = Table(title="Checks", title_justify="left")
    table.add_column("check", style="bold")
    table.add_column("")
    table.add_column("detail")
    styles = {"passed": "green", "failed": "red", "skipped": "yellow"}
    for check in result.checks:
        table.add_row(check.name, Text(check.outcome, styles[check.outcome]), check.detail)
    return table


def demo(
    municipalities: MunicipalitiesOption = 22,
    report: ReportOption = Path("wok-report.html"),
    timeout: TimeoutOption = 180.0,
    data_dir: DataDirOption = None,
) -> None:
    """Play a program with the model municipalities and check its outcome.

    Onboards the municipalities, schedules their dialogue events, registers residents in
    five languages (each gets a confirmation e-mail in theirs), cancels a confirmed place in
    every full event (the first on the waitlist is promoted), moves one event by a week and
    erases one participant, runs each municipality's self-check, workshop and measures,
    waits until the program aggregate published on exchange.aggregates.v1 equals what was
    played, checks the scores, the AssessmentScored events, the benchmark, the promotions,
    the erasure and the mails, prints a summary, writes an HTML report.
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
                tasks: dict[str, TaskID] = {}

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
    mails = mails_table(result)
    if mails is not None:
        console.print(mails)
    peers = peers_table(result)
    if peers is not None:
        console.print(peers)
    console.print(checks_table(result))
    path = write_html_report(result, report)
    console.print(f"HTML report: {path.resolve()}")
    if result.agreed:
        console.print(
            Text(
                f"The aggregates agree with what was played ({result.seconds:.1f} s).",
                style="green",
            )
        )
    else:
        console.print(
            Text(
                f"The aggregates did not agree with what was played within {timeout:.0f} s.", "red"
            )
        )
    skipped = [check.name for check in result.checks if check.outcome == "skipped"]
    if skipped:
        console.print(Text(f"Skipped: {', '.join(skipped)} (see the checks).", "yellow"))
    if result.failed:
        names = ", ".join(check.name for check in result.failed)
        console.print(Text(f"Checks failed: {names}.", "red"))
    else:
        passed = sum(check.outcome == "passed" for check in result.checks)
        console.print(Text(f"All {passed} checks passed.", "green"))
    if not result.passed:
        raise typer.Exit(1)
