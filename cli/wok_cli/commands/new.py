"""`wok new service NAME`: a new service laid out like the others, and registered in the repo.

The service comes from the templates in `wok_cli/scaffold/service` (data files; `{{name}}`,
`{{Name}}`, `{{NAME}}` and `{{port}}` are filled in). It is wired to the shared runtime: a
subscriber with an idempotent handler, a publisher through the transactional outbox,
settings, `/healthz`, `/readyz`, `/metrics`, a Dockerfile and passing tests.

Registration (skipped with `--into`, which only writes the service folder) makes the rest of
the repository know it, each by a small edit that leaves everything else as it was: the
embedded stack's service list and port, its dead-letter topic, requirements.txt, the `wok`
package's dependencies, ruff's first-party list, docker-compose.yml, .env.example, the
kustomize base and production overlay, and the topic provisioning script.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{1,29}$")
TEMPLATE_SUFFIX = ".tmpl"
PACKAGE_FOLDER = "package"


class ScaffoldError(ValueError):
    """The service cannot be generated or registered; the message says why."""


@dataclass(frozen=True)
class ServiceName:
    name: str
    port: int

    @property
    def replacements(self) -> dict[str, str]:
        return {
            "{{name}}": self.name,
            "{{Name}}": self.name.capitalize(),
            "{{NAME}}": self.name.upper(),
            "{{port}}": str(self.port),
        }

    def render(self, template: str) -> str:
        for placeholder, value in self.replacements.items():
            template = template.replace(placeholder, value)
        return template


def validate_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ScaffoldError(
            f"{name!r} is not a service name: 2-30 lowercase letters and digits, "
            "starting with a letter (it becomes wok_<name>, WOK_<NAME>_PORT, a topic and a "
            "Kubernetes name)"
        )
    return name


def _templates(folder: str) -> Traversable:
    return resources.files("wok_cli.scaffold").joinpath(folder)


def _walk(folder: Traversable, relative: Path) -> list[tuple[Path, Traversable]]:
    found: list[tuple[Path, Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.is_dir():
            if entry.name != "__pycache__":
                found.extend(_walk(entry, relative / entry.name))
        elif entry.name.endswith(TEMPLATE_SUFFIX):
            found.append((relative / entry.name.removesuffix(TEMPLATE_SUFFIX), entry))
    return found


def generate_service(service: ServiceName, *, into: Path) -> Path:
    """Write `<into>/<name>/` from the templates; refuses to overwrite an existing folder."""
    target = into / service.name
    if target.exists():
        raise ScaffoldError(f"{target} already exists")
    for relative, template in _walk(_templates("service"), Path()):
        parts = [f"wok_{service.name}" if p == PACKAGE_FOLDER else p for p in relative.parts]
        path = target.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(service.render(template.read_text()))
    return target


def tidy(folder: Path, *, root: Path) -> bool:
    """Sort imports and format with the repository's ruff settings, which depend on the
    name's length and place; False when ruff is not installed (a production install)."""
    config = (
        ["--config", str(root / "pyproject.toml")] if (root / "pyproject.toml").is_file() else []
    )
    commands = (
        ["check", "--fix", "--select", "I", "--quiet", *config, str(folder)],
        ["format", "--quiet", *config, str(folder)],
    )
    for command in commands:
        try:
            subprocess.run([sys.executable, "-m", "ruff", *command], check=True, timeout=60)
        except (subprocess.CalledProcessError, FileNotFoundError):
            return False
    return True


# -- registration in the repository ---------------------------------------------------------


def _edit(path: Path, change: str, edit: Callable[[str], str]) -> None:
    text = path.read_text()
    changed = edit(text)
    if changed == text:
        raise ScaffoldError(f"could not {change} in {path}")
    path.write_text(changed)


def _insert_before(text: str, pattern: str, insertion: str, *, what: str) -> str:
    match = re.search(pattern, text, re.M)
    if match is None:
        raise ScaffoldError(f"no place for {what}")
    return text[: match.start()] + insertion + text[match.start() :]


