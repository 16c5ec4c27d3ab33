"""The notification rules without I/O: German dates, template choice, the delivery states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wok_contracts import EventFormat, NotificationKind, RegistrationStatus
from wok_notification import domain
from wok_notification.domain import DeliveryStateError, DeliveryStatus


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "expected"),
    [
        # winter: Berlin is UTC+1
        (
            utc(2026, 12, 10, 17, 0),
            utc(2026, 12, 10, 19, 30),
            "Donnerstag, 10. Dezember 2026, 18:00–20:30 Uhr",
        ),
        # summer: Berlin is UTC+2, and the day has no leading zero
        (
            utc(2026, 7, 4, 8, 0),
            utc(2026, 7, 4, 10, 15),
            "Samstag, 4. Juli 2026, 10:00–12:15 Uhr",
        ),
        # the UTC date is the day before the Berlin date
        (
            utc(2026, 3, 1, 23, 30),
            utc(2026, 3, 2, 1, 0),
            "Montag, 2. März 2026, 00:30–02:00 Uhr",
        ),
        # past midnight in Berlin: both days are named
        (
            utc(2026, 5, 15, 18, 0),
            utc(2026, 5, 15, 23, 0),
            "Freitag, 15. Mai 2026, 20:00 Uhr – Samstag, 16. Mai 2026, 01:00 Uhr",
        ),
    ],
)
def test_event_times_read_in_german_in_berlin_time(
    starts_at: datetime, ends_at: datetime, expected: str
) -> None:
    assert domain.format_event_time_de(starts_at, ends_at) == expected


def test_the_day_the_clocks_go_forward_keeps_wall_clock_times() -> None:
    # 29 March 2026: 02:00 CET becomes 03:00 CEST
    starts_at = utc(2026, 3, 29, 0, 30)  # 01:30 CET
    ends_at = utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert domain.format_event_time_de(starts_at, ends_at) == (
        "Sonntag, 29. März 2026, 01:30–03:30 Uhr"
    )


def test_every_weekday_and_month_has_its_german_name() -> None:
    monday = utc(2026, 1, 5, 12)
    days = [domain.format_day_de(monday + timedelta(days=n)).split(",")[0] for n in range(7)]
    assert days == list(domain.WEEKDAYS_DE)
    months = [domain.format_day_de(utc(2026, m, 15, 12)).split(" ")[2] for m in range(1, 13)]
    assert months == list(domain.MONTHS_DE)


@pytest.mark.parametrize(
    ("kind", "waitlisted", "variant"),
    [
        (NotificationKind.CONFIRMATION, False, "confirmation_confirmed"),
        (NotificationKind.CONFIRMATION, True, "confirmation_waitlisted"),
        (NotificationKind.PROMOTION, False, "promotion"),
        (NotificationKind.RESCHEDULED, False, "rescheduled"),
    ],
)
def test_the_message_variant_follows_kind_and_status(
    kind: NotificationKind, waitlisted: bool, variant: str
) -> None:
    assert domain.mail_variant(kind, waitlisted=waitlisted) == variant


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Thursday, December 10, 2026"),
        ("tr", "10 Aralık 2026 Perşembe"),
        ("uk", "четвер, 10 грудня 2026"),
        ("ar", "الخميس"),
    ],
)
def test_event_times_read_in_the_recipients_language_with_the_weekday(
    language: str, expected: str
) -> None:
    when = domain.format_event_time(
        utc(2026, 12, 10, 17), utc(2026, 12, 10, 19, 30), language=language
    )
    assert expected in when


def test_arabic_runs_right_to_left_and_the_others_left_to_right() -> None:
    assert domain.text_direction("ar") == "rtl"
    assert [domain.text_direction(code) for code in ("de", "en", "tr", "uk")] == ["ltr"] * 4
    assert domain.text_direction("zz") == "ltr", "an unknown code reads like the German fallback"


def test_reminders_fall_due_before_the_start_and_access_only_for_online_events() -> None:
    times = domain.ScheduleTimes(
        access_before=timedelta(hours=2), reminder_before=timedelta(hours=24)
    )
    online = event()  # starts 10 December 2026, 17:00 UTC
    early = utc(2026, 11, 1)
    assert domain.reminder_due(online, times=times, now=early) == utc(2026, 12, 9, 17)
    assert domain.access_due(online, times=times, now=early) == utc(2026, 12, 10, 15)
    # registered within the last day: no reminder, the access information at once
    late = utc(2026, 12, 10, 16)
    assert domain.reminder_due(online, times=times, now=late) is None
    assert domain.access_due(online, times=times, now=late) == late
    in_person = event(format=EventFormat.IN_PERSON, place="Rathaus")
    assert domain.access_due(in_person, times=times, now=early) is None


def test_due_times_compare_as_text_in_the_order_of_time() -> None:
    moments = [
        utc(2026, 12, 9, 23, 59),
        utc(2026, 12, 10),
        utc(2026, 12, 10, 0, 0) + timedelta(microseconds=5),
    ]
    stamps = [domain.iso_utc(moment) for moment in moments]
    assert stamps == sorted(stamps) and len(set(map(len, stamps))) == 1


def test_an_outage_is_given_up_only_after_enough_attempts_and_time() -> None:
    policy = domain.GiveUpPolicy(min_attempts=3, after=timedelta(minutes=15))
    since = utc(2026, 12, 1, 12)
    assert not policy.exhausted(attempts=10, failing_since=since, now=since + timedelta(minutes=14))
    assert not policy.exhausted(attempts=2, failing_since=since, now=since + timedelta(hours=2))
    assert policy.exhausted(attempts=3, failing_since=since, now=since + timedelta(minutes=15))


def event(**overrides: object) -> domain.EventDetails:
    fields: dict[str, object] = {
        "dialogue_event_id": "event-1",
        "ags": "07312000",
        "title": "Dialog",
        "description": "",
        "starts_at": utc(2026, 12, 10, 17),
        "ends_at": utc(2026, 12, 10, 19, 30),
        "format": EventFormat.ONLINE,
        "place": None,
        "revision": 0,
    }
    return domain.EventDetails(**(fields | overrides))  # type: ignore[arg-type]


def test_the_place_says_online_or_where() -> None:
    assert event().location_de() == "online"
    town_hall = "Rathaus, Willy-Brandt-Platz 1"
    assert event(format=EventFormat.IN_PERSON, place=town_hall).location_de() == town_hall
    assert event(format=EventFormat.HYBRID, place=town_hall).location_de() == (
        f"{town_hall} und online"
    )


def test_names_and_titles_cannot_break_a_header_line() -> None:
    contact = domain.Contact(
        registration_id="r-1",
        dialogue_event_id="event-1",
        name="Eve\r\nBcc: someone@example.org",
        email=" eve@example.org ",
        language="de",
    )
    mail = domain.confirmation_mail(
        event=event(title="Dialog\nSubject: spam"),
        contact=contact,
        status=RegistrationStatus.CONFIRMED,
        delivery_id="confirmation:r-1",
        mail_from="Weltoffene Kommune <noreply@weltoffene-kommune.example>",
        public_base_url="https://anmeldung.example/",
    )
    assert mail.recipient_name == "Eve Bcc: someone@example.org"
    assert mail.recipient_email == "eve@example.org"
    assert mail.event_title == "Dialog Subject: spam"
    assert mail.event_url == "https://anmeldung.example/v1/dialogue-events/event-1"
    assert mail.message_id == "<confirmation.r-1@weltoffene-kommune.example>"
    assert mail.invite.uid == "event-1@weltoffene-kommune"


NOW = utc(2026, 11, 1, 12)
LEASE = timedelta(minutes=2)


def pending() -> domain.Delivery:
    return domain.new_delivery(
        NotificationKind.CONFIRMATION,
        registration_id="r-1",
        dialogue_event_id="event-1",
        ags="07312000",
        language="de",
        now=NOW,
    )


def test_a_delivery_is_claimed_then_sent_and_then_says_so_without_the_address() -> None:
    delivery = pending()
    assert delivery.id == "confirmation:r-1"
    claimed = delivery.claimed(token="a", now=NOW, lease=LEASE)
    assert (claimed.attempts, claimed.claimed_until) == (1, NOW + LEASE)

    sent = claimed.sent(token="a", sent_at=NOW, message_id="<m@x>")
    assert sent.status is DeliveryStatus.SENT and sent.finished
    event_data = sent.sent_event()
    assert event_data.notification_id == "confirmation:r-1"
    assert "@" not in event_data.model_dump_json()


def test_a_running_claim_keeps_others_out_until_its_lease_ends() -> None:
    claimed = pending().claimed(token="a", now=NOW, lease=LEASE)
    assert not claimed.claimable(NOW + LEASE / 2)
    with pytest.raises(DeliveryStateError):
        claimed.claimed(token="b", now=NOW + LEASE / 2, lease=LEASE)
    taken_over = claimed.claimed(token="b", now=NOW + LEASE, lease=LEASE)
    assert taken_over.attempts == 2
    with pytest.raises(DeliveryStateError):
        taken_over.sent(token="a", sent_at=NOW, message_id="<m@x>")


def test_a_released_claim_can_be_retried_at_once_and_a_finished_one_never() -> None:
    claimed = pending().claimed(token="a", now=NOW, lease=LEASE)
    released = claimed.released(token="a", now=NOW)
    again = released.claimed(token="b", now=NOW, lease=LEASE)
    failed = again.failed(token="b", reason="mail server refused the message with 550")
    assert failed.status is DeliveryStatus.FAILED
    assert not failed.claimable(NOW + timedelta(days=1))
    with pytest.raises(DeliveryStateError):
        failed.sent_event()


# ---------------------------------------------------------------- one message per hour


def test_only_further_messages_are_held_confirmations_never() -> None:
    hour = timedelta(hours=1)
    held = {kind for kind in NotificationKind if domain.throttled(kind, window=hour)}
    assert held == {
        NotificationKind.RESCHEDULED,
        NotificationKind.CANCELLED,
        NotificationKind.ACCESS,
        NotificationKind.REMINDER,
        NotificationKind.TASKFORCE_REMINDER,
    }
    assert not any(domain.throttled(kind, window=timedelta(0)) for kind in NotificationKind)


def test_a_person_is_their_address_whatever_its_case_and_a_digest_is_per_window() -> None:
    assert domain.recipient_key(" Ayse@Example.ORG") == domain.recipient_key("ayse@example.org")
    assert "ayse" not in domain.recipient_key("ayse@example.org")
    key = domain.recipient_key("ayse@example.org")
    first = domain.digest_id(key, due_at="2026-11-20T10:00:00.000000Z")
    assert first == domain.digest_id(key, due_at="2026-11-20T10:00:00.000000Z")
    assert first != domain.digest_id(key, due_at="2026-11-20T11:00:00.000000Z")
    assert "." not in first and "$" not in first


def digest_item(
    kind: NotificationKind, *, minute: int, event: str = "e1", revision: int | None = None
) -> domain.DigestItem:
    return domain.DigestItem(
        delivery_id=f"{kind.value}:r1:{minute}",
        kind=kind,
        registration_id="r1",
        dialogue_event_id=event,
        held_at=domain.iso_utc(utc(2026, 11, 20, 10, minute)),
        revision=revision,
    )


def test_a_later_message_on_the_same_event_replaces_an_earlier_one() -> None:
    old_date = digest_item(NotificationKind.RESCHEDULED, minute=1, revision=1)
    new_date = digest_item(NotificationKind.RESCHEDULED, minute=2, revision=2)
    reminder = digest_item(NotificationKind.REMINDER, minute=3)
    other_event = digest_item(NotificationKind.REMINDER, minute=4, event="e2")
    called_off = digest_item(NotificationKind.CANCELLED, minute=5)
    items = [old_date, new_date, reminder, other_event, called_off]
    assert [domain.superseded(i, items) for i in items] == [True, True, True, False, False]
    assert not domain.superseded(old_date, [old_date]), "alone it stands"


def test_held_deliveries_end_in_their_digest_only() -> None:
    delivery = domain.new_delivery(
        NotificationKind.REMINDER,
        registration_id="r1",
        dialogue_event_id="e1",
        ags="07312000",
        language="de",
        now=utc(2026, 11, 20),
    )
    held = delivery.held_in("digest:a")
    assert (held.status, held.digest_id, held.finished) == (DeliveryStatus.HELD, "digest:a", True)
    with pytest.raises(DeliveryStateError):
        held.sent_in_digest(digest_id="digest:b", sent_at=utc(2026, 11, 20, 1), message_id="<m>")
    sent = held.sent_in_digest(digest_id="digest:a", sent_at=utc(2026, 11, 20, 1), message_id="<m>")
    assert sent.sent_event().digest_id == "digest:a"
    with pytest.raises(DeliveryStateError):
        sent.held_in("digest:c")
    claimed = delivery.claimed(token="t", now=utc(2026, 11, 20), lease=timedelta(minutes=2))
    with pytest.raises(DeliveryStateError):
        claimed.held_in("digest:a")  # being sent already
    withdrawn = held.withdrawn(digest_id="digest:a", reason="cancelled", now=utc(2026, 11, 20))
    assert (withdrawn.status, withdrawn.failure_reason) == (DeliveryStatus.WITHDRAWN, "cancelled")


def test_a_taskforce_reminder_is_one_delivery_per_member_and_event() -> None:
    one = domain.delivery_id(NotificationKind.TASKFORCE_REMINDER, "m1", subject="e1")
    other = domain.delivery_id(NotificationKind.TASKFORCE_REMINDER, "m1", subject="e2")
    assert one == "taskforce_reminder:m1:e1" and one != other


def test_the_staff_mail_links_the_report_in_german_or_english() -> None:
    office = domain.OfficeContact(
        ags="07312000",
        municipality_name="Kaiserslautern",
        office_name="Integrationsbüro",
        email="integration@kaiserslautern.example",
        language="tr",
    )
    mail = domain.compose_staff_mail(
        office=office,
        language="tr",
        delivery_id="self_check_scored:office:07312000:sc1",
        mail_from="Weltoffene Kommune <noreply@example.org>",
        assessment_url="https://assessment.example/",
        overall=61.6,
        overall_level="developing",
        strengths=[6],
        deficits=[1, 3],
    )
    assert mail.report_url == "https://assessment.example/v1/municipalities/07312000/report?lang=en"
    assert (mail.overall, mail.recipient_name) == ("62", "Integrationsbüro")
    assert mail.deficits == ("1. Management und Steuerung", "3. Fairer Zugang und Teilhabechancen")
    german = domain.report_url("https://a.example", ags="07312000", language="de")
    assert german == "https://a.example/v1/municipalities/07312000/report"
    signed = domain.report_url(
        "https://a.example",
        ags="07312000",
        language="en",
        link={"expires": "1780000000", "signature": "ab12"},
    )
    assert signed == (
        "https://a.example/v1/municipalities/07312000/report"
        "?lang=en&expires=1780000000&signature=ab12"
    )
