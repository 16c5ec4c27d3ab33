"""How `wok demo` plays and judges its outcome: aggregates, self-check scores, benchmark,
events, workshops, measures and mails (no servers)."""

from __future__ import annotations

import email
import email.policy
import html
from collections import Counter
from dataclasses import replace
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path
from typing import Any

from wok_assessment.domain.catalogue import Catalogue, load_catalogues
from wok_assessment.domain.scoring import assess
from wok_cli.demo import (
    MUNICIPALITIES,
    WORKSHOP_VOICES,
    AssessmentPlayed,
    Check,
    DemoResult,
    Endpoints,
    ExpectedMail,
    Played,
    SeenMail,
    agrees,
    answer_profile,
    apply_answers,
    benchmark_problems,
    cancellation_plan,
    confirmation_mails,
    erasure_target,
    expected_metrics,
    field_label,
    mail_census,
    mail_checks,
    mail_folder,
    measure_problems,
    parse_served_catalogue,
    perspective_problems,
    played_metrics,
    preferred_language,
    promotion_mail_problems,
    promotion_problems,
    read_mail,
    reschedule_mail_problems,
    rescheduled_recipients,
    rule_checks,
    rule_mail_deliveries,
    rules_municipality,
    score_problems,
    scored_event_problems,
    strongest_field,
    verdict,
    weakest_field,
    workshop_ratings,
    write_html_report,
)
from wok_contracts import validate_ags
from wok_contracts.events.assessment import AssessmentScored, FieldScore
from wok_contracts.events.notification import NotificationKind
from wok_notification.domain import delivery_id, message_id


def test_every_demo_municipality_has_a_valid_key_and_a_distinct_one() -> None:
    keys = [ags for ags, _, _ in MUNICIPALITIES]
    assert all(validate_ags(ags) == ags for ags in keys)
    assert len(set(keys)) == len(keys) >= 22


def test_expected_is_what_was_there_plus_what_was_played() -> None:
    played = [
        Played(
            ags="07312000",
            name="Kaiserslautern",
            onboarded=True,
            dialogue_events=1,
            confirmed=10,
            waitlisted=3,
            cancelled=["r-k1"],
            promoted=["r-k11"],
        ),
        Played(
            ags="05911000",
            name="Bochum",
            onboarded=False,
            dialogue_events=1,
            confirmed=6,
            waitlisted=0,
        ),
    ]
    baseline = {
        "municipalities": 2,
        "dialogue_events": 2,
        "registrations_total": 20,
        "registrations_confirmed": 20,
        "registrations_waitlisted": None,  # withheld before the run
        "registrations_cancelled": 2,
        "confirmations_sent": 20,
    }
    expected = expected_metrics(baseline, played_metrics(played))
    # A cancelled place stays counted (as cancelled) and goes to the first on the waitlist.
    assert expected == {
        "municipalities": 3,
        "dialogue_events": 4,
        "registrations_total": 39,
        "registrations_confirmed": 36,
        "registrations_waitlisted": None,
        "registrations_cancelled": 3,
        "confirmations_sent": 39,
    }
    assert played_metrics(played)["registrations_waitlisted"] == 2


def test_a_withheld_cell_is_not_a_disagreement_but_a_withheld_total_is() -> None:
    assert verdict("registrations_waitlisted", 3, None) == "withheld"
    assert verdict("registrations_waitlisted", None, 6) == "withheld"
    assert verdict("registrations_total", 7, None) == "differs"
    assert verdict("registrations_total", 7, 6) == "differs"
    assert verdict("registrations_total", 7, 7) == "agrees"
    expected = {"registrations_total": 7, "registrations_waitlisted": 3}
    assert agrees(expected, {"metrics": {"registrations_total": 7}})
    assert not agrees(expected, {"metrics": {"registrations_total": 6}})
    assert not agrees(expected, None)


