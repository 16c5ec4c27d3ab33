"""`wok demo`: play a program with the model municipalities and check its outcome.

It onboards every municipality, schedules its dialogue events, registers residents in five
languages, cancels a confirmed place in every full event through its signed link (the first
on the waitlist is promoted), moves one event by a week and erases one participant, runs
each municipality's self-check (two sittings), workshop and measures, then
checks what came out: the program snapshot on `exchange.aggregates.v1` equals what was
played (plus whatever the stack held before); the self-check results equal the scores the
assessment domain computes from the played answers; every result is published as
`AssessmentScored`; the benchmark ranks agree with the played scores; every registration got
one confirmation mail in its language (Arabic right to left). It prints a summary and writes
an HTML report.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import html
import json
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Literal

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from wok_assessment.domain import FIELDS_OF_ACTION
from wok_assessment.domain.catalogue import Catalogue, parse_catalogue
from wok_assessment.domain.scoring import assess
from wok_cli.demo_municipal import STEPS as MUNICIPAL_STEPS
from wok_cli.demo_municipal import play_municipal_operations
from wok_cli.demo_notification import set_contact_offices, wait_for_staff_mails
from wok_cli.demo_reporting import reporting_checks
from wok_contracts import ContractError, decode_envelope
from wok_contracts.events.assessment import AssessmentLevel, AssessmentScored, StakeholderGroup
from wok_contracts.events.notification import NotificationKind, NotificationSent
from wok_contracts.events.registration import ParticipantPromoted
from wok_contracts.topics import (
    ASSESSMENT_EVENTS,
    EXCHANGE_AGGREGATES,
    NOTIFICATION_EVENTS,
    REGISTRATION_EVENTS,
)

SECTORS = (
    "administration",
    "politics",
    "civil_society",
    "business",
    "migrant_advisory_council",
    "youth_parliament",
    "resident",
)

# Real model-municipality candidates with their official keys (AGS; districts with 5 digits).
MUNICIPALITIES: tuple[tuple[str, str, str], ...] = (
    ("07312000", "Kaiserslautern", "city"),
    ("05911000", "Bochum", "city"),
    ("09162000", "München", "city"),
    ("11000000", "Berlin", "city"),
    ("02000000", "Hamburg", "city"),
    ("05315000", "Köln", "city"),
    ("06412000", "Frankfurt am Main", "city"),
    ("08111000", "Stuttgart", "city"),
    ("14713000", "Leipzig", "city"),
    ("14612000", "Dresden", "city"),
    ("03241001", "Hannover", "city"),
    ("09564000", "Nürnberg", "city"),
    ("04011000", "Bremen", "city"),
    ("07315000", "Mainz", "city"),
    ("01002000", "Kiel", "city"),
    ("10041100", "Saarbrücken", "city"),
    ("16051000", "Erfurt", "city"),
    ("15003000", "Magdeburg", "city"),
    ("12054000", "Potsdam", "city"),
    ("13003000", "Rostock", "city"),
    ("06438", "Kreis Offenbach", "district"),
    ("03159", "Landkreis Göttingen", "district"),
    ("08311000", "Freiburg im Breisgau", "city"),
    ("08222000", "Mannheim", "city"),
    ("06414000", "Wiesbaden", "city"),
    ("05113000", "Essen", "city"),
    ("05913000", "Dortmund", "city"),
    ("13004000", "Schwerin", "city"),
)

METRICS = (
    "municipalities",
    "dialogue_events",
    "registrations_total",
    "registrations_confirmed",
    "registrations_waitlisted",
    "registrations_cancelled",
    "confirmations_sent",
)

# Large enough in any demo (>= 6 people per municipality) never to be withheld.
ALWAYS_PUBLISHED = (
    "municipalities",
    "dialogue_events",
    "registrations_total",
    "confirmations_sent",
)


# Preferred languages of the demo's residents, in turn (notification has templates for each).
LANGUAGES = ("de", "en", "tr", "ar", "uk")
RIGHT_TO_LEFT = frozenset({"ar"})

# Who speaks at each municipality's workshop: (group, how they see the fields against the
# self-check, in points). Civil society and the migrant advisory council see it more critically.
WORKSHOP_VOICES: tuple[tuple[StakeholderGroup, int], ...] = (
    # three voices each: their means and gaps show (WOK_WORKSHOP_MIN_GROUP_SIZE = 3); the
    # groups of one show "too few ratings"
    (StakeholderGroup.ADMINISTRATION, 6),
    (StakeholderGroup.ADMINISTRATION, 2),
    (StakeholderGroup.ADMINISTRATION, 4),
    (StakeholderGroup.CIVIL_SOCIETY, -14),
    (StakeholderGroup.CIVIL_SOCIETY, -8),
    (StakeholderGroup.CIVIL_SOCIETY, -11),
    (StakeholderGroup.MIGRANT_ADVISORY_COUNCIL, -20),
    (StakeholderGroup.YOUTH_PARLIAMENT, -10),
)

FIELD_NAMES: dict[int, str] = {f.number: f.name_de for f in FIELDS_OF_ACTION}

CheckOutcome = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class Check:
    """One judged outcome of the demo beyond the program aggregate."""

    name: str
    outcome: CheckOutcome
    detail: str


@dataclass
class AssessmentPlayed:
    """One municipality's self-check, workshop and measures, and what the service answered."""

    self_check_id: str
    catalogue_version: str
    answers: dict[str, str]
    result: dict[str, Any]
    perspectives: int = 0
    measures: dict[str, str] = field(default_factory=dict)
    """Status by measure id, as played."""
    measure_fields: dict[str, int] = field(default_factory=dict)
    """Field number by measure id, as played."""
    scoring_problems: list[str] = field(default_factory=list)
    """Where the answers held or the scores differ from what was played (empty: all agree)."""
    workshop_problems: list[str] = field(default_factory=list)
    """Where the perspectives or measures listed differ from what was played."""

    @property
    def overall(self) -> float | None:
        overall: float | None = self.result.get("overall")
        return overall

    @property
    def scores(self) -> dict[int, float | None]:
        return {f["field"]: f["score"] for f in self.result.get("fields", [])}

    @property
    def sufficient_scores(self) -> dict[int, float]:
        """The scores of the fields with sufficient data (the ones the benchmark ranks)."""
        return {
            f["field"]: f["score"]
            for f in self.result.get("fields", [])
            if f["level"] != AssessmentLevel.INSUFFICIENT_DATA and f["score"] is not None
        }

    @property
    def weakest(self) -> tuple[int, float] | None:
        return weakest_field(self.result)

    @property
    def strongest(self) -> tuple[int, float] | None:
        return strongest_field(self.result)


@dataclass
class Played:
    """What one municipality did in the demo."""

    ags: str
    name: str
    onboarded: bool = False
    dialogue_event_id: str = ""
    dialogue_events: int = 0
    confirmed: int = 0
    waitlisted: int = 0
    registrations: dict[str, ExpectedMail] = field(default_factory=dict)
    """Address and preferred language by registration id."""
    statuses: dict[str, str] = field(default_factory=dict)
    """What each registration answered (`confirmed`, `waitlisted`), in the order registered."""
    cancelled: list[str] = field(default_factory=list)
    """Confirmed registrations the demo cancelled (through the cancel link, or by erasure)."""
    promoted: list[str] = field(default_factory=list)
    """Waitlisted registrations the rules promote to the places that came free."""
    rescheduled_revision: int | None = None
    """The event's revision after the demo moved it by a week (None: not rescheduled)."""
    erased: str = ""
    """The registration whose person the demo erased."""
    rule_problems: dict[str, list[str]] = field(default_factory=dict)
    """What the service answered against the rules, by step (`cancel`, `reschedule`,
    `erasure`)."""

    def problem(self, step: str, problem: str) -> None:
        self.rule_problems.setdefault(step, []).append(f"{self.ags}: {problem}")

    assessment: AssessmentPlayed | None = None
    assessment_error: str = ""


@dataclass(frozen=True)
class MailCensus:
    """The confirmation mails of the demo's registrations, counted per language."""

    registrations: dict[str, int]
    """Registrations by preferred language."""
    confirmations: dict[str, int]
    """Confirmation mails by the language they were written in."""
    right_to_left: dict[str, int]
    """Of those, the ones written right to left."""
    missing: int
    """Registrations without a confirmation mail (yet)."""
    problems: list[str]
    """Registrations without exactly one confirmation, or with one in another language."""
    direction_problems: list[str]
    address_problems: list[str]


