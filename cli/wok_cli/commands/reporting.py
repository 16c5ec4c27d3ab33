"""`wok reporting rebuild`: recompute reporting's projections from the event topics.

Works on the embedded stack running on `--data-dir` (its stack.json), or, without it, on
the Kafka and MongoDB the `WOK_*` environment names (production).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from wok_cli.devstack import running_stack
from wok_reporting.adapters.mongo import MongoActivityRepository, MongoProjectionRepository
from wok_reporting.app import SERVICE
from wok_reporting.rebuild import IncompleteRead, RebuildReport, rebuild
from wok_reporting.settings import ReportingSettings
from wok_runtime.logging import configure_logging
from wok_runtime.mongo import mongo_client

reporting_app = typer.Typer(
    name="reporting", help="The reporting service's projections.", no_args_is_help=True
)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Use the embedded stack running on this data dir (its stack.json); without "
        "it, WOK_KAFKA_BOOTSTRAP, WOK_MONGODB_URI and WOK_TOPIC_PREFIX say where",
        file_okay=False,
    ),
]


def settings_for(data_dir: Path | None, console: Console) -> ReportingSettings:
    if data_dir is None:
        return ReportingSettings()
    endpoints = running_stack(data_dir)
    if endpoints is None:
        console.print(Text(f"No stack is running on {data_dir}; start one with `wok dev`.", "red"))
        raise typer.Exit(1)
    return ReportingSettings(
        kafka_bootstrap=endpoints.kafka_bootstrap,
        mongodb_uri=endpoints.mongodb_uri,
        topic_prefix=endpoints.topic_prefix,
    )


async def run_rebuild(
    settings: ReportingSettings, *, apply: bool, allow_shrinking: bool
) -> RebuildReport:
    client = mongo_client(settings.mongodb_uri)
    try:
        database = client[f"wok_{SERVICE}"]
        return await rebuild(
            settings,
            projections=MongoProjectionRepository(database),
            activities=MongoActivityRepository(database),
            apply=apply,
            allow_shrinking=allow_shrinking,
        )
    finally:
        await client.close()


def report_table(report: RebuildReport) -> Table:
    table = Table(title="Reporting projections", title_justify="left")
    table.add_column("entities", style="bold")
    table.add_column("stored before", justify="right")
    table.add_column("from the topics", justify="right")
    for kind, before in report.entities_before.items():
        table.add_row(kind, str(before), str(report.entities_after.get(kind, 0)))
    return table


@reporting_app.command("rebuild")
def rebuild_command(
    data_dir: DataDirOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only compare; change nothing")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Apply even if the topics know fewer entities than the store (e.g. after "
            "the embedded broker, which keeps messages in memory, was restarted)",
        ),
    ] = False,
) -> None:
    """Recompute every projection from registration.events.v1 and notification.events.v1.

    Reads the topics from the beginning into fresh projections and replaces the stored
    ones; the running service publishes the snapshots that changed within seconds.
    """
    configure_logging(service="wok", level="WARNING")
    console = Console()
    settings = settings_for(data_dir, console)
    with console.status("Reading the topics from the beginning…"):
        try:
            report = asyncio.run(run_rebuild(settings, apply=not dry_run, allow_shrinking=force))
        except IncompleteRead as error:
            console.print(Text(f"Nothing rebuilt: {error}. Try again.", style="red"))
            raise typer.Exit(1) from None
    console.print(report_table(report))
    console.print(
        f"{report.events_read} events read, {report.skipped} not projected; "
        + (
            "the rebuilt state equals the stored one."
            if report.same_as_before
            else "the rebuilt state differs from the stored one."
        )
    )
    if report.applied:
        console.print(
            Text(f"Projections replaced ({report.caught_up} events arrived meanwhile).", "green")
        )
    elif not dry_run:
        console.print(
            Text(
                "Not applied: the topics know fewer entities than the store. "
                "Use --force to replace the store anyway.",
                "red",
            )
        )
        raise typer.Exit(1)