def test_the_html_report_shows_each_metric_and_municipality(tmp_path: Path) -> None:
    from wok_cli.demo import DemoResult, write_html_report

    played = [
        Played(
            ags="07312000",
            name="Kaiserslautern",
            onboarded=True,
            dialogue_events=1,
            confirmed=4,
            waitlisted=2,
            cancelled=["r1"],
            promoted=["r5"],
        )
    ]
    totals = played_metrics(played)
    result = DemoResult(
        played=played,
        baseline=dict.fromkeys(totals, 0),
        played_totals=totals,
        expected=dict(totals),
        observed={**totals, "registrations_waitlisted": None},
        seconds=1.5,
        agreed=True,
    )
    html = write_html_report(result, tmp_path / "report.html").read_text()
    assert "Kaiserslautern" in html and "07312000" in html
    assert "The program aggregates agree" in html
    assert "<td>withheld</td>" in html
    assert "<th>cancelled</th><th>promoted</th>" in html
    assert "<td>4</td><td>2</td><td>1</td><td>1</td>" in html  # as registered, then the rules
    assert "<td>registrations_cancelled</td><td>1</td>" in html


# -- the registration rules ------------------------------------------------------------------


def test_a_full_event_cancels_its_first_confirmed_place_for_the_first_on_the_waitlist() -> None:
    statuses = {"r1": "confirmed", "r2": "confirmed", "r3": "waitlisted", "r4": "waitlisted"}
    assert cancellation_plan(statuses) == ("r1", "r3")
    assert cancellation_plan({"r1": "confirmed", "r2": "confirmed"}) is None
    assert cancellation_plan({}) is None


def test_the_demo_erases_whoever_cancelled_else_the_last_of_an_event_nobody_waits_for() -> None:
    full = Played(
        ags="05911000",
        name="Bochum",
        statuses={"r1": "confirmed", "r2": "waitlisted"},
        cancelled=["r1"],
        promoted=["r2"],
    )
    open_places = Played(
        ags="07312000", name="Kaiserslautern", statuses={"k1": "confirmed", "k2": "confirmed"}
    )
    stuck = Played(ags="09162000", name="München", statuses={"m1": "confirmed", "m2": "waitlisted"})
    assert erasure_target(full) == "r1"
    assert erasure_target(open_places) == "k2"
    assert erasure_target(stuck) is None  # erasing there would promote someone unplanned
    assert rules_municipality([open_places, full]) is full
    assert rules_municipality([open_places]) is open_places
    assert rules_municipality([Played(ags="1", name="x")]) is None
    assert rescheduled_recipients(full) == ["r2"]


def rule_mail(
    registration_id: str,
    *,
    to: str,
    kind: NotificationKind,
    revision: int | None = None,
    uid: str = "e1@weltoffene-kommune",
    sequence: int = 0,
) -> SeenMail:
    """A mail as notification writes it: its Message-ID from the delivery id, an invitation."""
    message = EmailMessage()
    message["To"] = to
    message["Message-ID"] = message_id(
        delivery_id(kind, registration_id, revision=revision), domain="weltoffene-kommune.example"
    )
    message["Content-Language"] = "de"
    message.set_content("Hallo")
    ics = (
        "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nSEQUENCE:{sequence}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    message.add_attachment(
        ics.encode(), maintype="text", subtype="calendar", filename="einladung.ics"
    )
    return read_mail(message.as_bytes())


def rescheduled_bochum() -> Played:
    return Played(
        ags="05911000",
        name="Bochum",
        registrations={rid: ExpectedMail(f"{rid}@example.org", "de") for rid in ("r1", "r2", "r3")},
        statuses={"r1": "confirmed", "r2": "confirmed", "r3": "waitlisted"},
        cancelled=["r1"],
        promoted=["r3"],
        rescheduled_revision=1,
        erased="r1",
    )


