"""The judging of the demo's peer-exchange part (wok_cli.demo_exchange), on made-up views:
it passes what the rules give and names what is missing, one-sided or invented."""

from __future__ import annotations

from typing import Any

from wok_cli.demo import AssessmentPlayed, Played
from wok_cli.demo_exchange import (
    ExchangeSeen,
    expected_pairs,
    judge,
    measures_by_place,
    told_problems,
)

A, B, C = "07312000", "07315000", "07211000"


def played(ags: str, *, strengths: list[int], deficits: list[int]) -> Played:
    result = {"strengths": strengths, "deficits": deficits, "fields": []}
    return Played(
        ags=ags,
        name=ags,
        assessment=AssessmentPlayed(
            self_check_id=ags, catalogue_version="2026.1", answers={}, result=result
        ),
    )


def suggestion(field: int, needing: str, offering: str, *, viewer: str) -> dict[str, Any]:
    learns = viewer == needing
    return {
        "suggestion_id": f"{field}:{needing}:{offering}",
        "field": {"number": field},
        "role": "learns" if learns else "shares",
        "peer": offering if learns else needing,
        "peer_name": offering if learns else needing,
        "reason": "strength",
        "peer_score": 80.0,
        "measures": [],
    }


def view(ags: str, pairs: list[tuple[int, str, str]], feed: list[dict[str, Any]]) -> ExchangeSeen:
    deficits = sorted({f for f, needing, _ in pairs if needing == ags})
    return ExchangeSeen(
        ags,
        peers={"scored": True, "suggestions": [suggestion(*p, viewer=ags) for p in pairs]},
        feed={"deficits": deficits, "items": feed},
    )


def item(peer: str, fields: list[int]) -> dict[str, Any]:
    return {"item_id": f"x:{peer}", "peer": peer, "fields": fields}


MUNICIPALITIES = [
    played(A, strengths=[5], deficits=[2]),
    played(B, strengths=[2], deficits=[5]),
    played(C, strengths=[], deficits=[7]),
]
PAIRS = [(2, A, B), (5, B, A)]


def test_the_pairs_are_the_deficits_meeting_another_municipalitys_strength() -> None:
    results = {p.ags: p.assessment.result for p in MUNICIPALITIES if p.assessment}
    assert expected_pairs(results) == set(PAIRS)


def test_views_that_agree_with_the_results_pass() -> None:
    seen = {
        A: view(A, PAIRS, [item(B, [2])]),
        B: view(B, PAIRS, [item(A, [5])]),
        C: view(C, [], []),
    }
    assert [c.outcome for c in judge(MUNICIPALITIES, seen, {})] == ["passed"] * 3
    assert seen[A].summary() == f"learns field 2 from {B} (80); shares with 1 peers; 1 feed items"


def test_a_pair_told_to_one_side_only_an_invented_pair_or_a_silent_feed_fail() -> None:
    seen = {
        A: view(A, PAIRS, []),  # nothing of B in A's feed
        B: view(B, [(5, B, A)], [item(A, [5])]),  # B was not told of (2, A, B)
        C: view(C, [(7, C, A)], [item(A, [2])]),  # invented pair, item off C's deficits
    }
    checks = {c.name: c for c in judge(MUNICIPALITIES, seen)}
    assert checks["peer suggestions"].outcome == "failed"
    assert (
        f"{B}: no suggestion for field 2 pairing {A} with {B}" in checks["peer suggestions"].detail
    )
    assert f"unexpected suggestion 7:{C}:{A}" in checks["peer suggestions"].detail
    assert checks["peer activity feeds"].outcome == "failed"
    assert f"{A}: nothing of {B} in the feed" in checks["peer activity feeds"].detail


def test_an_unreachable_service_fails_every_check() -> None:
    seen = {
        p.ags: ExchangeSeen(p.ags, error="exchange service unreachable") for p in MUNICIPALITIES
    }
    assert [c.outcome for c in judge(MUNICIPALITIES, seen, {})] == ["failed"] * 3


def test_each_pair_must_be_announced_once_to_each_side() -> None:
    told = {(f"2:{A}:{B}", A): ["suggested"], (f"2:{A}:{B}", B): ["suggested", "suggested"]}
    assert told_problems({(2, A, B)}, told, topic="exchange.peers.v1") == [
        f"2:{A}:{B} told to {B} 2 times in a row on exchange.peers.v1"
    ]
    assert (
        told_problems({(2, A, B), (5, B, A)}, told, topic="t")[-1]
        == f"5:{B}:{A} not told to {A} on t"
    )


def test_a_pair_withdrawn_and_suggested_again_was_told_once_per_standing() -> None:
    again = ["suggested", "withdrawn", "suggested"]
    told = {(f"2:{A}:{B}", A): again, (f"2:{A}:{B}", B): ["suggested", "withdrawn"]}
    assert told_problems({(2, A, B)}, told, topic="t") == [f"2:{A}:{B} not told to {B} on t"]


def test_a_suggestion_lists_the_offering_sides_measures_in_its_field_as_assessment_has_them() -> (
    None
):
    listed_by_assessment = {
        B: [
            {"id": "m-1", "field": 2, "status": "running"},
            {"id": "m-2", "field": 2, "status": "dropped"},
            {"id": "m-3", "field": 6, "status": "planned"},
        ]
    }
    measures = measures_by_place(listed_by_assessment)
    assert measures == {(B, 2): {"m-1"}, (B, 6): {"m-3"}}
    seen = {A: view(A, PAIRS, [item(B, [2])]), B: view(B, PAIRS, [item(A, [5])])}
    [*_, check] = judge(MUNICIPALITIES[:2], seen, measures)
    assert (
        check.outcome == "failed"
        and f"2:{A}:{B} lists measures [], assessment has ['m-1']" in check.detail
    )
    seen[A].suggestions[0]["measures"] = [{"measure_id": "m-1"}]
    [*_, check] = judge(MUNICIPALITIES[:2], seen, measures)
    assert check.outcome == "passed" and "(1 listed)" in check.detail
