"""How `wok demo` judges the aggregates against what it played (no servers)."""

from __future__ import annotations

from pathlib import Path

from wok_cli.demo import (
    MUNICIPALITIES,
    Played,
    agrees,
    expected_metrics,
    played_metrics,
    verdict,
)
from wok_contracts import validate_ags


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
        "confirmations_sent": 20,
    }
    expected = expected_metrics(baseline, played_metrics(played))
    assert expected == {
        "municipalities": 3,
        "dialogue_events": 4,
        "registrations_total": 39,
        "registrations_confirmed": 36,
        "registrations_waitlisted": None,
        "confirmations_sent": 39,
    }


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