def test_rescheduled_mails_update_the_first_invitation_for_everyone_still_registered() -> None:
    played = rescheduled_bochum()
    confirmations = [
        rule_mail(rid, to=f"{rid}@example.org", kind=NotificationKind.CONFIRMATION)
        for rid in ("r1", "r2", "r3")
    ]
    rescheduled = {
        rid: rule_mail(
            rid,
            to=f"{rid}@example.org",
            kind=NotificationKind.RESCHEDULED,
            revision=1,
            sequence=1,
        )
        for rid in ("r2", "r3")
    }
    assert rescheduled["r2"].calendar_uid == "e1@weltoffene-kommune"
    assert rescheduled["r2"].calendar_sequence == 1
    assert reschedule_mail_problems(played, [*confirmations, *rescheduled.values()]) == []
    assert rule_mail_deliveries([played]) == {
        "promotion.r3",
        "confirmation.r1",
        "confirmation.r2",
        "confirmation.r3",
        "rescheduled.r2.1",
        "rescheduled.r3.1",
    }

    new_uid = rule_mail(
        "r2",
        to="r2@example.org",
        kind=NotificationKind.RESCHEDULED,
        revision=1,
        uid="other",
        sequence=1,
    )
    same_sequence = rule_mail(
        "r3", to="r3@example.org", kind=NotificationKind.RESCHEDULED, revision=1, sequence=0
    )
    problems = reschedule_mail_problems(played, [*confirmations, new_uid, same_sequence])
    assert len(problems) == 2
    assert "r2's invitation UID 'other'" in problems[0]
    assert "SEQUENCE 0" in problems[1]
    missing = reschedule_mail_problems(played, [*confirmations, rescheduled["r2"]])
    assert missing == ["05911000: 0 rescheduled mails for r3"]


def test_the_first_on_the_waitlist_must_be_promoted_and_told_and_nobody_else() -> None:
    played = rescheduled_bochum()
    played.dialogue_event_id = "e1"
    assert promotion_problems([played], {"e1": {"r3"}}) == []
    assert promotion_problems([played], {"e1": set()}) == [
        "05911000: r3, first on the waitlist, was not promoted"
    ]
    assert "r2 was promoted" in promotion_problems([played], {"e1": {"r2", "r3"}})[0]

    told = rule_mail("r3", to="r3@example.org", kind=NotificationKind.PROMOTION)
    elsewhere = rule_mail("r3", to="r2@example.org", kind=NotificationKind.PROMOTION)
    assert promotion_mail_problems([played], [told]) == []
    assert promotion_mail_problems([played], []) == ["05911000: 0 promotion mails for r3"]
    assert promotion_mail_problems([played], [elsewhere]) == [
        "05911000: the promotion mail of r3 is not addressed to it"
    ]


def test_rule_checks_pass_fail_or_skip_by_what_was_played_and_can_be_seen() -> None:
    played = rescheduled_bochum()
    played.dialogue_event_id = "e1"
    mails = [
        *(
            rule_mail(rid, to=f"{rid}@example.org", kind=NotificationKind.CONFIRMATION)
            for rid in ("r1", "r2", "r3")
        ),
        *(
            rule_mail(
                rid,
                to=f"{rid}@example.org",
                kind=NotificationKind.RESCHEDULED,
                revision=1,
                sequence=1,
            )
            for rid in ("r2", "r3")
        ),
        rule_mail("r3", to="r3@example.org", kind=NotificationKind.PROMOTION),
    ]
    checks = rule_checks([played], promotions={"e1": {"r3"}}, mails=mails, folder=Path("m"))
    assert {c.name: c.outcome for c in checks} == {
        "cancellations and promotions": "passed",
        "rescheduling": "passed",
        "erasure": "passed",
        "promotion mails": "passed",
        "rescheduled mails": "passed",
    }

    played.problem("erasure", "the contact of erased r1 answers 200")
    without_folder = rule_checks([played], promotions={"e1": set()}, mails=None, folder=None)
    assert {c.name: c.outcome for c in without_folder} == {
        "cancellations and promotions": "failed",
        "rescheduling": "passed",
        "erasure": "failed",
        "promotion mails": "skipped",
        "rescheduled mails": "skipped",
    }
    assert "answers 200" in without_folder[2].detail

    unplayed = rule_checks([played], promotions=None, mails=None, folder=None)
    assert {c.outcome for c in unplayed} == {"skipped"}
    nobody_waits = Played(ags="07312000", name="Kaiserslautern", statuses={"k1": "confirmed"})
    quiet = rule_checks([nobody_waits], promotions={}, mails=[], folder=Path("m"))
    assert [c.outcome for c in quiet] == ["skipped", "failed", "failed", "skipped", "failed"]