@dataclass
class DemoResult:
    played: list[Played]
    baseline: dict[str, int | None]
    played_totals: dict[str, int]
    expected: dict[str, int | None]
    observed: dict[str, int | None]
    seconds: float
    agreed: bool
    suppressed: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    mails: MailCensus | None = None
    peers: dict[str, str] = field(default_factory=dict)
    """Per AGS, what the exchange service suggested (e.g. 'learns field 2 from Hannover')."""

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.outcome == "failed"]

    @property
    def passed(self) -> bool:
        """The aggregates agree and no check failed (a skipped check is not a failure)."""
        return self.agreed and not self.failed


def plan_registrations(index: int) -> int:
    """A varied but deterministic number of registrations per municipality (some waitlists)."""
    return 6 + (index * 7) % 11


def preferred_language(number: int) -> str:
    """The preferred language of the demo's `number`-th registration (0-based): in turn."""
    return LANGUAGES[number % len(LANGUAGES)]


@dataclass(frozen=True)
class Endpoints:
    registration_url: str
    admin_key: str
    kafka_bootstrap: str
    assessment_url: str
    topic_prefix: str = ""
    mail_dir: str | None = None
    """The stack's mail folder, when known (a stack wok started); None skips the mail check."""
    exclusive: bool = False
    """True on a fresh stack of the demo's own: nothing else is ranked in the benchmark."""
    service_key: str = ""
    """The stack's service key (for the contacts with the signed links); '' skips the rules."""
    exchange_url: str = ""
    """The exchange service ('' on a stack started before it existed: its part is skipped)."""


# -- the self-check profile ------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerProfile:
    """A municipality's answers, given in two sittings.

    The second sitting completes the first, revises a few of its answers and clears one
    given there (null); `final` is what the self-check holds after both.
    """

    first: dict[str, str | None]
    second: dict[str, str | None]
    final: dict[str, str]


def answer_profile(ags: str, catalogue: Catalogue) -> AnswerProfile:
    """A deterministic, varied self-check for `ags`: 60-100 % of the questions answered, some
    "don't know", each field at its own maturity (so fields differ and municipalities too)."""
    rng = random.Random(f"wok-demo:{ags}")
    scale = [step.value for step in catalogue.scale]  # ordered by points
    top = len(scale) - 1
    share = rng.uniform(0.6, 1.0)
    final: dict[str, str] = {}
    for field_of_action in catalogue.fields:
        maturity = rng.uniform(0.2, top - 0.2)
        questions = list(field_of_action.questions)
        count = max(1, round(share * len(questions)))
        for question in rng.sample(questions, count):
            if rng.random() < 0.1:
                final[question.id] = catalogue.dont_know.value
            else:
                final[question.id] = scale[min(top, max(0, round(rng.gauss(maturity, 0.8))))]
    order = [question_id for question_id in catalogue.question_ids() if question_id in final]
    half = len(order) // 2
    first: dict[str, str | None] = {q: final[q] for q in order[:half]}
    second: dict[str, str | None] = {q: final[q] for q in order[half:]}
    # Staff change their minds about two answers of the first sitting...
    for question_id in rng.sample(order[:half], min(2, half)):
        given = final[question_id]
        first[question_id] = (
            scale[(scale.index(given) + 1) % len(scale)] if given in scale else scale[0]
        )
        second[question_id] = given
    # ...and take back one they were unsure about.
    skipped = [q for q in catalogue.question_ids() if q not in final]
    if skipped:
        taken_back = rng.choice(skipped)
        first[taken_back] = catalogue.dont_know.value
        second[taken_back] = None
    return AnswerProfile(first=first, second=second, final=final)


def apply_answers(answers: Mapping[str, str], change: Mapping[str, str | None]) -> dict[str, str]:
    """What a PATCH of `change` leaves: values set, nulls cleared, the rest kept."""
    merged = dict(answers)
    for question_id, value in change.items():
        if value is None:
            merged.pop(question_id, None)
        else:
            merged[question_id] = value
    return merged


def parse_served_catalogue(document: Mapping[str, Any]) -> Catalogue:
    """The catalogue as `GET /v1/catalogue` serves it (with its listing fields left out)."""
    return parse_catalogue({k: v for k, v in document.items() if k not in ("current", "versions")})


def score_problems(
    result: Mapping[str, Any], *, catalogue: Catalogue, answers: Mapping[str, str]
) -> list[str]:
    """Where the service's result differs from the assessment domain's scoring of `answers`."""
    local = assess(catalogue, answers)
    problems = []
    served = {f["field"]: f for f in result.get("fields", [])}
    for computed in local.fields:
        got = served.get(computed.field)
        if got is None:
            problems.append(f"field {computed.field} missing from the result")
            continue
        for name, want in (
            ("score", computed.score),
            ("level", computed.level.value),
            ("coverage", computed.coverage),
            ("answered", computed.answered),
        ):
            if got.get(name) != want:
                problems.append(
                    f"field {computed.field} {name}: served {got.get(name)!r}, computed {want!r}"
                )
    if result.get("overall") != local.overall:
        problems.append(f"overall: served {result.get('overall')!r}, computed {local.overall!r}")
    if list(result.get("deficits", [])) != list(local.deficits):
        problems.append(
            f"deficits: served {result.get('deficits')}, computed {list(local.deficits)}"
        )
    if list(result.get("strengths", [])) != list(local.strengths):
        problems.append(
            f"strengths: served {result.get('strengths')}, computed {list(local.strengths)}"
        )
    return problems


def _ranked_fields(result: Mapping[str, Any]) -> list[tuple[int, float]]:
    """(field, score) of the fields with sufficient data, or of every scored field when none
    has sufficient data (so a thin self-check still points somewhere)."""
    fields = [f for f in result.get("fields", []) if f["score"] is not None]
    sufficient = [f for f in fields if f["level"] != AssessmentLevel.INSUFFICIENT_DATA]
    return [(f["field"], f["score"]) for f in (sufficient or fields)]


def weakest_field(result: Mapping[str, Any]) -> tuple[int, float] | None:
    """The lowest-scoring field (the lower number on a tie)."""
    ranked = _ranked_fields(result)
    return min(ranked, key=lambda item: (item[1], item[0])) if ranked else None


def strongest_field(result: Mapping[str, Any]) -> tuple[int, float] | None:
    """The highest-scoring field (the lower number on a tie)."""
    ranked = _ranked_fields(result)
    return min(ranked, key=lambda item: (-item[1], item[0])) if ranked else None


def workshop_ratings(
    ags: str, scores: Mapping[int, float | None]
) -> list[tuple[str, dict[int, int]]]:
    """Deterministic perspectives for the workshop: each voice rates every field near the
    self-check score, shifted by how its group sees things."""
    rng = random.Random(f"wok-demo-workshop:{ags}")
    voices = []
    for group, shift in WORKSHOP_VOICES:
        ratings = {}
        for number in range(1, 8):
            base = scores.get(number)
            seen = (50.0 if base is None else base) + shift + rng.uniform(-8, 8)
            ratings[number] = min(100, max(0, round(seen)))
        voices.append((group.value, ratings))
    return voices


def benchmark_problems(
    scores: Mapping[str, Mapping[int, float]],
    benchmarks: Mapping[str, Mapping[int, Mapping[str, Any]]],
    *,
    exclusive: bool,
) -> list[str]:
    """Whether the benchmark ranks agree with the played scores.

    `scores`: per AGS, the scores of its fields with sufficient data; `benchmarks`: per AGS
    and field, what `GET …/benchmark` answered. Rank = 1 + the municipalities strictly
    higher. When the demo's municipalities are all the stack holds (`exclusive`), that gives
    each rank exactly; on a shared stack others may rank too, so a municipality is ranked at
    least that low and below every played one with a higher score, equal to equal ones.
    """
    problems = []
    for ags, own in scores.items():
        for number in range(1, 8):
            entry = benchmarks.get(ags, {}).get(number)
            if entry is None:
                problems.append(f"{ags} field {number}: no benchmark")
                continue
            score = own.get(number)
            if entry.get("score") != score:
                problems.append(
                    f"{ags} field {number}: benchmark score {entry.get('score')!r}, "
                    f"played {score!r}"
                )
                continue
            if score is None:
                if entry.get("rank") is not None:
                    problems.append(f"{ags} field {number}: ranked without sufficient data")
                continue
            rank = entry.get("rank")
            higher = sum(1 for other in scores.values() if other.get(number, -1.0) > score)
            peers = sum(1 for other in scores.values() if number in other)
            if exclusive:
                if rank != 1 + higher or entry.get("participants") != peers:
                    problems.append(
                        f"{ags} field {number}: rank {rank} of {entry.get('participants')}, "
                        f"played {1 + higher} of {peers}"
                    )
                continue
            if rank is None or rank < 1 + higher or (entry.get("participants") or 0) < peers:
                problems.append(
                    f"{ags} field {number}: rank {rank} of {entry.get('participants')}, "
                    f"played at least {1 + higher} of at least {peers}"
                )
                continue
            for other_ags, other in scores.items():
                other_score = other.get(number)
                other_rank = benchmarks.get(other_ags, {}).get(number, {}).get("rank")
                if other_ags == ags or other_score is None or other_rank is None:
                    continue
                if (other_score > score and not other_rank < rank) or (
                    other_score == score and other_rank != rank
                ):
                    problems.append(
                        f"field {number}: {ags} ({score}) ranked {rank}, "
                        f"{other_ags} ({other_score}) ranked {other_rank}"
                    )
    return problems


