"""Services on the embedded stack, played by a stand-in app: readiness, settings, crashes."""

import os
import signal

import httpx
import pytest

from wok_cli.devstack import EmbeddedStack, ServiceSpec, StackStartError, default_services
from wok_cli.settings import SERVICE_NAMES


def test_the_default_services_are_the_platforms_own(settings_for) -> None:
    settings = settings_for()
    specs = [(spec.name, spec.module, spec.port) for spec in default_services(settings)]
    assert specs[:5] == [
        ("registration", "wok_registration", settings.registration_port),
        ("assessment", "wok_assessment", settings.assessment_port),
        ("notification", "wok_notification", settings.notification_port),
        ("reporting", "wok_reporting", settings.reporting_port),
        ("exchange", "wok_exchange", settings.exchange_port),
    ]
    # and any a developer added with `wok new service`, each on a port of its own
    assert specs == [(name, f"wok_{name}", settings.port_of(name)) for name in SERVICE_NAMES]
    assert len({port for *_, port in specs}) == len(specs)
    assert [spec.name for spec in EmbeddedStack(settings).services] == list(SERVICE_NAMES)


def test_a_service_starts_ready_and_gets_the_stack_settings(settings_for, standin) -> None:
    settings = settings_for(topic_prefix="dev.")
    with EmbeddedStack(settings, services=[standin("registration")]) as stack:
        shown = httpx.get(f"{stack.url('registration')}/settings").json()
        environment = stack.service_environment()

    assert shown == {
        "WOK_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "WOK_MONGODB_URI": stack.mongodb_uri,
        "WOK_SMTP_PORT": str(stack.smtp_port),
        "WOK_REGISTRATION_URL": environment["WOK_REGISTRATION_URL"],
        "WOK_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "WOK_TOPIC_PREFIX": "dev.",
    }
    assert environment["WOK_ADMIN_KEY"] == stack.admin_key
    assert environment["WOK_SERVICE_KEY"] == stack.service_key


def test_a_killed_service_comes_back_on_restart(settings_for, standin) -> None:
    with EmbeddedStack(settings_for(), services=[standin("reporting")]) as stack:
        first_pid = stack.pid("reporting")

        assert stack.kill_service("reporting", signal.SIGKILL) == -signal.SIGKILL
        assert stack.exited() == {"reporting": -signal.SIGKILL}
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{stack.url('reporting')}/readyz")

        stack.restart_service("reporting")
        assert stack.pid("reporting") != first_pid
        assert httpx.get(f"{stack.url('reporting')}/readyz").status_code == 200
        # The log of the killed run is kept; the new run appends to it.
        assert stack.log_path("reporting").read_text().count("stand-in service starting") == 2


def test_a_service_that_never_gets_ready_is_named_with_its_log(settings_for, standin) -> None:
    stack = EmbeddedStack(
        settings_for(stack_ready_timeout_s=6.0),  # long enough to start on a loaded machine
        services=[standin("assessment", STANDIN_NEVER_READY="1")],
    )
    with pytest.raises(StackStartError) as failure:
        stack.start()

    message = str(failure.value)
    assert message.startswith("assessment was not ready in time")
    assert "503" in message and "/readyz" in message
    assert "stand-in service starting" in message  # the tail of its log
    assert stack.exited().keys() == set(stack.names)  # nothing is left running


def test_a_service_that_cannot_start_fails_fast_with_its_error(settings_for) -> None:
    settings = settings_for()
    missing = ServiceSpec(
        name="notification", module="wok_no_such_service", port=settings.notification_port
    )
    stack = EmbeddedStack(settings, services=[missing])
    with pytest.raises(StackStartError, match="notification exited with code 1") as failure:
        stack.start()
    assert "No module named wok_no_such_service" in str(failure.value)
    for name in stack.names:
        pid = stack.pid(name)
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
