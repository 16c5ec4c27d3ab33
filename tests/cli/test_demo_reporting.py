"""The demo's reporting checks judge published snapshots and digests against what was played
(pure functions; tests/e2e/test_reporting_assessment.py runs them on the real stack)."""

from __future__ import annotations

from typing import Any

from wok_cli.demo import AssessmentPlayed, Played
from wok_cli.demo_reporting import (
    digest_problems,
    funnel_problems,
    measure_problems,
    rank_problems,
    score_problems,
)

KL, MZ = "07312000", "07315000"


def played_one(ags: str, name: str, score: float) -> Played:
    fields = [
        {"field": n, "score": score if n == 6 else None, "level": "developing"} for n in range(1, 8)
    ]
    fields[5]["level"] = "developing"
    for entry in fields:
        if entry["score"] is None:
            entry["level"] = "insufficient_data"
    result = {"fields": fields, "overall": score}
    played = Played(ags=ags, name=name)
    played.assessment = AssessmentPlayed(
        self_check_id=f"sc-{ags}",
        catalogue_version="2026.1",
        answers={},
        result=result,
        measures={"m1": "running", "m2": "planned"},
        measure_fields={"m1": 6, "m2": 6},
    )
    return played


def snapshots(kl_rank: int = 2) -> dict[str, dict[str, Any]]:
    def municipality(ags: str, score: float) -> dict[str, Any]:
        return {
            "metrics": {
                "self_checks_scored": 1,
                "measures_field_6": 2,
                "measures_running": 1,
                "measures_planned": 1,
            },
            "statistics": {
                **{f"field_{n}_score": score if n == 6 else None for n in range(1, 8)},
                "overall_score": score,
            },
        }

    fields = {
        f"field:{n}": {"statistics": {"score_q1": 0, "score_median": 0, "score_q3": 0}}
        for n in range(1, 8)
    }
    fields["field:6"] = {
        "statistics": {
            f"score:{KL}": 40.0,
            f"score:{MZ}": 80.0,
            f"rank:{KL}": kl_rank,
            f"rank:{MZ}": 1,
            "score_q1": 50.0,
            "score_median": 60.0,
            "score_q3": 70.0,
        }
    }
    return {
        "program": {
            "metrics": {
                "self_checks_started": 3,
                "self_checks_submitted": 2,
                "self_checks_scored": 2,
            }
        },
        f"municipality:{KL}": municipality(KL, 40.0),
        f"municipality:{MZ}": municipality(MZ, 80.0),
        **fields,
    }


PLAYED = [played_one(KL, "Kaiserslautern", 40.0), played_one(MZ, "Mainz", 80.0)]


def test_published_figures_that_match_the_play_pass_every_check() -> None:
    published = snapshots()
    texts = {
        KL: {
            "Kaiserslautern completed its self-check.",
            "Kaiserslautern planned a measure in Zusammenhalt und Begegnung.",
        },
        MZ: {
            "Mainz completed its self-check.",
            "Mainz planned a measure in Zusammenhalt und Begegnung.",
        },
    }

    assert score_problems(PLAYED, published) == []
    assert rank_problems(PLAYED, published, exclusive=True) == []
    assert funnel_problems(PLAYED, published) == []
    assert measure_problems(PLAYED, published, exclusive=True) == []
    assert digest_problems(PLAYED, texts) == []


def test_a_wrong_rank_a_wrong_score_and_a_missing_digest_are_found() -> None:
    published = snapshots(kl_rank=1)
    published[f"municipality:{MZ}"]["statistics"]["field_6_score"] = 79.9
    published["program"]["metrics"]["self_checks_scored"] = 1

    assert rank_problems(PLAYED, published, exclusive=True) == [f"field 6 {KL}: rank 1"]
    assert score_problems(PLAYED, published) == [f"{MZ} field 6: 79.9, played 80.0"]
    assert funnel_problems(PLAYED, published) == ["program funnel [3, 2, 1] for 2 played"]
    assert digest_problems(PLAYED, {KL: {"Kaiserslautern completed its self-check."}}) == [
        f"{KL}: no digest “Kaiserslautern planned a measure in Zusammenhalt und Begegnung.”",
        f"{MZ}: no digest “Mainz completed its self-check.”",
        f"{MZ}: no digest “Mainz planned a measure in Zusammenhalt und Begegnung.”",
    ]
