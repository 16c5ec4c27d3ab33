"""Embedded stacks for the fault tests: one per test file, with only the services it judges.

tansu, nx-27017, the SMTP sink and the chosen services run as separate processes, apart
from the e2e tests' stack: killing a service or the database here disturbs no other test,
and a backlog left by one file ends with its stack. Consumers retry quickly here
(`FAST_RETRIES`), so a dead letter does not take seconds of backoff.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from wok_cli.devstack import EmbeddedStack, ServiceSpec, default_services
from wok_cli.settings import StackSettings

FAST_RETRIES = {
    "WOK_CONSUMER_BACKOFF_INITIAL_S": "0.01",
    "WOK_CONSUMER_BACKOFF_MAX_S": "0.5",
    # A mail a killed notification had claimed (up to WOK_NOTIFICATION_CONCURRENCY of them)
    # is taken over when its lease ends: 10 s here instead of 120, so the takeover and its
    # NotificationSent fall within the tests' waits.
    "WOK_DELIVERY_LEASE_S": "10",
}


@contextlib.contextmanager
def fault_stack(
    tmp_path_factory: pytest.TempPathFactory, *, services: Sequence[str] | None = None
) -> Iterator[EmbeddedStack]:
    data_dir = Path(tmp_path_factory.mktemp("wok-faults"))
    settings = StackSettings.with_free_ports(data_dir=data_dir, topic_prefix="faults.")
    specs = [
        ServiceSpec(name=spec.name, module=spec.module, port=spec.port, env=FAST_RETRIES)
        for spec in default_services(settings)
        if services is None or spec.name in services
    ]
    with EmbeddedStack(settings, services=specs) as running:
        yield running