def scored_event_problems(
    played: Mapping[str, Mapping[str, Any]], events: Mapping[str, AssessmentScored]
) -> list[str]:
    """Whether each played result (by self-check id) was published as `AssessmentScored`
    with the same scores, levels and overall index."""
    problems = []
    for self_check_id, result in played.items():
        event = events.get(self_check_id)
        if event is None:
            problems.append(f"{self_check_id}: no AssessmentScored on {ASSESSMENT_EVENTS}")
            continue
        published = {(f.field, f.score, f.level.value) for f in event.fields}
        served = {(f["field"], f["score"], f["level"]) for f in result.get("fields", [])}
        if published != served or event.overall != result.get("overall"):
            problems.append(f"{self_check_id}: AssessmentScored differs from the result")
    return problems


# -- mails ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedMail:
    """What the confirmation of one registration should be: to whom, in which language."""

    address: str
    language: str


@dataclass(frozen=True)
class SeenMail:
    delivery: str
    """Notification's delivery id as the Message-ID carries it (`<kind>.<registration id>`,
    deterministic, see notification's `message_id`)."""
    recipient: str
    """The address the To header parses to ('' when it does not parse)."""
    language: str
    right_to_left: bool
    calendar_uid: str = ""
    """The UID of the `.ics` invitation ('' without one)."""
    calendar_sequence: int | None = None
    """Its SEQUENCE (None without an invitation)."""


_HTML_RTL = re.compile(r"<html\b[^>]*\bdir=\"rtl\"", re.IGNORECASE)
_ICS_UID = re.compile(r"^UID:(.*)$", re.MULTILINE)
_ICS_SEQUENCE = re.compile(r"^SEQUENCE:(\d+)\s*$", re.MULTILINE)
_NOT_IN_MESSAGE_ID = re.compile(r"[^A-Za-z0-9._-]")


def mail_delivery(kind: str, registration_id: str, *, revision: int | None = None) -> str:
    """How the Message-ID of a registration's mail of `kind` names it (notification's
    delivery id: `<kind>:<registration id>[:<revision>]`)."""
    base = f"{kind}:{registration_id}"
    return _NOT_IN_MESSAGE_ID.sub(".", base if revision is None else f"{base}:{revision}")


def confirmation_delivery(registration_id: str) -> str:
    """How the Message-ID of a registration's confirmation names it."""
    return mail_delivery("confirmation", registration_id)


def _calendar(message: EmailMessage) -> tuple[str, int | None]:
    """UID and SEQUENCE of the mail's `text/calendar` part, if it has one."""
    for part in message.walk():
        if part.get_content_type() != "text/calendar":
            continue
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        text = text.replace("\r\n ", "").replace("\r\n", "\n")
        uid = _ICS_UID.search(text)
        sequence = _ICS_SEQUENCE.search(text)
        return (
            uid.group(1).strip() if uid else "",
            int(sequence.group(1)) if sequence else None,
        )
    return "", None


def _delivery(message_id: object) -> str:
    return str(message_id or "").strip().strip("<>").rpartition("@")[0]


def read_mail(raw: bytes) -> SeenMail:
    message = email.message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)
    addresses = [address for _, address in getaddresses([str(message.get("To", ""))])]
    body = message.get_body(preferencelist=("html",))
    page = body.get_content() if body is not None else ""
    uid, sequence = _calendar(message)
    return SeenMail(
        delivery=_delivery(message.get("Message-ID")),
        recipient=addresses[0].lower() if len(addresses) == 1 and "@" in addresses[0] else "",
        language=str(message.get("Content-Language", "")).strip().lower(),
        right_to_left=bool(_HTML_RTL.search(page)),
        calendar_uid=uid,
        calendar_sequence=sequence,
    )


def confirmation_mails(mail_dir: Path, registration_ids: Iterable[str]) -> list[SeenMail]:
    """The confirmation mails of `registration_ids` in the folder (of the other mails only
    the headers are read)."""
    return mails_of(mail_dir, {confirmation_delivery(rid) for rid in registration_ids})


def mails_of(mail_dir: Path, wanted: set[str]) -> list[SeenMail]:
    """The mails in the folder whose Message-ID names one of the `wanted` deliveries (of the
    other mails only the headers are read)."""
    parser = BytesHeaderParser(policy=default_policy)
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        raw = path.read_bytes()
        if _delivery(parser.parsebytes(raw).get("Message-ID")) in wanted:
            found.append(read_mail(raw))
    return found


def mail_census(expected: Mapping[str, ExpectedMail], mails: Iterable[SeenMail]) -> MailCensus:
    """Judge the mails against the registrations (`expected`, by registration id): each gets
    exactly one confirmation, in its language, addressed to it, right to left exactly in
    Arabic."""
    by_delivery: dict[str, list[SeenMail]] = {}
    for mail in mails:
        by_delivery.setdefault(mail.delivery, []).append(mail)
    registrations = Counter(wanted.language for wanted in expected.values())
    confirmations: Counter[str] = Counter()
    right_to_left: Counter[str] = Counter()
    problems: list[str] = []
    direction_problems: list[str] = []
    address_problems: list[str] = []
    missing = 0
    for registration_id, wanted in sorted(expected.items()):
        got = by_delivery.get(confirmation_delivery(registration_id), [])
        missing += not got
        if len(got) != 1:
            problems.append(f"{len(got)} confirmation mails for {registration_id}")
        for mail in got:
            confirmations[mail.language] += 1
            right_to_left[mail.language] += mail.right_to_left
            if mail.language != wanted.language:
                problems.append(
                    f"{registration_id}: in {mail.language or '?'}, preferred {wanted.language}"
                )
            if mail.right_to_left != (mail.language in RIGHT_TO_LEFT):
                direction = "right to left" if mail.right_to_left else "left to right"
                direction_problems.append(f"{registration_id}: {mail.language} {direction}")
            if mail.recipient != wanted.address.lower():
                address_problems.append(
                    f"{registration_id}: the To header does not name its address"
                )
    return MailCensus(
        registrations=dict(sorted(registrations.items())),
        confirmations=dict(sorted(confirmations.items())),
        right_to_left=dict(sorted(right_to_left.items())),
        missing=missing,
        problems=problems,
        direction_problems=direction_problems,
        address_problems=address_problems,
    )


def mail_folder(endpoints: Endpoints) -> Path | None:
    """The stack's mail folder if the demo can read it."""
    if not endpoints.mail_dir:
        return None
    folder = Path(endpoints.mail_dir)
    return folder if folder.is_dir() else None


