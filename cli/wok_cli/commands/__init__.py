"""The subcommands of `wok`: each a typer command function, registered under its name,
or a `typer.Typer` holding a group of them (`wok dlq list`), added under its name.

A new subcommand is a module here with one function (or one Typer); add it to `COMMANDS`.
"""

from collections.abc import Callable
from typing import Any

import typer

from wok_cli.commands.demo import demo
from wok_cli.commands.dev import dev
from wok_cli.commands.dlq import dlq_app
from wok_cli.commands.docs import docs
from wok_cli.commands.keys import keys_app
from wok_cli.commands.new import new_app
from wok_cli.commands.reporting import reporting_app
from wok_cli.commands.topics import topics_app

COMMANDS: tuple[Callable[..., Any] | typer.Typer, ...] = (
    dev,
    demo,
    topics_app,
    dlq_app,
    docs,
    reporting_app,
    keys_app,
    new_app,
)
