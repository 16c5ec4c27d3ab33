"""Stack settings: the documented defaults, read from the environment (DESIGN.md section 7)."""

from pathlib import Path

import pytest

from wok_cli.settings import SERVICE_NAMES, StackSettings


def test_the_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATA_DIR", "KAFKA_BOOTSTRAP", "MONGODB_URI", "SMTP_PORT", "SMTP_SINK_DIR"):
        monkeypatch.delenv(f"WOK_{name}", raising=False)
    for name in SERVICE_NAMES:
        monkeypatch.delenv(f"WOK_{name.upper()}_PORT", raising=False)
    settings = StackSettings()
    assert settings.data_dir == Path(".wok")
    assert settings.kafka_address == ("127.0.0.1", 9092)
    assert settings.mongodb_address == ("127.0.0.1", 27017)
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 1025)
    ports = [settings.port_of(name) for name in SERVICE_NAMES]
    assert ports[:5] == [8001, 8002, 8003, 8004, 8005]
    assert ports == sorted(set(ports))  # a service added later takes the next port
    assert settings.mail_dir == (Path(".wok") / "mail").resolve()
    assert settings.kafka_session_timeout_ms == 2000


def test_every_address_and_folder_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WOK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WOK_SMTP_SINK_DIR", str(tmp_path / "mails"))
    monkeypatch.setenv("WOK_KAFKA_BOOTSTRAP", "127.0.0.1:19999")
    monkeypatch.setenv("WOK_MONGODB_URI", "mongodb://127.0.0.1:28888/?directConnection=true")
    monkeypatch.setenv("WOK_REPORTING_PORT", "9004")
    monkeypatch.setenv("WOK_ADMIN_KEY", "admin-secret")
    settings = StackSettings()
    assert settings.data_dir == tmp_path / "data"
    assert settings.mail_dir == tmp_path / "mails"
    assert settings.kafka_address == ("127.0.0.1", 19999)
    assert settings.mongodb_address == ("127.0.0.1", 28888)
    assert settings.port_of("reporting") == 9004
    assert settings.admin_key.get_secret_value() == "admin-secret"


def test_free_ports_are_all_different(tmp_path: Path) -> None:
    settings = StackSettings.with_free_ports(data_dir=tmp_path)
    ports = [settings.kafka_address[1], settings.mongodb_address[1], settings.smtp_port]
    ports += [settings.port_of(name) for name in SERVICE_NAMES]
    assert len(set(ports)) == len(ports) == 3 + len(SERVICE_NAMES)
    assert settings.kafka_bootstrap == f"127.0.0.1:{ports[0]}"