# -- Kafka ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _from_beginning(
    endpoints: Endpoints, topic: str
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition], dict[TopicPartition, int]]]:
    """A plain consumer (no group) on every partition of `topic`, at the beginning, with the
    end offsets at the start."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=endpoints.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        assignment = [TopicPartition(topic, partition) for partition in partitions]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        yield consumer, assignment, await consumer.end_offsets(assignment)
    finally:
        await consumer.stop()


async def latest_program_snapshot(
    endpoints: Endpoints, *, timeout_s: float = 5.0
) -> dict[str, Any] | None:
    """The newest program snapshot on the compacted aggregates topic (None if there is none)."""
    topic = f"{endpoints.topic_prefix}{EXCHANGE_AGGREGATES}"
    async with _from_beginning(endpoints, topic) as (consumer, assignment, ends):
        newest: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in assignment}
            if all(positions[tp] >= ends[tp] for tp in assignment):
                break
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    if record.key != b"program":
                        continue
                    snapshot = decode_envelope(record.value).data.model_dump(mode="json")
                    if newest is None or snapshot["sequence"] >= newest["sequence"]:
                        newest = snapshot
        return newest


async def scored_events(
    endpoints: Endpoints,
    self_check_ids: set[str],
    *,
    timeout_s: float,
    progress: Callable[[int], None] = lambda found: None,
) -> dict[str, AssessmentScored]:
    """The `AssessmentScored` of each of `self_check_ids` on assessment.events.v1, read from
    the beginning until all are found or `timeout_s` passed (the outbox relay publishes them
    shortly after the submission)."""
    topic = f"{endpoints.topic_prefix}{ASSESSMENT_EVENTS}"
    found: dict[str, AssessmentScored] = {}
    async with _from_beginning(endpoints, topic) as (consumer, _, _):
        deadline = time.monotonic() + timeout_s
        while len(found) < len(self_check_ids) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        data = decode_envelope(record.value).data
                    except ContractError:
                        continue  # not ours to judge: the consumers dead-letter it
                    if isinstance(data, AssessmentScored) and data.self_check_id in self_check_ids:
                        found[data.self_check_id] = data
            progress(len(found))
    return found


async def promoted_events(
    endpoints: Endpoints,
    expected: Mapping[str, set[str]],
    *,
    timeout_s: float,
    progress: Callable[[int], None] = lambda found: None,
) -> dict[str, set[str]]:
    """By dialogue event id (of `expected`'s), the registrations `ParticipantPromoted` names on
    registration.events.v1, read from the beginning until every expected one is found or
    `timeout_s` passed."""
    topic = f"{endpoints.topic_prefix}{REGISTRATION_EVENTS}"
    found: dict[str, set[str]] = {event_id: set() for event_id in expected}

    def complete() -> bool:
        return all(wanted <= found[event_id] for event_id, wanted in expected.items())

    async with _from_beginning(endpoints, topic) as (consumer, _, _):
        deadline = time.monotonic() + timeout_s
        while not complete() and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        data = decode_envelope(record.value).data
                    except ContractError:
                        continue
                    if isinstance(data, ParticipantPromoted) and data.dialogue_event_id in found:
                        found[data.dialogue_event_id].add(data.registration_id)
            progress(sum(len(ids) for ids in found.values()))
    return found


async def confirmation_sent(
    endpoints: Endpoints, registration_id: str, *, timeout_s: float
) -> bool:
    """Whether notification announced the confirmation of `registration_id` (`NotificationSent`
    on notification.events.v1) within `timeout_s`."""
    topic = f"{endpoints.topic_prefix}{NOTIFICATION_EVENTS}"
    async with _from_beginning(endpoints, topic) as (consumer, _, _):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        data = decode_envelope(record.value).data
                    except ContractError:
                        continue
                    if (
                        isinstance(data, NotificationSent)
                        and data.registration_id == registration_id
                        and data.kind is NotificationKind.CONFIRMATION
                    ):
                        return True
    return False


class StepFailed(Exception):
    """A step of the demo got no usable answer; the municipality's checks then fail."""


STEP_ASSESS = "self-checks, workshops, measures"
STEP_SCORED = "reading AssessmentScored"
STEP_MAILS = "counting confirmation mails"
STEP_RULES = "cancelling, rescheduling, erasing"
STEP_PROMOTED = "reading ParticipantPromoted"
STEP_RULE_MAILS = "counting promotion and rescheduled mails"


class DemoPlayer:
    def __init__(
        self,
        endpoints: Endpoints,
        *,
        municipalities: int = 22,
        progress: Callable[[str, int, int], None] = lambda step, done, total: None,
    ) -> None:
        self._endpoints = endpoints
        self._municipalities = MUNICIPALITIES[:municipalities]
        self._progress = progress
        self._keys: dict[str, str] = {}
        self._catalogues: dict[str, Catalogue] = {}

    @property
    def keys(self) -> dict[str, str]:
        """The key each onboarded municipality was given, by AGS."""
        return dict(self._keys)

    async def play(self, client: httpx.AsyncClient) -> list[Played]:
        admin = {"Authorization": f"Bearer {self._endpoints.admin_key}"}
        played: list[Played] = []
        total = len(self._municipalities)
        self._progress("onboarding and scheduling", 0, total)
        for index, (ags, name, kind) in enumerate(self._municipalities):
            result = Played(ags=ags, name=name)
            response = await client.post(
                "/v1/municipalities", json={"ags": ags, "name": name, "kind": kind}, headers=admin
            )
            if response.status_code == 409:
                response = await client.post(f"/v1/municipalities/{ags}/keys", headers=admin)
            else:
                result.onboarded = True
            response.raise_for_status()
            key = response.json()["api_key"]
            self._keys[ags] = key
            result.dialogue_event_id = await self._schedule(
                client, ags=ags, name=name, key=key, index=index
            )
            result.dialogue_events = 1
            played.append(result)
            self._progress("onboarding and scheduling", index + 1, total)
        registrations = sum(plan_registrations(i) for i in range(total))
        done = 0
        for index, result in enumerate(played):
            event_id = result.dialogue_event_id
            for number in range(plan_registrations(index)):
                address = f"demo-{result.ags}-{event_id[:8]}-{number + 1}@example.org"
                language = preferred_language(done)
                response = await client.post(
                    f"/v1/dialogue-events/{event_id}/registrations",
                    json={
                        "name": f"Demo-Person {number + 1} ({result.name})",
                        "email": address,
                        "sector": SECTORS[(index + number) % len(SECTORS)],
                        "language": language,
                        "consent": True,
                    },
                )
                response.raise_for_status()
                registration = response.json()
                result.registrations[registration["registration_id"]] = ExpectedMail(
                    address=address, language=language
                )
                result.statuses[registration["registration_id"]] = registration["status"]
                if registration["status"] == "confirmed":
                    result.confirmed += 1
                else:
                    result.waitlisted += 1
                done += 1
                self._progress("registering residents", done, registrations)
        return played

    async def play_rules(self, client: httpx.AsyncClient, played: list[Played]) -> None:
        """Cancel a confirmed place in every full event (the first on the waitlist gets it),
        then, in one municipality, move its event by a week and erase one person (after
        `play`)."""
        self._progress(STEP_RULES, 0, len(played) + 1)
        for index, result in enumerate(played):
            plan = cancellation_plan(result.statuses)
            if plan is not None:
                try:
                    await self._cancel(client, result, *plan)
                except httpx.HTTPError as error:
                    result.problem("cancel", f"{type(error).__name__}: {error}")
            self._progress(STEP_RULES, index + 1, len(played) + 1)
        chosen = rules_municipality(played)
        if chosen is not None:
            try:
                await self._reschedule(client, chosen)
            except (httpx.HTTPError, KeyError, ValueError) as error:
                chosen.problem("reschedule", f"{type(error).__name__}: {error}")
            try:
                await self._erase(client, chosen)
            except httpx.HTTPError as error:
                chosen.problem("erasure", f"{type(error).__name__}: {error}")
        self._progress(STEP_RULES, len(played) + 1, len(played) + 1)

    def _service(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._endpoints.service_key}"}

    async def _contact(self, client: httpx.AsyncClient, registration_id: str) -> httpx.Response:
        return await client.get(
            f"/internal/v1/registrations/{registration_id}/contact", headers=self._service()
        )

    async def _cancel(
        self, client: httpx.AsyncClient, result: Played, cancel: str, first_waiting: str
    ) -> None:
        """Cancel through the signed link, as the page's button does (a POST to it)."""
        response = await self._contact(client, cancel)
        response.raise_for_status()
        response = await client.post(response.json()["cancel_url"])
        response.raise_for_status()
        if response.json().get("status") != "cancelled":
            result.problem("cancel", f"cancelling {cancel} answered {response.json()}")
            return
        result.cancelled.append(cancel)
        result.promoted.append(first_waiting)
        response = await client.get(f"/v1/dialogue-events/{result.dialogue_event_id}")
        response.raise_for_status()
        if response.json()["places_left"] != 0:
            result.problem(
                "cancel",
                f"{response.json()['places_left']} places left after the cancellation; "
                "the place should have gone to the waitlist",
            )

    async def _reschedule(self, client: httpx.AsyncClient, result: Played) -> None:
        path = f"/v1/dialogue-events/{result.dialogue_event_id}"
        response = await client.get(path)
        response.raise_for_status()
        before = response.json()
        starts = datetime.fromisoformat(before["starts_at"]) + timedelta(days=7)
        ends = datetime.fromisoformat(before["ends_at"]) + timedelta(days=7)
        response = await client.post(
            f"/v1/municipalities/{result.ags}/dialogue-events/{result.dialogue_event_id}"
            "/reschedule",
            json={"starts_at": starts.isoformat(), "ends_at": ends.isoformat()},
            headers=self._auth(result.ags),
        )
        response.raise_for_status()
        after = response.json()
        result.rescheduled_revision = int(after["revision"])
        if datetime.fromisoformat(after["starts_at"]) != starts:
            result.problem("reschedule", f"rescheduled to {after['starts_at']}, asked {starts}")
        if after["revision"] <= before["revision"]:
            result.problem("reschedule", f"revision {after['revision']} after {before['revision']}")

    async def _erase(self, client: httpx.AsyncClient, result: Played) -> None:
        target = erasure_target(result)
        if target is None:
            result.problem("erasure", "nobody to erase without changing the waitlist")
            return
        # Erased before notification sent the confirmation, the person would get none (their
        # address is gone): erase, as a person would, after the confirmation arrived.
        if not await confirmation_sent(self._endpoints, target, timeout_s=60):
            result.problem("erasure", f"no confirmation was sent to {target} within 60 s")
            return
        response = await self._contact(client, target)
        response.raise_for_status()
        response = await client.post(response.json()["erasure_url"])
        response.raise_for_status()
        if response.json().get("status") != "erased":
            result.problem("erasure", f"erasing {target} answered {response.json()}")
            return
        result.erased = target
        if target not in result.cancelled:
            result.cancelled.append(target)  # erasure cancels an active registration
        response = await self._contact(client, target)
        if response.status_code != 404:
            result.problem(
                "erasure", f"the contact of erased {target} answers {response.status_code}"
            )

    async def assess(
        self, client: httpx.AsyncClient, played: list[Played], *, deadline: float
    ) -> None:
        """Each municipality's self-check, workshop and measures (after `play`)."""
        self._progress(STEP_ASSESS, 0, len(played))
        for index, result in enumerate(played):
            try:
                result.assessment = await self._assess(client, result.ags, deadline=deadline)
            except (httpx.HTTPError, StepFailed, KeyError, ValueError) as error:
                result.assessment_error = f"{type(error).__name__}: {error}"
            self._progress(STEP_ASSESS, index + 1, len(played))

    async def benchmarks(
        self, client: httpx.AsyncClient, played: list[Played]
    ) -> dict[str, dict[int, dict[str, Any]]]:
        """Each assessed municipality's benchmark, read after every self-check is in."""
        found: dict[str, dict[int, dict[str, Any]]] = {}
        for result in played:
            if result.assessment is None:
                continue
            response = await client.get(
                f"/v1/municipalities/{result.ags}/benchmark", headers=self._auth(result.ags)
            )
            response.raise_for_status()
            found[result.ags] = {entry["field"]: entry for entry in response.json()["fields"]}
        return found

    def _auth(self, ags: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._keys[ags]}"}

    async def _assess(
        self, client: httpx.AsyncClient, ags: str, *, deadline: float
    ) -> AssessmentPlayed:
        auth = self._auth(ags)
        draft = await self._start_self_check(client, ags, deadline=deadline)
        self_check_id = draft["id"]
        catalogue = await self._catalogue(client, draft["catalogue_version"])
        profile = answer_profile(ags, catalogue)
        # A draft left open by an interrupted run is shared, not restarted: clear its answers.
        stale = {question_id: None for question_id in draft["answers"]}
        answers_path = f"/v1/self-checks/{self_check_id}/answers"
        for sitting in ({**stale, **profile.first}, profile.second):
            response = await client.patch(answers_path, json={"answers": sitting}, headers=auth)
            response.raise_for_status()
        held = response.json()["answers"]
        response = await client.post(f"/v1/self-checks/{self_check_id}/submit", headers=auth)
        response.raise_for_status()
        response = await client.get(f"/v1/self-checks/{self_check_id}/result", headers=auth)
        response.raise_for_status()
        played = AssessmentPlayed(
            self_check_id=self_check_id,
            catalogue_version=catalogue.version,
            answers=profile.final,
            result=response.json(),
        )
        if held != profile.final:
            played.scoring_problems.append(
                f"{ags}: the self-check holds other answers than were played"
            )
        played.scoring_problems.extend(
            f"{ags}: {problem}"
            for problem in score_problems(played.result, catalogue=catalogue, answers=profile.final)
        )
        await self._workshop(client, ags, played)
        await self._measures(client, ags, played)
        return played

    async def _start_self_check(
        self, client: httpx.AsyncClient, ags: str, *, deadline: float
    ) -> dict[str, Any]:
        """Start (or join) the draft, once assessment has learnt the municipality's key from
        registration's MunicipalityKeyIssued (until then the key is unknown there: 401)."""
        while True:
            response = await client.post(
                f"/v1/municipalities/{ags}/self-checks", headers=self._auth(ags)
            )
            if response.status_code != 401:
                response.raise_for_status()
                draft: dict[str, Any] = response.json()
                return draft
            if time.monotonic() > deadline:
                raise StepFailed("assessment did not learn the municipality's key in time")
            await asyncio.sleep(0.2)

    async def _catalogue(self, client: httpx.AsyncClient, version: str) -> Catalogue:
        if version not in self._catalogues:
            response = await client.get("/v1/catalogue", params={"version": version})
            response.raise_for_status()
            self._catalogues[version] = parse_served_catalogue(response.json())
        return self._catalogues[version]

    async def _workshop(
        self, client: httpx.AsyncClient, ags: str, played: AssessmentPlayed
    ) -> None:
        auth = self._auth(ags)
        workshop = f"Demo-Workshop {played.self_check_id}"
        for group, ratings in workshop_ratings(ags, played.scores):
            response = await client.post(
                f"/v1/municipalities/{ags}/perspectives",
                json={"workshop": workshop, "stakeholder_group": group, "ratings": ratings},
                headers=auth,
            )
            response.raise_for_status()
            played.perspectives += 1
        response = await client.get(
            f"/v1/municipalities/{ags}/perspectives", params={"workshop": workshop}, headers=auth
        )
        response.raise_for_status()
        played.workshop_problems.extend(
            f"{ags}: {problem}"
            for problem in perspective_problems(
                response.json(), self_check_id=played.self_check_id, voices=WORKSHOP_VOICES
            )
        )

    async def _measures(
        self, client: httpx.AsyncClient, ags: str, played: AssessmentPlayed
    ) -> None:
        """Two measures for the weakest field (one set running) and, where another field is
        the strongest, one to carry on what works there: the measure the exchange offers
        to peers weak in that field."""
        weakest = played.weakest
        if weakest is None:
            played.workshop_problems.append(f"{ags}: no scored field to plan measures for")
            return
        auth = self._auth(ags)
        number, _ = weakest
        planned = [
            (
                number,
                f"Bestandsaufnahme {FIELD_NAMES[number]} mit den Fachämtern",
                "Integrationsbüro",
                3,
            ),
            (
                number,
                f"Dialogformat {FIELD_NAMES[number]} mit dem Migrationsbeirat",
                "Stabsstelle Beteiligung",
                9,
            ),
        ]
        strongest = played.strongest
        if strongest is not None and strongest[0] != number:
            strong = strongest[0]
            planned.append(
                (strong, f"Bewährtes verstetigen: {FIELD_NAMES[strong]}", "Integrationsbüro", 12)
            )
        today = datetime.now(UTC).date()
        for field_number, title, owner, months in planned:
            response = await client.post(
                f"/v1/municipalities/{ags}/measures",
                json={
                    "field": field_number,
                    "title": title,
                    "owner_role": owner,
                    "starts_on": today.isoformat(),
                    "due_on": (today + timedelta(days=30 * months)).isoformat(),
                },
                headers=auth,
            )
            response.raise_for_status()
            played.measures[response.json()["id"]] = response.json()["status"]
            played.measure_fields[response.json()["id"]] = field_number
        first = next(iter(played.measures))
        response = await client.patch(
            f"/v1/municipalities/{ags}/measures/{first}", json={"status": "running"}, headers=auth
        )
        response.raise_for_status()
        played.measures[first] = "running"
        response = await client.get(f"/v1/municipalities/{ags}/measures", headers=auth)
        response.raise_for_status()
        played.workshop_problems.extend(
            f"{ags}: {problem}"
            for problem in measure_problems(
                played.measures, response.json(), fields=played.measure_fields
            )
        )

    async def _schedule(
        self, client: httpx.AsyncClient, *, ags: str, name: str, key: str, index: int
    ) -> str:
        starts = (datetime.now(UTC) + timedelta(days=14 + index)).replace(
            hour=17, minute=0, second=0, microsecond=0
        )
        online = index % 2 == 0
        body = {
            "title": f"Dialogveranstaltung {name}: Zusammenhalt vor Ort",
            "description": "Bürgerschaft, Verwaltung, Politik und Wirtschaft im Gespräch.",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2, minutes=30)).isoformat(),
            "format": "online" if online else "in_person",
            "online_link": "https://meet.example.org/weltoffen" if online else None,
            "place": None if online else f"Rathaus {name}, Ratssaal",
            "capacity": 10,
            "registration_deadline": (starts - timedelta(days=10)).isoformat(),
            "languages": ["de"],
        }
        response = await client.post(
            f"/v1/municipalities/{ags}/dialogue-events",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )
        response.raise_for_status()
        return str(response.json()["id"])


