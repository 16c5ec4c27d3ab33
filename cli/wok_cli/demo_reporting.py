"""The demo's reporting checks: what reporting publishes about the self-checks, workshops and
measures the demo played, read from the exchange streams as any model municipality or the
federal office would.

`reporting_checks(endpoints, played, timeout_s=...)` is called by `run_demo` after the
assessment steps; it waits until every played municipality's snapshot on
`exchange.aggregates.v1` shows its latest self-check, then judges:

- field scores: each municipality's published scores (per field and overall) are the ones
  its played self-check got, in its own snapshot and in the field scopes;
- ranks and quartiles: in each field scope every rank is 1 + the number of strictly higher
  scores, and the quartiles are Python's inclusive quantiles of the published scores; on
  the demo's own stack the field scopes hold exactly the played municipalities;
- the self-check funnel: started ≥ submitted ≥ scored ≥ what was played, program-wide and
  per municipality;
- measures: the played measures by field (the weakest and the strongest) and by status (exact
  on the demo's own stack, at least as many on a shared one, where earlier runs planned some
  too);
- activity digests: "<name> completed its self-check." and "<name> planned a measure in
  <field>." (for each field it planned measures in) on `exchange.activity.v1`, keyed by the
  AGS, with no personal data.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from wok_contracts.topics import EXCHANGE_ACTIVITY, EXCHANGE_AGGREGATES
from wok_reporting.domain import FIELD_NAMES_DE as FIELD_NAMES

if TYPE_CHECKING:  # wok_cli.demo imports this module: no import cycle at run time
    from wok_cli.demo import Check, Endpoints, Played

STEP = "reporting: assessment aggregates"


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record now on `topic`, from the beginning, without a consumer group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
        assignment = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        if not assignment:
            return []
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        ends = await consumer.end_offsets(assignment)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in assignment}
            if all(positions[tp] >= ends[tp] for tp in assignment):
                break
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def newest_snapshots(records: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """The newest snapshot per key (scope id) on the aggregates topic."""
    newest: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.key is None or record.value is None:
            continue
        data = json.loads(record.value)["data"]
        key = record.key.decode()
        if key not in newest or data["sequence"] >= newest[key]["sequence"]:
            newest[key] = data
    return newest


def _assessed(played: list[Played]) -> list[Played]:
    return [p for p in played if p.assessment is not None]


def _scores(played: list[Played]) -> dict[str, dict[int, float]]:
    """The played sufficient scores by AGS (the fields that take part in ranks)."""
    return {p.ags: p.assessment.sufficient_scores for p in played if p.assessment is not None}


def score_problems(played: list[Played], snapshots: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for p in _assessed(played):
        assert p.assessment is not None
        own = snapshots.get(f"municipality:{p.ags}")
        if own is None:
            problems.append(f"{p.ags}: no snapshot")
            continue
        published = own.get("statistics", {})
        wanted = p.assessment.sufficient_scores
        for number in range(1, 8):
            score = published.get(f"field_{number}_score")
            if score != wanted.get(number):
                problems.append(f"{p.ags} field {number}: {score}, played {wanted.get(number)}")
            in_field = snapshots.get(f"field:{number}", {}).get("statistics", {})
            if in_field.get(f"score:{p.ags}") != wanted.get(number):
                problems.append(f"{p.ags} field {number}: field scope differs")
        if published.get("overall_score") != p.assessment.overall:
            problems.append(
                f"{p.ags} overall: {published.get('overall_score')}, played {p.assessment.overall}"
            )
    return problems


def rank_problems(
    played: list[Played], snapshots: dict[str, dict[str, Any]], *, exclusive: bool
) -> list[str]:
    problems = []
    for number in range(1, 8):
        found = snapshots.get(f"field:{number}", {}).get("statistics", {})
        scores = {k.removeprefix("score:"): v for k, v in found.items() if k.startswith("score:")}
        for ags, score in scores.items():
            expected = 1 + sum(1 for other in scores.values() if other > score)
            if found.get(f"rank:{ags}") != expected:
                problems.append(f"field {number} {ags}: rank {found.get(f'rank:{ags}')}")
        if len(scores) >= 2:
            q1, median, q3 = statistics.quantiles(scores.values(), n=4, method="inclusive")
            for name, value in (("q1", q1), ("median", median), ("q3", q3)):
                if abs(found[f"score_{name}"] - value) > 0.05 + 1e-9:
                    problems.append(f"field {number}: {name} {found[f'score_{name}']} ≠ {value}")
        if exclusive:
            wanted = {p.ags for p in _assessed(played) if number in p.assessment.sufficient_scores}  # type: ignore[union-attr]
            if set(scores) != wanted:
                problems.append(f"field {number}: ranks {sorted(scores)}, played {sorted(wanted)}")
    return problems


def funnel_problems(played: list[Played], snapshots: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    program = snapshots.get("program", {}).get("metrics", {})
    steps = [program.get(f"self_checks_{s}") or 0 for s in ("started", "submitted", "scored")]
    if not steps[0] >= steps[1] >= steps[2] >= len(_assessed(played)):
        problems.append(f"program funnel {steps} for {len(_assessed(played))} played")
    for p in _assessed(played):
        own = snapshots.get(f"municipality:{p.ags}", {}).get("metrics", {})
        if (own.get("self_checks_scored") or 0) < 1:
            problems.append(f"{p.ags}: no scored self-check counted")
    return problems


def measure_problems(
    played: list[Played], snapshots: dict[str, dict[str, Any]], *, exclusive: bool
) -> list[str]:
    problems = []
    for p in _assessed(played):
        assert p.assessment is not None
        if not p.assessment.measures:
            continue
        own = snapshots.get(f"municipality:{p.ags}", {}).get("metrics", {})
        by_field = Counter(p.assessment.measure_fields.values())
        wanted = {
            **{f"measures_field_{number}": count for number, count in by_field.items()},
            "measures_running": list(p.assessment.measures.values()).count("running"),
            "measures_planned": list(p.assessment.measures.values()).count("planned"),
        }
        for name, count in wanted.items():
            seen = own.get(name) or 0
            if seen != count if exclusive else seen < count:
                problems.append(f"{p.ags}: {name} {seen}, played {count}")
    return problems


def digest_problems(played: list[Played], texts: dict[str, set[str]]) -> list[str]:
    problems: list[str] = []
    for p in _assessed(played):
        assert p.assessment is not None
        own = texts.get(p.ags, set())
        wanted = [f"{p.name} completed its self-check."]
        wanted.extend(
            f"{p.name} planned a measure in {FIELD_NAMES[number]}."
            for number in sorted(set(p.assessment.measure_fields.values()))
        )
        problems.extend(f"{p.ags}: no digest “{text}”" for text in wanted if text not in own)
    return problems


def _settled(
    played: list[Played], snapshots: dict[str, dict[str, Any]], *, exclusive: bool
) -> bool:
    """Whether the snapshots show everything played: the measures (planned after the scoring,
    one set running last) may reach reporting after the scored self-check."""
    return (
        not score_problems(played, snapshots)
        and not funnel_problems(played, snapshots)
        and not measure_problems(played, snapshots, exclusive=exclusive)
    )


async def reporting_checks(
    endpoints: Endpoints,
    played: list[Played],
    *,
    timeout_s: float,
    progress: Callable[[str, int, int], None] = lambda step, done, total: None,
) -> list[Check]:
    """Wait (up to `timeout_s`) for reporting to show the played assessments, then judge."""
    from wok_cli.demo import judged  # here: wok_cli.demo imports this module

    aggregates = f"{endpoints.topic_prefix}{EXCHANGE_AGGREGATES}"
    activity = f"{endpoints.topic_prefix}{EXCHANGE_ACTIVITY}"
    assessed = _assessed(played)
    deadline = time.monotonic() + timeout_s
    while True:
        snapshots = newest_snapshots(await read_all(endpoints.kafka_bootstrap, aggregates))
        shown = sum(
            not score_problems([p], snapshots) and not funnel_problems([p], snapshots)
            for p in assessed
        )
        progress(STEP, shown, len(assessed))
        if _settled(played, snapshots, exclusive=endpoints.exclusive) or (
            time.monotonic() > deadline
        ):
            break
        await asyncio.sleep(1.0)
    texts: dict[str, set[str]] = {}
    while True:
        for record in await read_all(endpoints.kafka_bootstrap, activity):
            if record.key is not None and record.value is not None:
                data = json.loads(record.value)["data"]
                texts.setdefault(record.key.decode(), set()).add(data["text_en"])
        if not digest_problems(played, texts) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    exclusive = endpoints.exclusive
    return [
        judged(
            "reporting: field scores",
            score_problems(played, snapshots),
            passed=f"the published scores of {len(assessed)} municipalities are the played ones",
        ),
        judged(
            "reporting: ranks and quartiles",
            rank_problems(played, snapshots, exclusive=exclusive),
            passed="each field's ranks and quartiles follow from its published scores",
        ),
        judged(
            "reporting: self-check funnel",
            funnel_problems(played, snapshots),
            passed="started ≥ submitted ≥ scored, every played self-check scored",
        ),
        judged(
            "reporting: measures",
            measure_problems(played, snapshots, exclusive=exclusive),
            passed="the played measures are counted by field and status",
        ),
        judged(
            "reporting: activity digests",
            digest_problems(played, texts),
            passed="a digest per completed self-check and planned measure",
        ),
    ]