def _insert_after_last(text: str, pattern: str, insertion: str, *, what: str) -> str:
    matches = list(re.finditer(pattern, text, re.M))
    if not matches:
        raise ScaffoldError(f"no place for {what}")
    end = matches[-1].end()
    return text[:end] + insertion + text[end:]


def _append_to_tuple(text: str, assignment: str, item: str) -> str:
    pattern = rf"^{re.escape(assignment)} = \((?P<items>[^)]*)\)"
    match = re.search(pattern, text, re.M)
    if match is None:
        raise ScaffoldError(f"no tuple {assignment}")
    items = match["items"].rstrip().rstrip(",")
    return text[: match.start("items")] + f'{items}, "{item}"' + text[match.end("items") :]


def _service_ports(settings: str) -> str:
    """A pattern matching the port settings of the services in SERVICE_NAMES (not SMTP's)."""
    match = re.search(r"^SERVICE_NAMES = \((?P<items>[^)]*)\)", settings, re.M)
    if match is None:
        raise ScaffoldError("no SERVICE_NAMES in the stack settings")
    names = re.findall(r'"([a-z0-9]+)"', match["items"])
    return "(?:" + "|".join(f"{name}_port" for name in names) + ")"


def next_free_port(root: Path) -> int:
    settings = (root / "cli" / "wok_cli" / "settings.py").read_text()
    found = re.findall(rf"^    {_service_ports(settings)}: int = (\d+)$", settings, re.M)
    ports = [int(port) for port in found]
    return max(ports, default=8000) + 1


def register_service(service: ServiceName, *, root: Path) -> list[Path]:
    """Make the repository at `root` know the service; answers the files changed."""
    name, port, upper = service.name, service.port, service.name.upper()
    settings_py = root / "cli" / "wok_cli" / "settings.py"
    if re.search(rf'"{name}"', settings_py.read_text()):
        raise ScaffoldError(f"{name} is already registered in {settings_py}")
    changed: list[Path] = []

    def edit(path: Path, change: str, function: Callable[[str], str]) -> None:
        _edit(path, change, function)
        changed.append(path)

    edit(
        settings_py,
        "add the service and its port",
        lambda text: _insert_after_last(
            _append_to_tuple(text, "SERVICE_NAMES", name),
            rf"^    {_service_ports(text)}: int = \d+$",
            f"\n    {name}_port: int = {port}",
            what="the port",
        ),
    )
    edit(
        root / "cli" / "wok_cli" / "devstack.py",
        "add the consumer group",
        lambda text: _append_to_tuple(text, "DEAD_LETTER_CONSUMERS", name),
    )
    edit(
        root / "requirements.txt",
        "add the package",
        lambda text: _insert_before(
            text, r"^-e \./cli$", f"-e ./services/{name}\n", what="requirements"
        ),
    )
    edit(
        root / "cli" / "pyproject.toml",
        "add the dependency",
        lambda text: _insert_after_last(
            text, r'^    "wok-[a-z0-9]+",$', f'\n    "wok-{name}",', what="the dependency"
        ),
    )
    edit(
        root / "pyproject.toml",
        "add the first-party package",
        lambda text: text.replace('"wok_cli"]', f'"wok_{name}", "wok_cli"]', 1),
    )
    edit(
        root / "docker-compose.yml",
        "add the service",
        lambda text: _insert_before(
            text,
            r"^volumes:$",
            service.render(_templates("registration").joinpath("compose.yaml.tmpl").read_text()),
            what="the compose service",
        ),
    )
    edit(
        root / ".env.example",
        "add the port",
        lambda text: _insert_after_last(
            text, r"^WOK_[A-Z0-9]+_PORT=\d+$", f"\nWOK_{upper}_PORT={port}", what="the port"
        ),
    )
    base = root / "deploy" / "kubernetes" / "base"
    manifest = base / f"{name}.yaml"
    manifest.write_text(
        service.render(_templates("registration").joinpath("kubernetes.yaml.tmpl").read_text())
    )
    changed.append(manifest)
    edit(
        base / "kustomization.yaml",
        "add the manifest",
        lambda text: _insert_before(
            text, r"^  - topics-job\.yaml$", f"  - {name}.yaml\n", what="the manifest"
        ),
    )
    edit(
        root / "deploy" / "kubernetes" / "overlays" / "production" / "kustomization.yaml",
        "add the image",
        lambda text: _insert_before(
            text,
            r"^replicas:$",
            f"  - name: wok-{name}\n"
            f"    newName: registry.example.org/weltoffene-kommune/wok-{name}\n"
            "    newTag: 0.1.0\n",
            what="the image",
        ),
    )
    overlay = root / "deploy" / "kubernetes" / "overlays" / "production" / "kustomization.yaml"
    if "name: wok-kafka-users" in overlay.read_text():
        # Production talks SASL to Kafka: the service is its own SCRAM user.
        edit(
            overlay,
            "add the Kafka user",
            lambda text: (
                text.rstrip("\n")
                + "\n"
                + service.render(
                    _templates("registration").joinpath("kafka-user-patch.yaml.tmpl").read_text()
                )
            ),
        )
    edit(
        base / "create-topics.sh",
        "add the dead-letter topic",
        lambda text: _insert_after_last(
            text,
            r"^create dead-letter\.[a-z0-9]+\.v1 1 .*$",
            f"\ncreate dead-letter.{name}.v1 1 cleanup.policy=delete retention.ms=1209600000",
            what="the dead-letter topic",
        ),
    )
    return changed