def perspective_problems(
    summary: Mapping[str, Any],
    *,
    self_check_id: str,
    voices: tuple[tuple[StakeholderGroup, int], ...],
) -> list[str]:
    """Whether the workshop's summary counts every voice, per field and group, against the
    self-check just submitted."""
    problems = []
    if summary.get("self_check_id") != self_check_id:
        problems.append(
            f"perspectives compared with {summary.get('self_check_id')}, not {self_check_id}"
        )
    per_group = Counter(group.value for group, _ in voices)
    for entry in summary.get("fields", []):
        groups = {g["stakeholder_group"]: g["participants"] for g in entry.get("groups", [])}
        if entry.get("participants") != len(voices) or groups != dict(per_group):
            problems.append(
                f"field {entry.get('field')}: {entry.get('participants')} perspectives "
                f"in {groups}, recorded {len(voices)} in {dict(per_group)}"
            )
    if len(summary.get("fields", [])) != 7:
        problems.append(f"perspectives on {len(summary.get('fields', []))} fields, rated 7")
    return problems


def measure_problems(
    played: Mapping[str, str], listed: Iterable[Mapping[str, Any]], *, fields: Mapping[str, int]
) -> list[str]:
    """Whether the municipality's measures hold the played ones, in their fields and status."""
    held = {m["id"]: m for m in listed}
    problems = []
    for measure_id, status in played.items():
        measure = held.get(measure_id)
        field = fields[measure_id]
        if measure is None:
            problems.append(f"measure {measure_id} is not listed")
        elif measure["status"] != status or measure["field"] != field:
            problems.append(
                f"measure {measure_id}: {measure['status']} in field {measure['field']}, "
                f"played {status} in field {field}"
            )
    return problems


