"""An operator onboards a municipality, rotates its key after a leak, and revokes it: `wok keys`."""

from __future__ import annotations

import re

import httpx
from typer.testing import CliRunner

from tests.e2e.conftest import unique_ags
from wok_cli.devstack import EmbeddedStack
from wok_cli.main import app

KEY = re.compile(r"│\s+(\S{20,})\s+│")


def wok(stack: EmbeddedStack, *arguments: str, expect: int = 0) -> str:
    result = CliRunner().invoke(
        app, [*arguments, "--data-dir", str(stack.data_dir)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == expect, result.output
    return result.output


def key_in(output: str) -> str:
    [key] = KEY.findall(output)
    return key


def schedule_status(stack: EmbeddedStack, ags: str, key: str) -> int:
    """A write only the municipality itself may do; its answer says whether the key works."""
    response = httpx.patch(
        f"{stack.url('registration')}/v1/municipalities/{ags}",
        json={"population": 1234},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return response.status_code


def test_create_rotate_and_revoke_a_municipality_key(stack: EmbeddedStack) -> None:
    ags = unique_ags()

    created = wok(stack, "keys", "create", ags, "--name", "Schlüsselstadt", "--kind", "town")
    first = key_in(created)
    assert "shown once" in created
    assert schedule_status(stack, ags, first) == 200

    again = wok(stack, "keys", "create", ags, "--name", "X", "--kind", "town", expect=1)
    assert "409" in again  # the AGS is taken: the service's reason, not a stack trace

    rotated = key_in(wok(stack, "keys", "rotate", ags))
    assert rotated != first
    assert schedule_status(stack, ags, first) == 401
    assert schedule_status(stack, ags, rotated) == 200

    revoked = wok(stack, "keys", "revoke", ags)
    assert "revoked" in revoked
    assert schedule_status(stack, ags, rotated) == 401

    invalid = wok(stack, "keys", "create", "123", "--name", "X", "--kind", "town", expect=1)
    assert "ags" in invalid  # the field the service refused is named


def test_secrets_are_fresh_every_time() -> None:
    runner = CliRunner()
    first, second = (runner.invoke(app, ["keys", "secrets"]).output for _ in range(2))
    names = [line.split("=", 1)[0] for line in first.splitlines()]
    assert names == ["WOK_ADMIN_KEY", "WOK_FEDERAL_KEY", "WOK_SERVICE_KEY"]
    assert all(len(line.split("=", 1)[1]) >= 40 for line in first.splitlines())
    assert set(first.splitlines()).isdisjoint(second.splitlines())
