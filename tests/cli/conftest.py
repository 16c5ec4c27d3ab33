from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wok_cli.devstack import EmbeddedStack, ServiceSpec, StackSettings
from wok_cli.settings import free_ports

STANDIN_DIR = Path(__file__).parent

SettingsFactory = Callable[..., StackSettings]
StandinFactory = Callable[..., ServiceSpec]


def _stack_settings(data_dir: Path, **overrides: Any) -> StackSettings:
    """Free ports and short waits: a test's stack never collides with another's or lingers."""
    values: dict[str, Any] = {"stack_stop_grace_s": 5.0, "stack_ready_timeout_s": 30.0}
    values.update(overrides)
    return StackSettings.with_free_ports(data_dir=data_dir, **values)


@pytest.fixture
def settings_for(tmp_path: Path) -> SettingsFactory:
    """`settings_for(**overrides)`: stack settings on free ports in this test's tmp dir."""

    def make(**overrides: Any) -> StackSettings:
        return _stack_settings(overrides.pop("data_dir", tmp_path / "wok"), **overrides)

    return make


@pytest.fixture
def standin() -> StandinFactory:
    """`standin(name, **env)`: a service spec running the stand-in app in this folder."""

    def make(name: str, **env: str) -> ServiceSpec:
        (port,) = free_ports(1)
        return ServiceSpec(
            name=name,
            module="standin_service",
            port=port,
            env={"PYTHONPATH": str(STANDIN_DIR), "STANDIN_PORT": str(port), **env},
        )

    return make


@pytest.fixture(scope="module")
def infrastructure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """tansu, nx-27017 and the SMTP sink, without services; topics carry a prefix."""
    settings = _stack_settings(tmp_path_factory.mktemp("wok"), topic_prefix="itest.")
    with EmbeddedStack(settings, services=()) as stack:
        yield stack