def played_metrics(played: list[Played]) -> dict[str, int]:
    """What the program aggregate should count for `played`, as reporting counts it: a
    cancelled registration stays in the total (status cancelled), a promoted one moves from
    the waitlist to confirmed, an erased one keeps its status (only the person is gone), and
    each registration was sent its one confirmation."""
    confirmed = sum(p.confirmed for p in played)
    waitlisted = sum(p.waitlisted for p in played)
    cancelled = sum(len(p.cancelled) for p in played)
    promoted = sum(len(p.promoted) for p in played)
    return {
        "municipalities": sum(p.onboarded for p in played),
        "dialogue_events": sum(p.dialogue_events for p in played),
        "registrations_total": confirmed + waitlisted,
        "registrations_confirmed": confirmed - cancelled + promoted,
        "registrations_waitlisted": waitlisted - promoted,
        "registrations_cancelled": cancelled,
        "confirmations_sent": confirmed + waitlisted,
    }


# -- the registration rules: cancel, promote, reschedule, erase ---------------------------


def cancellation_plan(statuses: Mapping[str, str]) -> tuple[str, str] | None:
    """In a full event (someone waits): the confirmed registration to cancel (the first) and
    the waitlisted one the rules then promote (the first on the waitlist). None otherwise."""
    confirmed = [rid for rid, status in statuses.items() if status == "confirmed"]
    waiting = [rid for rid, status in statuses.items() if status == "waitlisted"]
    if not confirmed or not waiting:
        return None
    return confirmed[0], waiting[0]


def erasure_target(played: Played) -> str | None:
    """Whom the demo erases: the person who cancelled (the counts stay as they are), else,
    when nobody waits, the last registration (erasure cancels it, no one to promote)."""
    if played.cancelled:
        return played.cancelled[0]
    if played.statuses and "waitlisted" not in played.statuses.values():
        return list(played.statuses)[-1]
    return None


def rules_municipality(played: list[Played]) -> Played | None:
    """Where the demo reschedules and erases: the first municipality that cancelled, else the
    first one with registrations."""
    return next((p for p in played if p.cancelled), None) or next(
        (p for p in played if p.statuses), None
    )


def promotion_problems(played: list[Played], promotions: Mapping[str, set[str]]) -> list[str]:
    """Whether exactly the expected people were promoted: `promotions` holds, by dialogue
    event id, the registrations named by `ParticipantPromoted` on registration.events.v1."""
    problems = []
    for p in played:
        seen = promotions.get(p.dialogue_event_id, set())
        for rid in p.promoted:
            if rid not in seen:
                problems.append(f"{p.ags}: {rid}, first on the waitlist, was not promoted")
        for rid in sorted(seen - set(p.promoted)):
            problems.append(f"{p.ags}: {rid} was promoted, expected {p.promoted or 'nobody'}")
    return problems


def promotion_mail_problems(played: list[Played], mails: Iterable[SeenMail]) -> list[str]:
    """Each promoted person got exactly one promotion mail, addressed to them."""
    by_delivery: dict[str, list[SeenMail]] = {}
    for mail in mails:
        by_delivery.setdefault(mail.delivery, []).append(mail)
    problems = []
    for p in played:
        for rid in p.promoted:
            got = by_delivery.get(mail_delivery("promotion", rid), [])
            wanted = p.registrations[rid].address.lower()
            if len(got) != 1:
                problems.append(f"{p.ags}: {len(got)} promotion mails for {rid}")
            elif got[0].recipient != wanted:
                problems.append(f"{p.ags}: the promotion mail of {rid} is not addressed to it")
    return problems


def rescheduled_recipients(played: Played) -> list[str]:
    """Who is told of the new date: everyone still registered (confirmed or waitlisted)."""
    return [rid for rid in played.statuses if rid not in played.cancelled]


def reschedule_mail_problems(played: Played, mails: Iterable[SeenMail]) -> list[str]:
    """Each registration still active got one rescheduled mail, addressed to it, whose
    invitation updates the first one: the same UID as the confirmations', SEQUENCE the
    event's new revision."""
    revision = played.rescheduled_revision
    if revision is None:
        return [f"{played.ags}: not rescheduled"]
    by_delivery: dict[str, list[SeenMail]] = {}
    for mail in mails:
        by_delivery.setdefault(mail.delivery, []).append(mail)
    first_uids = {
        mail.calendar_uid
        for rid in played.statuses
        for mail in by_delivery.get(confirmation_delivery(rid), [])
        if mail.calendar_uid
    }
    problems = []
    if len(first_uids) != 1:
        problems.append(f"{played.ags}: the confirmations carry {len(first_uids)} calendar UIDs")
    for rid in rescheduled_recipients(played):
        got = by_delivery.get(mail_delivery("rescheduled", rid, revision=revision), [])
        if len(got) != 1:
            problems.append(f"{played.ags}: {len(got)} rescheduled mails for {rid}")
            continue
        mail = got[0]
        if mail.recipient != played.registrations[rid].address.lower():
            problems.append(f"{played.ags}: the rescheduled mail of {rid} is not addressed to it")
        if mail.calendar_uid not in first_uids or mail.calendar_sequence != revision:
            problems.append(
                f"{played.ags}: {rid}'s invitation UID {mail.calendar_uid!r} SEQUENCE "
                f"{mail.calendar_sequence}, expected the confirmation's UID, SEQUENCE {revision}"
            )
    return problems


def rule_mail_deliveries(played: list[Played]) -> set[str]:
    """The deliveries the rules should have caused: promotions and rescheduled mails (and the
    confirmations of the rescheduled events, for their calendar UID)."""
    wanted = {mail_delivery("promotion", rid) for p in played for rid in p.promoted}
    for p in played:
        if p.rescheduled_revision is not None:
            wanted |= {confirmation_delivery(rid) for rid in p.statuses}
            wanted |= {
                mail_delivery("rescheduled", rid, revision=p.rescheduled_revision)
                for rid in rescheduled_recipients(p)
            }
    return wanted