# -- the assessment part -------------------------------------------------------------------


def served_result(catalogue: Catalogue, answers: dict[str, str]) -> dict[str, Any]:
    """A result shaped as `GET /v1/self-checks/{id}/result` answers it, from the domain."""
    scored = assess(catalogue, answers)
    return {
        "overall": scored.overall,
        "strengths": list(scored.strengths),
        "deficits": list(scored.deficits),
        "fields": [
            {
                "field": f.field,
                "score": f.score,
                "level": f.level.value,
                "coverage": f.coverage,
                "answered": f.answered,
            }
            for f in scored.fields
        ],
    }


def test_the_catalogue_as_served_reads_back_as_the_catalogue() -> None:
    catalogue = load_catalogues().current
    served = {**catalogue.model_dump(mode="json"), "current": True, "versions": ["2026.1"]}
    assert parse_served_catalogue(served) == catalogue


def test_each_municipality_answers_its_own_self_check_the_same_way_every_time() -> None:
    catalogue = load_catalogues().current
    questions = catalogue.question_count()
    profiles = {ags: answer_profile(ags, catalogue) for ags, _, _ in MUNICIPALITIES}

    assert answer_profile("07312000", catalogue) == profiles["07312000"]
    assert len({tuple(sorted(p.final.items())) for p in profiles.values()}) == len(profiles)
    for profile in profiles.values():
        assert 0.6 * questions <= len(profile.final) <= questions
        # the second sitting completes the first, revises answers and clears one
        assert apply_answers(apply_answers({}, profile.first), profile.second) == profile.final
        assert None in profile.second.values() or len(profile.final) == questions
        revised = [q for q, v in profile.first.items() if profile.second.get(q, v) != v]
        assert len(revised) >= 2
    dont_know = sum(
        value == "dont_know" for profile in profiles.values() for value in profile.final.values()
    )
    assert 0 < dont_know < 0.2 * sum(len(p.final) for p in profiles.values())
    levels = {f.level for p in profiles.values() for f in assess(catalogue, p.final).fields}
    assert len(levels) >= 4, "the demo shows varied levels"


def test_a_served_result_is_judged_against_the_domains_scoring_of_the_played_answers() -> None:
    catalogue = load_catalogues().current
    answers = answer_profile("05911000", catalogue).final
    result = served_result(catalogue, answers)

    assert score_problems(result, catalogue=catalogue, answers=answers) == []

    result["fields"][2]["score"] = (result["fields"][2]["score"] or 0) + 0.1
    result["overall"] = 12.3
    problems = score_problems(result, catalogue=catalogue, answers=answers)
    assert any(problem.startswith("field 3 score") for problem in problems)
    assert any(problem.startswith("overall") for problem in problems)
    one_less = dict(answers)
    one_less.pop(next(q for q, v in answers.items() if v != "dont_know"))
    assert score_problems(
        served_result(catalogue, one_less), catalogue=catalogue, answers=answers
    ), "a lost answer shows"


def test_weakest_and_strongest_fields_leave_out_insufficient_data() -> None:
    result = {
        "fields": [
            {"field": 1, "score": 80.0, "level": "established"},
            {"field": 2, "score": 10.0, "level": "insufficient_data"},
            {"field": 3, "score": 30.0, "level": "developing"},
            {"field": 4, "score": 30.0, "level": "developing"},
            {"field": 5, "score": None, "level": "insufficient_data"},
            {"field": 6, "score": 80.0, "level": "established"},
        ]
    }
    assert weakest_field(result) == (3, 30.0)
    assert strongest_field(result) == (1, 80.0)
    thin = {"fields": [{"field": 2, "score": 10.0, "level": "insufficient_data"}]}
    assert weakest_field(thin) == strongest_field(thin) == (2, 10.0)
    assert weakest_field({"fields": []}) is None
    assert field_label((3, 30.0)) == "3 Fairer Zugang und Teilhabechancen (30.0)"


