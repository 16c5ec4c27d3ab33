"""The peer-exchange part of `wok demo`, played after the self-checks and measures.

For every model municipality it reads, with the municipality's own key, its peer suggestions
(`GET /v1/municipalities/{ags}/peers`) and its feed (`…/feed`) from the exchange service,
and judges them against what the demo played, using assessment's results (not the
exchange service's view) as the truth:

- every pair (a field that is a deficit of one played municipality and a strength of
  another) is suggested, to both, under the same suggestion id, and no strength-pair is
  suggested that the results do not give (pairs from a clear improvement between two
  scorings are accepted: a stack that ran the demo before may have them);
- with assessment at hand, each suggestion lists exactly the offering municipality's
  measures in that field (not dropped) as assessment lists them;
- each municipality's feed carries only peers' activity touching its own deficits, and
  something of every played peer it is to learn from (reporting's digest of the peer's
  joining, its dialogue event, or its measures);
- with Kafka at hand, each pair was announced as `PeerSuggested` on exchange.peers.v1 to
  each of the two exactly once, keyed by the recipient.

`play_exchange` waits (the exchange service learns everything over Kafka) until the views
agree or `timeout_s` has passed, and answers the checks and what each municipality saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

# The module, not its names: wok_cli.demo may import this module at its top.
from wok_cli import demo
from wok_contracts import ContractError, PeerSuggested, PeerSuggestionWithdrawn, decode_envelope
from wok_contracts.topics import EXCHANGE_PEERS

if TYPE_CHECKING:
    from wok_cli.demo import Check, Played

STEP_EXCHANGE = "reading peer suggestions and feeds"
STEP_TOLD = "finding the suggestions on exchange.peers.v1"
FEED_LIMIT = 500
"""The most the exchange service lists of a feed at once."""

Pair = tuple[int, str, str]
"""(field, needing AGS, offering AGS)."""


@dataclass
class ExchangeSeen:
    """What one municipality saw at the exchange service."""

    ags: str
    peers: dict[str, Any] = field(default_factory=dict)
    feed: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def suggestions(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.peers.get("suggestions", [])
        return found

    def pairs(self, *, among: set[str]) -> set[Pair]:
        """The pairs in this view whose peer is one of `among` (e.g. the played ones)."""
        found = set()
        for s in self.suggestions:
            if s["peer"] not in among:
                continue
            number = s["field"]["number"]
            if s["role"] == "learns":
                found.add((number, self.ags, s["peer"]))
            else:
                found.add((number, s["peer"], self.ags))
        return found

    def learning(self) -> int:
        return sum(1 for s in self.suggestions if s["role"] == "learns")

    def sharing(self) -> int:
        return sum(1 for s in self.suggestions if s["role"] == "shares")

    def best_peers(self) -> dict[int, tuple[str, float | None]]:
        """Per deficit field, the peer to learn from with the highest score there."""
        best: dict[int, tuple[str, float | None]] = {}
        for s in self.suggestions:
            if s["role"] != "learns":
                continue
            number, score = s["field"]["number"], s["peer_score"]
            if number not in best or (score or 0) > (best[number][1] or 0):
                best[number] = (s["peer_name"], score)
        return dict(sorted(best.items()))

    def summary(self) -> str:
        """One line for the console: whom to learn from, how many to share with, the feed."""
        if self.error:
            return self.error
        learn = "; ".join(
            f"field {number} from {name}" + (f" ({score:g})" if score is not None else "")
            for number, (name, score) in self.best_peers().items()
        )
        return (
            f"learns {learn or 'from nobody (no deficit a peer is strong in)'}; "
            f"shares with {len({s['peer'] for s in self.suggestions if s['role'] == 'shares'})} "
            f"peers; {len(self.feed.get('items', []))} feed items"
        )


@dataclass
class ExchangeOutcome:
    seen: dict[str, ExchangeSeen]
    expected: set[Pair]
    checks: list[Check]


def played_results(played: Sequence[Played]) -> dict[str, dict[str, Any]]:
    return {p.ags: p.assessment.result for p in played if p.assessment is not None}


def expected_pairs(results: Mapping[str, Mapping[str, Any]]) -> set[Pair]:
    """Every (field, needing, offering) among the played municipalities by their results."""
    return {
        (number, needing, offering)
        for needing, result in results.items()
        for number in result.get("deficits", [])
        for offering, other in results.items()
        if offering != needing and number in other.get("strengths", [])
    }


def pair_problems(expected: set[Pair], seen: Mapping[str, ExchangeSeen]) -> list[str]:
    """Pairs missing on either side, strength-pairs the results do not give, one-sided ones."""
    played = set(seen)
    problems = []
    for number, needing, offering in sorted(expected):
        for ags in (needing, offering):
            if (number, needing, offering) not in seen[ags].pairs(among=played):
                problems.append(
                    f"{ags}: no suggestion for field {number} pairing {needing} with {offering}"
                )
    for ags, view in seen.items():
        for s in view.suggestions:
            if s["peer"] not in played:
                continue
            number = s["field"]["number"]
            pair = (number, ags, s["peer"]) if s["role"] == "learns" else (number, s["peer"], ags)
            if s["reason"] == "strength" and pair not in expected:
                problems.append(f"{ags}: unexpected suggestion {s['suggestion_id']}")
            peer_ids = {x["suggestion_id"] for x in seen[s["peer"]].suggestions}
            if s["suggestion_id"] not in peer_ids:
                problems.append(f"{ags}: {s['suggestion_id']} not told to {s['peer']}")
    return problems


MeasuresByPlace = dict[tuple[str, int], set[str]]
"""Measure ids (not dropped) by (AGS, field), as assessment lists them."""


def measures_by_place(listed: Mapping[str, Sequence[Mapping[str, Any]]]) -> MeasuresByPlace:
    found: MeasuresByPlace = {}
    for ags, measures in listed.items():
        for measure in measures:
            if measure["status"] != "dropped":
                found.setdefault((ags, measure["field"]), set()).add(measure["id"])
    return found


def measure_problems(
    measures: MeasuresByPlace, seen: Mapping[str, ExchangeSeen]
) -> tuple[list[str], int]:
    """Each suggestion lists exactly the offering side's measures in its field (as
    assessment lists them); answers the problems and how many measures were listed."""
    problems = []
    listed_total = 0
    for ags, view in seen.items():
        for s in view.suggestions:
            if s["role"] != "learns" or s["peer"] not in seen:
                continue
            wanted = measures.get((s["peer"], s["field"]["number"]), set())
            listed = {m["measure_id"] for m in s["measures"]}
            listed_total += len(listed)
            if listed != wanted:
                problems.append(
                    f"{ags}: {s['suggestion_id']} lists measures {sorted(listed)}, "
                    f"assessment has {sorted(wanted)}"
                )
    return problems, listed_total


def feed_problems(expected: set[Pair], seen: Mapping[str, ExchangeSeen]) -> list[str]:
    problems = []
    for ags, view in seen.items():
        deficits = set(view.feed.get("deficits", []))
        for item in view.feed.get("items", []):
            if item["peer"] == ags or not set(item["fields"]) <= deficits:
                problems.append(f"{ags}: feed item {item['item_id']} is not about its deficits")
        teachers = {offering for _, needing, offering in expected if needing == ags}
        heard = {item["peer"] for item in view.feed.get("items", [])}
        for peer in sorted(teachers - heard):
            problems.append(f"{ags}: nothing of {peer} in the feed")
    return problems


Told = dict[tuple[str, str], list[str]]
"""What exchange.peers.v1 said of each (suggestion id, recipient), in order: "suggested" or
"withdrawn" (a pair that stopped holding after a new self-check and held again is withdrawn
and suggested anew)."""


def told_problems(expected: set[Pair], told: Told, *, topic: str) -> list[str]:
    problems = []
    for number, needing, offering in sorted(expected):
        suggestion_id = f"{number}:{needing}:{offering}"
        for recipient in (needing, offering):
            said = told.get((suggestion_id, recipient), [])
            repeated = sum(1 for pair in pairwise(said) if pair == ("suggested", "suggested"))
            if not said or said[-1] != "suggested":
                problems.append(f"{suggestion_id} not told to {recipient} on {topic}")
            elif repeated:
                problems.append(
                    f"{suggestion_id} told to {recipient} {repeated + 1} times in a row on {topic}"
                )
    return problems


async def read_told(
    *, kafka_bootstrap: str, topic: str, wanted: set[tuple[str, str]], timeout_s: float
) -> Told:
    """PeerSuggested and PeerSuggestionWithdrawn announcements on the topic, from the
    beginning to its end (or until every wanted one is there and the end is reached, or the
    time is up)."""
    told: Told = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        assignment = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        if not assignment:
            return told
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ends = await consumer.end_offsets(assignment)
            at_end = all([await consumer.position(tp) >= ends[tp] for tp in assignment])
            if at_end and wanted <= set(told):
                break
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    try:
                        data = decode_envelope(record.value).data
                    except ContractError:
                        continue
                    if (
                        isinstance(data, PeerSuggested | PeerSuggestionWithdrawn)
                        and record.key == data.recipient.encode()
                    ):
                        said = "suggested" if isinstance(data, PeerSuggested) else "withdrawn"
                        told.setdefault((data.suggestion_id, data.recipient), []).append(said)
    finally:
        await consumer.stop()
    return told


def judge(
    played: Sequence[Played],
    seen: Mapping[str, ExchangeSeen],
    measures: MeasuresByPlace | None = None,
) -> list[Check]:
    expected = expected_pairs(played_results(played))
    unread = [f"{ags}: {view.error}" for ags, view in seen.items() if view.error]
    learners = {needing for _, needing, _ in expected}
    checks = [
        demo.judged(
            "peer suggestions",
            unread + pair_problems(expected, seen),
            passed=f"{len(expected)} pairs (deficit here, strength there) suggested to both "
            f"sides; {len(learners)} of {len(seen)} municipalities have a peer to learn from",
        ),
        demo.judged(
            "peer activity feeds",
            unread + feed_problems(expected, seen),
            passed=f"{sum(len(v.feed.get('items', [])) for v in seen.values())} feed items, "
            "each about the reader's deficits, from every peer it is to learn from",
        ),
    ]
    if measures is not None:
        problems, listed = measure_problems(measures, seen)
        checks.append(
            demo.judged(
                "measures that helped",
                unread + problems,
                passed=f"every suggestion lists the offering side's measures in its field "
                f"as assessment has them ({listed} listed"
                + (
                    ""
                    if listed
                    else ": no measure lies in a field where its municipality is strong"
                )
                + ")",
            )
        )
    return checks


async def assessment_measures(
    client: httpx.AsyncClient, keys: Mapping[str, str], ags_list: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    listed: dict[str, list[dict[str, Any]]] = {}
    for ags in ags_list:
        if ags in keys:
            response = await client.get(
                f"/v1/municipalities/{ags}/measures",
                headers={"Authorization": f"Bearer {keys[ags]}"},
            )
            response.raise_for_status()
            listed[ags] = response.json()
    return listed


async def read_views(
    client: httpx.AsyncClient, keys: Mapping[str, str], ags_list: Sequence[str]
) -> dict[str, ExchangeSeen]:
    seen = {}
    for ags in ags_list:
        view = ExchangeSeen(ags)
        if ags not in keys:
            view.error = "no key (not onboarded)"
        else:
            auth = {"Authorization": f"Bearer {keys[ags]}"}
            try:
                peers = await client.get(f"/v1/municipalities/{ags}/peers", headers=auth)
                # the whole feed (500 at most): a municipality lacking many fields hears
                # of more than the default page of 100, its oldest peers' activity last
                feed = await client.get(
                    f"/v1/municipalities/{ags}/feed", params={"limit": FEED_LIMIT}, headers=auth
                )
            except httpx.HTTPError as error:
                view.error = f"exchange service unreachable: {error!r}"
            else:
                if peers.status_code != 200 or feed.status_code != 200:
                    view.error = f"answered {peers.status_code}/{feed.status_code}"
                else:
                    view.peers, view.feed = peers.json(), feed.json()
        seen[ags] = view
    return seen


async def play_exchange(
    *,
    exchange_url: str,
    keys: Mapping[str, str],
    played: Sequence[Played],
    timeout_s: float = 60.0,
    assessment_url: str = "",
    kafka_bootstrap: str = "",
    topic_prefix: str = "",
    progress: Callable[[str, int, int], None] = lambda step, done, total: None,
) -> ExchangeOutcome:
    """Read every played municipality's peers and feed (its own key) until they agree with
    the played results or the time is up; with `assessment_url`, also check the measures
    listed against assessment's; with `kafka_bootstrap`, also check that each
    pair was announced on exchange.peers.v1 to each side exactly once, keyed by it.
    Answers the checks and the views."""
    ags_list = [p.ags for p in played if p.assessment is not None]
    expected = expected_pairs(played_results(played))
    deadline = time.monotonic() + timeout_s
    measures: MeasuresByPlace | None = None
    if assessment_url:
        async with httpx.AsyncClient(base_url=assessment_url, timeout=30) as client:
            measures = measures_by_place(await assessment_measures(client, keys, ags_list))
    async with httpx.AsyncClient(base_url=exchange_url, timeout=30) as client:
        while True:
            seen = await read_views(client, keys, ags_list)
            checks = judge(played, seen, measures)
            done = sum(
                1 for ags in ags_list if not seen[ags].error and seen[ags].peers.get("scored")
            )
            progress(STEP_EXCHANGE, done, len(ags_list))
            if all(c.outcome == "passed" for c in checks) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
    if kafka_bootstrap:
        topic = f"{topic_prefix}{EXCHANGE_PEERS}"
        wanted = {
            (f"{number}:{needing}:{offering}", recipient)
            for number, needing, offering in expected
            for recipient in (needing, offering)
        }
        progress(STEP_TOLD, 0, len(wanted))
        told = await read_told(
            kafka_bootstrap=kafka_bootstrap,
            topic=topic,
            wanted=wanted,
            timeout_s=max(10.0, deadline - time.monotonic()),
        )
        progress(STEP_TOLD, len(wanted & set(told)), len(wanted))
        checks.append(
            demo.judged(
                "peer suggestions as events",
                told_problems(expected, told, topic=topic),
                passed=f"{len(wanted)} PeerSuggested on {topic}, one to each side of each "
                "pair, keyed by the recipient",
            )
        )
    return ExchangeOutcome(seen=seen, expected=expected, checks=checks)