def rule_checks(
    played: list[Played],
    *,
    promotions: Mapping[str, set[str]] | None,
    mails: list[SeenMail] | None,
    folder: Path | None,
) -> list[Check]:
    """The verdicts on cancelling, promoting, rescheduling and erasing. `promotions` is None
    when the rules were not played (no service key); `mails` None without the mail folder."""
    names = (
        "cancellations and promotions",
        "rescheduling",
        "erasure",
        "promotion mails",
        "rescheduled mails",
    )
    if promotions is None:
        reason = "the stack's service key is unknown: the signed links cannot be fetched"
        return [Check(name, "skipped", reason) for name in names]
    full = [p for p in played if p.promoted]
    rescheduled = [p for p in played if p.rescheduled_revision is not None]
    erased = [p for p in played if p.erased]

    def problems(step: str) -> list[str]:
        return [problem for p in played for problem in p.rule_problems.get(step, [])]

    checks = []
    if full:
        checks.append(
            judged(
                names[0],
                problems("cancel") + promotion_problems(played, promotions),
                passed=f"{len(full)} full events: one confirmed place cancelled through its "
                "signed link went to the first on the waitlist; none left",
            )
        )
    else:
        checks.append(Check(names[0], "skipped", "no event is full: nobody waits for a place"))
    checks.append(
        judged(
            names[1],
            problems("reschedule") + ([] if rescheduled else ["not played"]),
            passed=", ".join(
                f"{p.name}'s event a week later (revision {p.rescheduled_revision})"
                for p in rescheduled
            ),
        )
    )
    checks.append(
        judged(
            names[2],
            problems("erasure") + ([] if erased else ["not played"]),
            passed=", ".join(
                f"{p.erased} erased through its signed link; its contact is gone (404)"
                for p in erased
            ),
        )
    )
    if mails is None:
        reason = "the stack's mail folder is unknown (a stack not started by wok): not counted"
        checks.extend(Check(name, "skipped", reason) for name in names[3:])
        return checks
    if full:
        checks.append(
            judged(
                names[3],
                promotion_mail_problems(played, mails),
                passed=f"one each for {sum(len(p.promoted) for p in full)} promoted people",
            )
        )
    else:
        checks.append(Check(names[3], "skipped", "no event is full: nobody promoted"))
    checks.append(
        judged(
            names[4],
            [x for p in rescheduled for x in reschedule_mail_problems(p, mails)]
            + ([] if rescheduled else ["not played"]),
            passed=", ".join(
                f"{len(rescheduled_recipients(p))} for {p.name}, the invitation's UID kept, "
                f"SEQUENCE {p.rescheduled_revision}"
                for p in rescheduled
            )
            + f" in {folder}",
        )
    )
    return checks


def expected_metrics(
    baseline: dict[str, int | None], played: dict[str, int]
) -> dict[str, int | None]:
    """Before plus played; unknown (None) where disclosure control withheld the value before."""
    return {
        name: None if baseline.get(name) is None else baseline[name] + played[name]  # type: ignore[operator]
        for name in METRICS
    }


def verdict(name: str, expected: int | None, observed: int | None) -> str:
    """'agrees', 'withheld' (disclosure control hides it, or hid it before the run) or 'differs'."""
    if expected is not None and observed == expected:
        return "agrees"
    if name not in ALWAYS_PUBLISHED and (observed is None or expected is None):
        return "withheld"
    return "differs"


def agrees(expected: Mapping[str, int | None], snapshot: Mapping[str, Any] | None) -> bool:
    """Every metric that can be compared equals what was played; the totals always can."""
    if snapshot is None:
        return False
    metrics = snapshot["metrics"]
    return all(
        verdict(name, value, metrics.get(name)) != "differs" for name, value in expected.items()
    )


def judged(name: str, problems: list[str], *, passed: str) -> Check:
    """A check from the problems found: passed when there are none, else the first few."""
    if not problems:
        return Check(name, "passed", passed)
    shown = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return Check(name, "failed", shown + more)


def assessment_checks(
    played: list[Played],
    *,
    benchmarks: Mapping[str, Mapping[int, Mapping[str, Any]]],
    events: Mapping[str, AssessmentScored],
    exclusive: bool,
) -> list[Check]:
    """The verdicts on the assessment part of the demo."""
    assessed = [p.assessment for p in played if p.assessment is not None]
    not_played = [f"{p.ags}: {p.assessment_error}" for p in played if p.assessment is None]
    results = {a.self_check_id: a.result for a in assessed}
    scores = {p.ags: p.assessment.sufficient_scores for p in played if p.assessment is not None}
    return [
        judged(
            "self-check scores",
            not_played + [problem for a in assessed for problem in a.scoring_problems],
            passed=f"{len(assessed)} results equal the assessment domain's scoring of the "
            "played answers (two sittings each)",
        ),
        judged(
            "AssessmentScored published",
            not_played + scored_event_problems(results, events),
            passed=f"{len(assessed)} on {ASSESSMENT_EVENTS}, with the same scores",
        ),
        judged(
            "benchmark ranks",
            not_played + benchmark_problems(scores, benchmarks, exclusive=exclusive),
            passed="every field's rank agrees with the played scores"
            + ("" if exclusive else " (others on this stack ranked too)"),
        ),
        judged(
            "workshops and measures",
            not_played + [problem for a in assessed for problem in a.workshop_problems],
            passed=f"{sum(a.perspectives for a in assessed)} perspectives of "
            f"{len({g for g, _ in WORKSHOP_VOICES})} stakeholder groups counted; "
            f"{sum(len(a.measures) for a in assessed)} measures for the weakest and strongest "
            "fields, one running each",
        ),
    ]


def mail_checks(census: MailCensus | None, *, folder: Path | None) -> list[Check]:
    if census is None:
        reason = "the stack's mail folder is unknown (a stack not started by wok): not counted"
        return [
            Check("confirmation mails per language", "skipped", reason),
            Check("Arabic mails right to left", "skipped", reason),
            Check("mails addressed to their registration", "skipped", reason),
        ]
    total = sum(census.registrations.values())
    per_language = ", ".join(f"{lang} {n}" for lang, n in census.confirmations.items())
    return [
        judged(
            "confirmation mails per language",
            census.problems,
            passed=f"one each for {total} registrations ({per_language}) in {folder}",
        ),
        judged(
            "Arabic mails right to left",
            census.direction_problems,
            passed=f'{census.right_to_left.get("ar", 0)} in Arabic with dir="rtl", '
            "the others left to right",
        ),
        judged(
            "mails addressed to their registration",
            census.address_problems,
            passed="each confirmation's To header names the registered address",
        ),
    ]


