"""Every address, port and secret comes from a WOK_* variable (DESIGN.md section 7)."""

from __future__ import annotations

import os

import pytest

from wok_assessment.settings import AssessmentSettings
from wok_exchange.settings import ExchangeSettings
from wok_runtime.settings import BystanderConsumerSettings, WokSettings


class RegistrationSettings(WokSettings):
    """A service adds its own settings, prefixed alike."""

    registration_port: int = 8001


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # whatever the shell running the tests has set must not leak into the defaults
    for name in list(os.environ):
        if name.upper().startswith("WOK_"):
            monkeypatch.delenv(name)


def test_the_defaults_are_those_of_the_design() -> None:
    settings = RegistrationSettings()

    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.mongodb_uri == "mongodb://127.0.0.1:27017"
    assert settings.topic_prefix == ""
    assert settings.registration_port == 8001
    assert settings.host == "127.0.0.1"
    assert settings.service_key.get_secret_value() == ""
    assert settings.consumer_max_attempts == 5
    assert settings.topic("registration.events.v1") == "registration.events.v1"


def test_wok_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOK_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("WOK_MONGODB_URI", "mongodb://db:27017/?replicaSet=rs0")
    monkeypatch.setenv("WOK_TOPIC_PREFIX", "staging.")
    monkeypatch.setenv("WOK_REGISTRATION_PORT", "9101")
    monkeypatch.setenv("WOK_KAFKA_SESSION_TIMEOUT_MS", "2000")
    monkeypatch.setenv("WOK_CONSUMER_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("WOK_CONSUMER_BACKOFF_INITIAL_S", "0.05")
    monkeypatch.setenv("WOK_SERVICE_KEY", "s3cret")
    monkeypatch.setenv("WOK_LOG_LEVEL", "debug")

    settings = RegistrationSettings()

    assert settings.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    assert settings.mongodb_uri == "mongodb://db:27017/?replicaSet=rs0"
    assert settings.registration_port == 9101
    assert settings.kafka_session_timeout_ms == 2000
    assert settings.consumer_max_attempts == 7
    assert settings.consumer_backoff_initial_s == 0.05
    assert settings.log_level == "debug"
    assert settings.topic("registration.events.v1") == "staging.registration.events.v1"
    assert settings.service_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings), "secrets never show up in logs"


def test_names_are_case_insensitive_and_unprefixed_ones_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("wok_kafka_bootstrap", "lower:9092")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "unprefixed:9092")
    monkeypatch.setenv("WOK_SOMETHING_ELSE", "a setting of another service")

    assert WokSettings().kafka_bootstrap == "lower:9092"


def test_a_malformed_value_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOK_REGISTRATION_PORT", "eighty")

    with pytest.raises(ValueError, match="registration_port"):
        RegistrationSettings()


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOK_MONGODB_URI", "mongodb://from-env:27017")

    assert WokSettings(mongodb_uri="mongodb://127.0.0.1:40001").mongodb_uri == (
        "mongodb://127.0.0.1:40001"
    )


def test_consumer_groups_carry_the_deployment_prefix_like_topics() -> None:
    # two deployments on one cluster (e.g. staging and production) must not share a group
    staging = WokSettings(topic_prefix="staging.")
    assert staging.consumer_group("reporting") == "staging.reporting"
    assert staging.topic("registration.events.v1") == "staging.registration.events.v1"
    assert WokSettings().consumer_group("reporting") == "reporting"


def test_a_quiet_relay_backs_off_to_the_idle_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = RegistrationSettings()
    assert settings.kafka_fetch_max_wait_ms == 50
    assert (settings.outbox_poll_interval_s, settings.outbox_idle_poll_interval_s) == (0.5, 5.0)

    monkeypatch.setenv("WOK_OUTBOX_IDLE_POLL_INTERVAL_S", "0.5")  # no backing off
    assert RegistrationSettings().outbox_idle_poll_interval_s == 0.5


@pytest.mark.parametrize("settings_class", [AssessmentSettings, ExchangeSettings])
def test_consumers_that_ignore_most_of_what_they_read_fetch_every_half_second_unless_set(
    settings_class: type[BystanderConsumerSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # each fetch costs the embedded broker CPU; assessment and exchange ignore most events
    assert settings_class().kafka_fetch_max_wait_ms == 500
    assert WokSettings().kafka_fetch_max_wait_ms == 50

    monkeypatch.setenv("WOK_KAFKA_FETCH_MAX_WAIT_MS", "80")
    assert settings_class().kafka_fetch_max_wait_ms == 80