def test_workshop_voices_come_from_four_stakeholder_groups_and_rate_every_field() -> None:
    voices = workshop_ratings("07312000", {1: 90.0, 2: None, 3: 5.0})
    assert voices == workshop_ratings("07312000", {1: 90.0, 2: None, 3: 5.0})
    assert len({group for group, _ in voices}) == 4
    for _, ratings in voices:
        assert sorted(ratings) == list(range(1, 8))
        assert all(0 <= rating <= 100 for rating in ratings.values())


def bench(score: float | None, rank: int | None, participants: int) -> dict[str, Any]:
    return {"score": score, "rank": rank, "participants": participants}


def test_benchmark_ranks_must_follow_the_played_scores() -> None:
    scores = {"A": {1: 80.0}, "B": {1: 60.0}, "C": {1: 60.0}}
    fields_without = {n: bench(None, None, 3) for n in range(2, 8)}
    right = {
        "A": {1: bench(80.0, 1, 3), **fields_without},
        "B": {1: bench(60.0, 2, 3), **fields_without},
        "C": {1: bench(60.0, 2, 3), **fields_without},
    }
    assert benchmark_problems(scores, right, exclusive=True) == []
    assert benchmark_problems(scores, right, exclusive=False) == []

    # another municipality on a shared stack ranks above all of them
    shared = {
        "A": {1: bench(80.0, 2, 4), **fields_without},
        "B": {1: bench(60.0, 3, 4), **fields_without},
        "C": {1: bench(60.0, 3, 4), **fields_without},
    }
    assert benchmark_problems(scores, shared, exclusive=False) == []
    assert benchmark_problems(scores, shared, exclusive=True) != []

    swapped = {**right, "C": {1: bench(60.0, 3, 3), **fields_without}}
    assert benchmark_problems(scores, swapped, exclusive=False), "ties share a rank"
    wrong_score = {**right, "A": {1: bench(70.0, 1, 3), **fields_without}}
    assert benchmark_problems(scores, wrong_score, exclusive=False)
    ranked_without_data = {**right, "A": {**right["A"], 2: bench(None, 1, 3)}}
    assert benchmark_problems(scores, ranked_without_data, exclusive=True)


def test_every_played_result_must_be_published_as_assessment_scored() -> None:
    catalogue = load_catalogues().current
    answers = answer_profile("09162000", catalogue).final
    result = served_result(catalogue, answers)
    scored = assess(catalogue, answers)
    event = AssessmentScored(
        self_check_id="09162000-1",
        ags="09162000",
        sequence=1,
        catalogue_version=catalogue.version,
        fields=[
            FieldScore(
                field=f.field,
                score=f.score,
                level=f.level,
                coverage=f.coverage,
                answered=f.answered,
                questions=f.questions,
            )
            for f in scored.fields
        ],
        overall=scored.overall,
        overall_level=scored.overall_level,
    )
    assert scored_event_problems({"09162000-1": result}, {"09162000-1": event}) == []
    assert scored_event_problems({"09162000-1": result}, {}) != []
    other = event.model_copy(update={"overall": 1.0})
    assert scored_event_problems({"09162000-1": result}, {"09162000-1": other}) != []