async def count_mails(
    folder: Path,
    expected: Mapping[str, ExpectedMail],
    *,
    timeout_s: float,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> MailCensus:
    """Count until every registration has its confirmation or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        census = mail_census(
            expected, await asyncio.to_thread(confirmation_mails, folder, expected)
        )
        progress(len(expected) - census.missing, len(expected))
        if census.missing == 0 or time.monotonic() > deadline:
            return census
        await asyncio.sleep(0.5)


async def wait_for_mails(
    folder: Path,
    deliveries: set[str],
    *,
    timeout_s: float,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> list[SeenMail]:
    """The mails of `deliveries`, read until each is there or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        mails = await asyncio.to_thread(mails_of, folder, deliveries)
        arrived = {mail.delivery for mail in mails} & deliveries
        progress(len(arrived), len(deliveries))
        if len(arrived) == len(deliveries) or time.monotonic() > deadline:
            return mails
        await asyncio.sleep(0.5)


async def run_demo(
    endpoints: Endpoints,
    *,
    municipalities: int = 22,
    timeout_s: float = 180.0,
    progress: Callable[[str, int, int], None] = lambda step, done, total: None,
) -> DemoResult:
    started = time.monotonic()
    started_wall = time.time()
    before = await latest_program_snapshot(endpoints)
    before_metrics = (before or {}).get("metrics", {})
    baseline: dict[str, int | None] = {
        name: before_metrics.get(name, 0) if before is not None else 0 for name in METRICS
    }
    player = DemoPlayer(endpoints, municipalities=municipalities, progress=progress)
    async with httpx.AsyncClient(base_url=endpoints.registration_url, timeout=30) as client:
        played = await player.play(client)
        if endpoints.service_key:
            await player.play_rules(client, played)
        offices, office_problems = await set_contact_offices(
            client,
            admin_key=endpoints.admin_key,
            municipalities=[p.ags for p in played if p.onboarded],
        )
        municipal = await play_municipal_operations(
            client,
            played=played,
            keys=player.keys,
            kafka_bootstrap=endpoints.kafka_bootstrap,
            topic_prefix=endpoints.topic_prefix,
        )
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=endpoints.assessment_url, timeout=30) as client:
        await player.assess(client, played, deadline=deadline)
        benchmarks = await player.benchmarks(client, played)
    played_totals = played_metrics(played)
    expected = expected_metrics(baseline, played_totals)
    snapshot: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        snapshot = await latest_program_snapshot(endpoints)
        observed = (snapshot or {}).get("metrics", {})
        progress(
            "waiting for the aggregates",
            int(observed.get("confirmations_sent") or 0),
            expected["confirmations_sent"] or 0,
        )
        if agrees(expected, snapshot):
            break
        await asyncio.sleep(0.5)
    # At least a few seconds for the last waits, even when the aggregates used up the time.
    remaining = max(5.0, deadline - time.monotonic())
    self_check_ids = {p.assessment.self_check_id for p in played if p.assessment is not None}
    events = await scored_events(
        endpoints,
        self_check_ids,
        timeout_s=remaining,
        progress=lambda found: progress(STEP_SCORED, found, len(self_check_ids)),
    )
    checks = assessment_checks(
        played, benchmarks=benchmarks, events=events, exclusive=endpoints.exclusive
    )
    checks.extend(
        judged(f"municipal: {step}", municipal.problems.get(step, []), passed=passed)
        for step, passed in MUNICIPAL_STEPS.items()
    )
    checks.extend(
        await reporting_checks(
            endpoints,
            played,
            timeout_s=max(5.0, deadline - time.monotonic()),
            progress=progress,
        )
    )
    peers: dict[str, str] = {}
    if endpoints.exchange_url:
        from wok_cli.demo_exchange import play_exchange  # it imports this module

        exchange = await play_exchange(
            exchange_url=endpoints.exchange_url,
            keys=player.keys,
            played=played,
            timeout_s=max(10.0, deadline - time.monotonic()),
            assessment_url=endpoints.assessment_url,
            kafka_bootstrap=endpoints.kafka_bootstrap,
            topic_prefix=endpoints.topic_prefix,
            progress=progress,
        )
        checks.extend(exchange.checks)
        peers = {ags: seen.summary() for ags, seen in exchange.seen.items()}
    folder = mail_folder(endpoints)
    census: MailCensus | None = None
    if folder is not None:
        census = await count_mails(
            folder,
            {rid: wanted for p in played for rid, wanted in p.registrations.items()},
            timeout_s=max(5.0, deadline - time.monotonic()),
            progress=lambda done, total: progress(STEP_MAILS, done, total),
        )
    checks.extend(mail_checks(census, folder=folder))
    promotions: dict[str, set[str]] | None = None
    rule_mails: list[SeenMail] | None = None
    if endpoints.service_key:
        wanted = {p.dialogue_event_id: set(p.promoted) for p in played if p.dialogue_event_id}
        promotions = await promoted_events(
            endpoints,
            wanted,
            timeout_s=max(5.0, deadline - time.monotonic()),
            progress=lambda found: progress(
                STEP_PROMOTED, found, sum(len(p.promoted) for p in played)
            ),
        )
        if folder is not None:
            rule_mails = await wait_for_mails(
                folder,
                rule_mail_deliveries(played),
                timeout_s=max(5.0, deadline - time.monotonic()),
                progress=lambda done, total: progress(STEP_RULE_MAILS, done, total),
            )
    checks.extend(rule_checks(played, promotions=promotions, mails=rule_mails, folder=folder))
    if folder is None:
        checks.append(Check("staff mails", "skipped", "the stack's mail folder is unknown"))
    else:
        staff_problems = office_problems + await wait_for_staff_mails(
            folder,
            offices,
            timeout_s=max(5.0, deadline - time.monotonic()),
            since=started_wall - 1.0,
        )
        checks.append(
            judged(
                "staff mails",
                staff_problems,
                passed=f"each of {len(offices)} contact offices got one 'self-check scored' "
                "mail in its language (Arabic right to left) with the link to its field report",
            )
        )
    return DemoResult(
        played=played,
        baseline=baseline,
        played_totals=played_totals,
        expected=expected,
        observed=dict((snapshot or {}).get("metrics", {})),
        seconds=time.monotonic() - started,
        agreed=agrees(expected, snapshot),
        suppressed=list((snapshot or {}).get("suppressed", [])),
        checks=checks,
        mails=census,
        peers=peers,
    )


def field_label(found: tuple[int, float] | None) -> str:
    """'6 Zusammenhalt und Begegnung (31.3)', or '–'."""
    if found is None:
        return "–"
    number, score = found
    return f"{number} {FIELD_NAMES[number]} ({score})"


def write_html_report(result: DemoResult, path: Path) -> Path:
    def cell(value: object) -> str:
        return f"<td>{html.escape('–' if value is None else str(value))}</td>"

    def assessed(p: Played) -> str:
        a = p.assessment
        if a is None:
            return cell(p.assessment_error or None) + cell(None) + cell(None)
        return cell(a.overall) + cell(field_label(a.weakest)) + cell(field_label(a.strongest))

    municipality_rows = "\n".join(
        "<tr>"
        + cell(p.name)
        + cell(p.ags)
        + cell(p.dialogue_events)
        + cell(p.confirmed)
        + cell(p.waitlisted)
        + cell(len(p.cancelled))
        + cell(len(p.promoted))
        + assessed(p)
        + "</tr>"
        for p in result.played
    )
    metric_rows = "\n".join(
        "<tr>"
        + cell(name)
        + cell(result.played_totals[name])
        + cell(result.expected[name])
        + cell(result.observed.get(name))
        + cell(verdict(name, result.expected[name], result.observed.get(name)))
        + "</tr>"
        for name in METRICS
    )
    check_rows = "\n".join(
        f'<tr><td>{html.escape(c.name)}</td><td class="{c.outcome}">{c.outcome}</td>'
        f"<td>{html.escape(c.detail)}</td></tr>"
        for c in result.checks
    )
    if result.mails is None:
        mail_section = (
            "<p>The stack's mail folder is unknown (a stack not started by wok): "
            "the mails were not counted.</p>"
        )
    else:
        mail_rows = "\n".join(
            "<tr>"
            + cell(language)
            + cell(registrations)
            + cell(result.mails.confirmations.get(language, 0))
            + cell(result.mails.right_to_left.get(language, 0))
            + "</tr>"
            for language, registrations in result.mails.registrations.items()
        )
        mail_section = (
            "<table><tr><th>language</th><th>registrations</th><th>confirmation mails</th>"
            f"<th>right to left</th></tr>\n{mail_rows}</table>"
        )
    outcome = "agree" if result.agreed else "DO NOT agree"
    failed = len(result.failed)
    checks_outcome = "All checks passed." if not failed else f"{failed} check(s) FAILED."
    document = f"""<!doctype html>
<html lang="de"><head><meta charset="utf-8">
<title>Weltoffene Kommune – Demo-Bericht</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1d2b36; }}
table {{ border-collapse: collapse; margin-bottom: 2rem; }}
td, th {{ border: 1px solid #c8d3dc; padding: .3rem .7rem; text-align: left; }}
th {{ background: #eef3f7; }}
.ok, .passed {{ color: #1a7f37; }} .bad, .failed {{ color: #b42318; }}
.skipped {{ color: #9a6700; }}
</style></head><body>
<h1>Weltoffene Kommune – Demo</h1>
<p class="{"ok" if result.agreed else "bad"}">The program aggregates {outcome} with what was
played ({len(result.played)} municipalities, {result.seconds:.1f} s).</p>
<p class="{"ok" if not failed else "bad"}">{checks_outcome}</p>
<h2>Checks</h2>
<table><tr><th>check</th><th>outcome</th><th>detail</th></tr>
{check_rows}</table>
<h2>Program aggregate (exchange.aggregates.v1)</h2>
<table><tr><th>metric</th><th>played now</th><th>expected</th><th>aggregate</th><th></th></tr>
{metric_rows}</table>
<h2>Municipalities</h2>
<table><tr><th>municipality</th><th>AGS</th><th>dialogue events</th><th>confirmed</th>
<th>waitlisted</th><th>cancelled</th><th>promoted</th><th>overall index</th>
<th>weakest field</th><th>strongest field</th></tr>
{municipality_rows}</table>
<h2>Confirmation mails by language</h2>
{mail_section}
<p>Generated {html.escape(datetime.now(UTC).isoformat(timespec="seconds"))}.
Data: {html.escape(json.dumps(result.baseline))} before the run.</p>
</body></html>
"""
    path.write_text(document, encoding="utf-8")
    return path
