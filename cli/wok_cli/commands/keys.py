"""`wok keys create|rotate|revoke|secrets`: municipality keys through the registration API.

A municipality key is shown once (registration stores only its hash): `create` onboards a
municipality and shows its first key, `rotate` replaces it (the old one stops at once),
`revoke` ends it. They speak to the registration service of the embedded stack on
`--data-dir`, or to `WOK_REGISTRATION_URL` with `WOK_ADMIN_KEY` (production).
`secrets` prints fresh platform secrets for an `.env` file or a Kubernetes Secret.
"""

from __future__ import annotations

import secrets as random_secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from wok_cli.devstack import running_stack

keys_app = typer.Typer(
    name="keys",
    help="Municipality keys (create, rotate, revoke) and platform secrets.",
    no_args_is_help=True,
)

PLATFORM_SECRETS = ("WOK_ADMIN_KEY", "WOK_FEDERAL_KEY", "WOK_SERVICE_KEY")


class KeysSettings(BaseSettings):
    """Where `wok keys` finds the registration service in production."""

    model_config = SettingsConfigDict(env_prefix="WOK_", extra="ignore")

    registration_url: str = "http://127.0.0.1:8001"
    admin_key: SecretStr = SecretStr("")


@dataclass(frozen=True)
class Registration:
    url: str
    admin_key: str


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Use the embedded stack running on this data dir (its stack.json); without "
        "it, WOK_REGISTRATION_URL and WOK_ADMIN_KEY say where and how",
        file_okay=False,
    ),
]
AgsArgument = Annotated[str, typer.Argument(help="The municipality's AGS (8 or 5 digits)")]


def registration_for(data_dir: Path | None, console: Console) -> Registration:
    if data_dir is not None:
        endpoints = running_stack(data_dir)
        if endpoints is None:
            console.print(
                Text(f"No stack is running on {data_dir}; start one with `wok dev`.", "red")
            )
            raise typer.Exit(1)
        return Registration(
            url=endpoints.service_urls["registration"], admin_key=endpoints.admin_key
        )
    settings = KeysSettings()
    if not settings.admin_key.get_secret_value():
        console.print(Text("WOK_ADMIN_KEY is not set (or use --data-dir).", "red"))
        raise typer.Exit(1)
    return Registration(
        url=settings.registration_url, admin_key=settings.admin_key.get_secret_value()
    )


def call(
    registration: Registration, method: str, path: str, console: Console, **kwargs: Any
) -> dict[str, Any]:
    """One admin request; any refusal is printed as the service explained it, exit code 1."""
    try:
        response = httpx.request(
            method,
            registration.url + path,
            headers={"Authorization": f"Bearer {registration.admin_key}"},
            timeout=15,
            **kwargs,
        )
    except httpx.HTTPError as error:
        console.print(
            Text(f"The registration service at {registration.url} is not reachable: {error}", "red")
        )
        raise typer.Exit(1) from None
    if response.is_error:
        console.print(Text(f"{response.status_code}: {_explain(response)}", "red"))
        raise typer.Exit(1)
    body: dict[str, Any] = response.json()
    return body


def _explain(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text
    if isinstance(detail, list):  # FastAPI's validation errors: name the fields
        return "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', ())[1:])}: {item.get('msg')}"
            for item in detail
        )
    return str(detail)


def show_key(console: Console, *, ags: str, key: str, title: str) -> None:
    console.print(
        Panel(
            Text(key, style="bold"),
            title=f"{title} – {ags}",
            subtitle="shown once: hand it to the municipality over a secure channel",
        )
    )


@keys_app.command("create")
def create(
    ags: AgsArgument,
    name: Annotated[str, typer.Option(help="The municipality's name")],
    kind: Annotated[str, typer.Option(help="city, district or town")],
    population: Annotated[int | None, typer.Option(help="Inhabitants")] = None,
    contact_office: Annotated[
        str | None, typer.Option(help="An office, e.g. 'Integrationsbüro'; no person")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Onboard a municipality and show its first key."""
    console = Console()
    body: dict[str, Any] = {"ags": ags, "name": name, "kind": kind}
    if population is not None:
        body["population"] = population
    if contact_office is not None:
        body["contact_office"] = contact_office
    created = call(
        registration_for(data_dir, console), "POST", "/v1/municipalities", console, json=body
    )
    show_key(console, ags=created["ags"], key=created["api_key"], title=f"Key of {created['name']}")


@keys_app.command("rotate")
def rotate(ags: AgsArgument, data_dir: DataDirOption = None) -> None:
    """Replace a municipality's key: the old one stops working at once."""
    console = Console()
    rotated = call(
        registration_for(data_dir, console), "POST", f"/v1/municipalities/{ags}/keys", console
    )
    show_key(console, ags=rotated["ags"], key=rotated["api_key"], title="New key")


@keys_app.command("revoke")
def revoke(ags: AgsArgument, data_dir: DataDirOption = None) -> None:
    """End a municipality's key (e.g. when it leaked); `rotate` issues a new one."""
    console = Console()
    revoked = call(
        registration_for(data_dir, console), "DELETE", f"/v1/municipalities/{ags}/keys", console
    )
    console.print(Text(f"Key {revoked['key_id']} of {revoked['ags']} revoked.", "green"))


@keys_app.command("secrets")
def secrets() -> None:
    """Print fresh admin, federal and service keys (for `.env` or a Kubernetes Secret)."""
    for name in PLATFORM_SECRETS:
        typer.echo(f"{name}={random_secrets.token_urlsafe(32)}")
