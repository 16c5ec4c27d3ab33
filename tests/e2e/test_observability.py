"""What an operator's Prometheus scrapes from the running services: traffic, domain counts, lag."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import eventually
from wok_cli.devstack import EmbeddedStack

CONSUMERS = ("assessment", "notification", "reporting")


async def samples(stack: EmbeddedStack, service: str) -> dict[tuple[str, tuple], float]:
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=10) as client:
        response = await client.get("/metrics")
    response.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(found: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in found.items()
        if sample == name and all((k, v) in sample_labels for k, v in labels.items())
    )


async def test_metrics_show_registrations_emails_consumed_messages_and_lag(
    stack: EmbeddedStack,
) -> None:
    before = {
        service: await samples(stack, service) for service in ("registration", "notification")
    }
    ags = unique_ags()
    starts = datetime.now(UTC) + timedelta(days=30)
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=10) as client:
        onboarded = await client.post(
            "/v1/municipalities",
            json={"ags": ags, "name": "Messstadt", "kind": "town"},
            headers={"Authorization": f"Bearer {stack.admin_key}"},
        )
        assert onboarded.status_code == 201, onboarded.text
        scheduled = await client.post(
            f"/v1/municipalities/{ags}/dialogue-events",
            json={
                "title": "Dialog",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=2)).isoformat(),
                "format": "in_person",
                "place": "Rathaus",
                "capacity": 10,
                "registration_deadline": (starts - timedelta(days=1)).isoformat(),
            },
            headers={"Authorization": f"Bearer {onboarded.json()['api_key']}"},
        )
        assert scheduled.status_code == 201, scheduled.text
        run = uuid.uuid4().hex[:8]
        for number in range(3):
            registered = await client.post(
                f"/v1/dialogue-events/{scheduled.json()['id']}/registrations",
                json={
                    "name": f"Person {number}",
                    "email": f"metrics-{run}-{number}@example.org",
                    "sector": "resident",
                    "language": "de",
                    "consent": True,
                },
            )
            assert registered.status_code == 201, registered.text

    def registrations(found: dict[tuple[str, tuple], float]) -> float:
        return total(found, "wok_registrations_total") - total(
            before["registration"], "wok_registrations_total"
        )

    await eventually(
        lambda: samples(stack, "registration"),
        lambda found: registrations(found) == 3,
        what="three more registrations counted by registration",
    )

    def sent(found: dict[tuple[str, tuple], float]) -> float:
        return total(found, "wok_emails_sent_total") - total(
            before["notification"], "wok_emails_sent_total"
        )

    await eventually(
        lambda: samples(stack, "notification"),
        lambda found: sent(found) >= 3,
        what="the three confirmations counted as e-mails sent",
    )

    for service in CONSUMERS:
        found = await eventually(
            lambda service=service: samples(stack, service),
            lambda found, service=service: (
                total(found, "wok_consumer_lag", consumer=service) == 0
                and any(name == "wok_consumer_lag" for name, _ in found)
            ),
            what=f"{service}'s consumer lag measured and caught up",
        )
        # FastStream's Kafka middleware counts every message the consumer received
        assert total(found, "faststream_received_messages_total") > 0, service
        lag_topics = {dict(labels)["topic"] for name, labels in found if name == "wok_consumer_lag"}
        assert "registration.events.v1" in lag_topics, (service, lag_topics)
