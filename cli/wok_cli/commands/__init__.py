"""The subcommands of `wok`: each a typer command function, registered under its name.

A new subcommand is a module here with one function; add it to `COMMANDS`.
"""

from collections.abc import Callable
from typing import Any

from wok_cli.commands.demo import demo
from wok_cli.commands.dev import dev

COMMANDS: tuple[Callable[..., Any], ...] = (dev, demo)
