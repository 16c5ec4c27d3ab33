"""The `wok` command (console script `wok = "wok_cli.main:app"`)."""

import typer

from wok_cli.commands import COMMANDS

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals would include keys
)


@app.callback()
def wok() -> None:
    """Weltoffene Kommune: run the platform on one machine."""


for command in COMMANDS:
    if isinstance(command, typer.Typer):
        app.add_typer(command)
    else:
        app.command()(command)