def test_workshop_and_measures_are_judged_by_what_the_service_lists() -> None:
    voices = WORKSHOP_VOICES
    groups = dict(Counter(group.value for group, _ in voices))
    summary: dict[str, Any] = {
        "self_check_id": "X-1",
        "fields": [
            {
                "field": n,
                "participants": len(voices),
                "groups": [{"stakeholder_group": g, "participants": c} for g, c in groups.items()],
            }
            for n in range(1, 8)
        ],
    }
    assert perspective_problems(summary, self_check_id="X-1", voices=voices) == []
    assert perspective_problems(summary, self_check_id="X-2", voices=voices) != []
    summary["fields"][0]["participants"] = 1
    assert perspective_problems(summary, self_check_id="X-1", voices=voices) != []

    played = {"m1": "running", "m2": "planned", "m3": "planned"}
    fields = {"m1": 4, "m2": 4, "m3": 2}
    listed = [
        {"id": "m1", "status": "running", "field": 4},
        {"id": "m2", "status": "planned", "field": 4},
        {"id": "m3", "status": "planned", "field": 2},
    ]
    assert measure_problems(played, listed, fields=fields) == []
    assert measure_problems(played, listed[:2], fields=fields) != []
    assert measure_problems(played, listed, fields={**fields, "m3": 4}) != []


# -- the mails -----------------------------------------------------------------------------


def test_registrations_cycle_through_the_five_languages() -> None:
    assert [preferred_language(n) for n in range(6)] == ["de", "en", "tr", "ar", "uk", "de"]


def confirmation(
    registration_id: str,
    *,
    to: str,
    language: str,
    direction: str = "ltr",
    kind: NotificationKind = NotificationKind.CONFIRMATION,
) -> bytes:
    """A mail with the headers notification sets (its Message-ID from the delivery id)."""
    message = EmailMessage()
    message["From"] = "Weltoffene Kommune <noreply@weltoffene-kommune.example>"
    message["To"] = to
    message["Subject"] = "Anmeldebestätigung"
    message["Message-ID"] = message_id(
        delivery_id(kind, registration_id), domain="weltoffene-kommune.example"
    )
    message.set_content("Hallo")
    message.add_alternative(
        f'<!DOCTYPE html>\n<html lang="{language}" dir="{direction}"><body>Hallo</body></html>',
        subtype="html",
    )
    message["Content-Language"] = language
    return message.as_bytes()


def test_confirmation_mails_are_counted_per_language_one_per_registration(
    tmp_path: Path,
) -> None:
    expected = {
        "r-de": ExpectedMail("a@example.org", "de"),
        "r-ar": ExpectedMail("b@example.org", "ar"),
        "r-uk": ExpectedMail("c@example.org", "uk"),
    }
    mails = {
        "1.eml": confirmation("r-de", to="A <a@example.org>", language="de"),
        "2.eml": confirmation("r-ar", to="B <b@example.org>", language="ar", direction="rtl"),
        "3.eml": confirmation("r-uk", to="C <c@example.org>", language="uk"),
        # someone else's confirmation, and another kind of mail to one of ours
        "4.eml": confirmation("r-other", to="D <d@example.org>", language="de"),
        "5.eml": confirmation(
            "r-de", to="A <a@example.org>", language="de", kind=NotificationKind.REMINDER
        ),
    }
    for name, raw in mails.items():
        (tmp_path / name).write_bytes(raw)

    census = mail_census(expected, confirmation_mails(tmp_path, expected))
    assert census.registrations == {"ar": 1, "de": 1, "uk": 1}
    assert census.confirmations == {"ar": 1, "de": 1, "uk": 1}
    assert census.right_to_left == {"ar": 1, "de": 0, "uk": 0}
    assert census.missing == 0
    assert census.problems == census.direction_problems == census.address_problems == []
    checks = mail_checks(census, folder=tmp_path)
    assert [c.outcome for c in checks] == ["passed", "passed", "passed"]


def test_a_missing_twice_sent_wrong_language_or_left_to_right_arabic_mail_fails() -> None:
    expected = {
        "r1": ExpectedMail("a@example.org", "ar"),
        "r2": ExpectedMail("b@example.org", "tr"),
        "r3": ExpectedMail("c@example.org", "en"),
    }
    seen = [
        read_mail(confirmation("r1", to="a@example.org", language="ar")),
        read_mail(confirmation("r2", to="b@example.org", language="de")),
        read_mail(confirmation("r2", to="b@example.org", language="de")),
    ]
    census = mail_census(expected, seen)
    assert census.missing == 1
    assert len(census.problems) == 4  # r2 twice, r2 in de (twice), r3 none
    assert census.direction_problems == ["r1: ar left to right"]
    checks = {c.name: c.outcome for c in mail_checks(census, folder=Path("."))}
    assert checks["confirmation mails per language"] == "failed"
    assert checks["Arabic mails right to left"] == "failed"


