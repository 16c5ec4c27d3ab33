"""Reading docker-compose.yml as `docker compose` would: `.env` files and interpolation."""

from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from wok_cli.settings import SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class MissingVariable(ValueError):
    pass


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; comments and blank lines ignored (the compose `.env` format we use)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `$$`."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        current = env.get(name)
        empty = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":?", "?") and empty:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and empty:
            return arg
        return current or ""

    return _VARIABLE.sub(replace, value)


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file with YAML anchors and merges resolved; interpolated if `env` given."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    return document if env is None else interpolate(document, env)


def service_settings() -> dict[str, type[BaseSettings]]:
    """Every service of the platform (the embedded stack's list, which `wok new service`
    extends) with its settings model `wok_<name>.settings.<Name>Settings`."""
    models: dict[str, type[BaseSettings]] = {}
    for name in SERVICE_NAMES:
        module = import_module(f"wok_{name}.settings")
        models[name] = getattr(module, f"{name.capitalize()}Settings")
    return models