def install_and_document(service: ServiceName, *, root: Path) -> list[str]:
    """Install the new package into this environment (editable) and refresh docs/api, so
    that the suite (its stale-documents test among them) passes; answers what failed."""
    failures = []
    steps = (
        (
            "pip install -e",
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "-e",
                str(root / "services" / service.name),
            ],
        ),
        # A new process: it imports the package just installed.
        (
            "wok docs",
            [sys.executable, "-m", "wok_cli", "docs", "--output", str(root / "docs" / "api")],
        ),
    )
    for what, command in steps:
        run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=root)
        if run.returncode != 0:
            failures.append(f"{what} failed: {(run.stderr or run.stdout).strip()[-500:]}")
            break
    return failures


def repository_root() -> Path:
    """The repository this `wok` was installed from (editable install), else the cwd."""
    here = Path(__file__).resolve()
    for candidate in (*here.parents, Path.cwd()):
        if (candidate / "services").is_dir() and (candidate / "cli" / "pyproject.toml").is_file():
            return candidate
    return Path.cwd()


new_app = typer.Typer(
    name="new",
    help="Generate a new part of the platform from the templates.",
    no_args_is_help=True,
)


@new_app.command("service")
def service(
    name: Annotated[str, typer.Argument(help="Lowercase letters and digits, e.g. exchange")],
    into: Annotated[
        Path | None,
        typer.Option(
            "--into",
            help="Write only the service folder <DIR>/<name>, without registering it "
            "in the repository (e.g. a throwaway service in a temporary folder)",
            file_okay=False,
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="The repository (default: the one wok is installed from)",
            file_okay=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1024, max=65535, help="Default: the next after the others"),
    ] = None,
    install: Annotated[
        bool,
        typer.Option(
            "--install/--no-install",
            help="After registering: pip install -e the service here and run `wok docs`",
        ),
    ] = True,
) -> None:
    """Generate services/NAME laid out like the others, wired to the shared runtime, with
    passing tests, and register it (compose, kustomize, embedded stack, requirements)."""
    console = Console()
    repository = (root or repository_root()).resolve()
    try:
        service_name = ServiceName(
            validate_name(name), port or (next_free_port(repository) if into is None else 8100)
        )
        target = generate_service(service_name, into=into or repository / "services")
        console.print(f"generated {target}")
        if into is None:
            for path in register_service(service_name, root=repository):
                console.print(f"registered in {path.relative_to(repository)}")
        if not tidy(target, root=repository):
            console.print("ruff is not installed: imports and layout are left as generated")
        if into is None and install:
            failures = install_and_document(service_name, root=repository)
            for failure in failures:
                console.print(f"[yellow]{failure}[/yellow]")
            if not failures:
                console.print(f"installed wok-{name}; docs/api written")
        if into is None:
            console.print(f"next: pytest services/{name}, then make it yours (docs/extending.md)")
    except ScaffoldError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