def test_a_to_header_that_loses_the_address_is_found() -> None:
    # formataddr pre-encodes the name; refolding it then turns "(…)" into a comment that
    # swallows the address (what notification's mails did for "… (Landkreis Göttingen)")
    name = "Demo-Person 1 (Landkreis Göttingen)"
    address = "demo-03159-1@example.org"
    broken = email.message_from_bytes(
        confirmation("r1", to=formataddr((name, address)), language="de"),
        policy=email.policy.default,
    ).as_bytes(policy=email.policy.SMTP)
    sound = confirmation("r1", to=str(Address(display_name=name, addr_spec=address)), language="de")
    expected = {"r1": ExpectedMail(address, "de")}

    assert mail_census(expected, [read_mail(sound)]).address_problems == []
    assert mail_census(expected, [read_mail(broken)]).address_problems != []


def test_without_the_mail_folder_the_mail_checks_are_skipped_not_failed(tmp_path: Path) -> None:
    endpoints = Endpoints(
        registration_url="http://r",
        admin_key="k",
        kafka_bootstrap="k:9092",
        assessment_url="http://a",
    )
    assert mail_folder(endpoints) is None
    assert mail_folder(replace(endpoints, mail_dir=str(tmp_path / "gone"))) is None
    assert mail_folder(replace(endpoints, mail_dir=str(tmp_path))) == tmp_path
    checks = mail_checks(None, folder=None)
    assert {c.outcome for c in checks} == {"skipped"}
    assert "not started by wok" in checks[0].detail

    totals = played_metrics([])
    result = DemoResult(
        played=[],
        baseline=dict.fromkeys(totals, 0),
        played_totals=totals,
        expected=dict(totals),
        observed=dict(totals),
        seconds=1.0,
        agreed=True,
        checks=checks,
    )
    assert result.passed
    result.checks.append(Check("benchmark ranks", "failed", "A field 1: rank 2"))
    assert not result.passed and [c.name for c in result.failed] == ["benchmark ranks"]


def test_the_html_report_shows_the_assessment_checks_and_mails(tmp_path: Path) -> None:
    catalogue = load_catalogues().current
    answers = answer_profile("07312000", catalogue).final
    result_doc = served_result(catalogue, answers)
    played = [
        Played(
            ags="07312000",
            name="Kaiserslautern",
            onboarded=True,
            dialogue_events=1,
            confirmed=2,
            assessment=AssessmentPlayed(
                self_check_id="07312000-1",
                catalogue_version=catalogue.version,
                answers=answers,
                result=result_doc,
            ),
        ),
        Played(ags="05911000", name="Bochum", assessment_error="StepFailed: key not learnt"),
    ]
    totals = played_metrics(played)
    census = mail_census(
        {"r1": ExpectedMail("a@example.org", "ar")},
        [read_mail(confirmation("r1", to="a@example.org", language="ar", direction="rtl"))],
    )
    result = DemoResult(
        played=played,
        baseline=dict.fromkeys(totals, 0),
        played_totals=totals,
        expected=dict(totals),
        observed=dict(totals),
        seconds=1.5,
        agreed=True,
        checks=[Check("benchmark ranks", "failed", "rank 2, played 1")],
        mails=census,
    )
    page = write_html_report(result, tmp_path / "report.html").read_text()
    weakest = weakest_field(result_doc)
    assert weakest is not None
    assert f"<td>{result_doc['overall']}</td>" in page
    assert html.escape(field_label(weakest)) in page
    assert "StepFailed: key not learnt" in page
    assert '<td class="failed">failed</td>' in page and "1 check(s) FAILED" in page
    assert "<td>ar</td><td>1</td><td>1</td><td>1</td>" in page
