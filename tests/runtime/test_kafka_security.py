"""Production reaches Kafka over TLS with a SCRAM user per service; dev stays plaintext."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from wok_cli.commands.topics import kafka_target
from wok_runtime.kafka import build_broker, kafka_client_options
from wok_runtime.settings import WokSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("WOK_"):
            monkeypatch.delenv(name)


def test_dev_settings_connect_in_plaintext() -> None:
    assert kafka_client_options(WokSettings(kafka_bootstrap="k:9092")) == {
        "bootstrap_servers": "k:9092"
    }


def test_sasl_ssl_settings_give_every_client_tls_and_the_scram_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WOK_KAFKA_BOOTSTRAP", "kafka-0:9093,kafka-1:9093")
    monkeypatch.setenv("WOK_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("WOK_KAFKA_SASL_USERNAME", "wok-reporting")
    monkeypatch.setenv("WOK_KAFKA_SASL_PASSWORD", "s3cret")

    options = kafka_client_options(WokSettings())

    assert options["bootstrap_servers"] == "kafka-0:9093,kafka-1:9093"
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "wok-reporting"
    assert options["sasl_plain_password"] == "s3cret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_sasl_plaintext_has_no_tls_and_other_mechanisms_are_passed_on() -> None:
    options = kafka_client_options(
        WokSettings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="wok-assessment",
            kafka_sasl_password="pw",
        )
    )
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert "ssl_context" not in options or options["ssl_context"] is None


def test_a_custom_ca_bundle_is_used(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(FileNotFoundError):
        kafka_client_options(
            WokSettings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(missing))
        )


def test_sasl_without_credentials_fails_at_start_naming_the_variables() -> None:
    with pytest.raises(ValidationError, match="WOK_KAFKA_SASL_USERNAME and WOK_KAFKA_SASL_PA"):
        WokSettings(kafka_security_protocol="SASL_SSL")


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        WokSettings(kafka_security_protocol="SASL_TLS")  # type: ignore[arg-type]


def test_the_service_broker_carries_the_security(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = WokSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="wok-notification",
        kafka_sasl_password="pw",
    )
    broker = build_broker(settings, client_id="notification")
    connection = broker._connection_kwargs  # what FastStream starts its aiokafka clients with
    assert connection["security_protocol"] == "SASL_SSL"
    assert connection["sasl_plain_username"] == "wok-notification"


def test_ops_commands_use_the_same_security(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOK_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("WOK_KAFKA_SASL_USERNAME", "wok-operator")
    monkeypatch.setenv("WOK_KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.setenv("WOK_KAFKA_BOOTSTRAP", "kafka:9093")

    from rich.console import Console

    options = kafka_target(None, Console()).client_options()

    assert options["bootstrap_servers"] == "kafka:9093"
    assert options["sasl_plain_username"] == "wok-operator"
    assert options["security_protocol"] == "SASL_SSL"
