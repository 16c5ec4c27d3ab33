"""Settings of the embedded stack: the common `WOK_*` names plus what only the stack needs."""

from __future__ import annotations

import socket
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from wok_runtime.settings import WokSettings

SERVICE_NAMES = ("registration", "assessment", "notification", "reporting", "exchange")


class StackSettings(WokSettings):
    """Read from the environment (DESIGN.md section 7); the broker and database listen where
    `WOK_KAFKA_BOOTSTRAP` and `WOK_MONGODB_URI` point, so one setting serves both sides."""

    data_dir: Path = Field(
        default=Path(".wok"), description="Database files, the mail folder and the logs"
    )
    registration_port: int = 8001
    assessment_port: int = 8002
    notification_port: int = 8003
    reporting_port: int = 8004
    exchange_port: int = 8005
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_sink_dir: Path | None = Field(
        default=None, description="Where the SMTP sink writes each mail; <data dir>/mail if unset"
    )
    admin_key: SecretStr = Field(default=SecretStr(""), description="Generated when unset")
    federal_key: SecretStr = Field(default=SecretStr(""), description="Generated when unset")
    # Consumer-group joins on tansu wait half the session timeout; 2 s keeps start-up quick.
    kafka_session_timeout_ms: int = 2000
    stack_infrastructure_timeout_s: float = 30.0
    stack_ready_timeout_s: float = 90.0
    stack_stop_grace_s: float = 10.0

    @classmethod
    def with_free_ports(cls, *, data_dir: Path, **overrides: Any) -> Self:
        """Settings whose every port is free right now, for tests that run beside others."""
        kafka, mongo, smtp, *service_ports = free_ports(3 + len(SERVICE_NAMES))
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "kafka_bootstrap": f"127.0.0.1:{kafka}",
            "mongodb_uri": f"mongodb://127.0.0.1:{mongo}",
            "smtp_port": smtp,
        }
        values.update(
            {f"{name}_port": port for name, port in zip(SERVICE_NAMES, service_ports, strict=True)}
        )
        values.update(overrides)
        return cls(**values)

    def port_of(self, service: str) -> int:
        port: int = getattr(self, f"{service}_port")
        return port

    @property
    def kafka_address(self) -> tuple[str, int]:
        """Where the embedded broker listens: the first bootstrap address."""
        first = self.kafka_bootstrap.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def mongodb_address(self) -> tuple[str, int]:
        parts = urlsplit(self.mongodb_uri)
        return parts.hostname or "127.0.0.1", parts.port or 27017

    @property
    def mail_dir(self) -> Path:
        return (self.smtp_sink_dir or self.data_dir / "mail").resolve()


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; all sockets are held until the last one is picked,
    so the ports differ from each other."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports
