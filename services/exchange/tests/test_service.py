"""The exchange service as a municipality sees it: assessment's scores and measures and
reporting's digests in, peer suggestions and a feed out, over HTTP and as events."""

from __future__ import annotations

from wok_contracts import (
    PeerActivityShared,
    PeerRole,
    PeerSuggested,
    PeerSuggestionWithdrawn,
    PeerWithdrawalReason,
)
from wok_contracts.topics import ASSESSMENT_EVENTS

KAISERSLAUTERN = "07312000"
MAINZ = "07315000"
TRIER = "07211000"


async def test_a_deficit_and_a_peers_strength_are_suggested_to_both_with_the_measures(
    harness,
) -> None:
    kaiserslautern = await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    mainz = await harness.onboard(MAINZ, "Mainz")
    await harness.deliver(
        ASSESSMENT_EVENTS,
        harness.measure_planned(MAINZ, 2, "Antirassismus-Schulungen", "m-1"),
        ags=MAINZ,
    )
    await harness.deliver(ASSESSMENT_EVENTS, harness.measure_running(MAINZ, 2, "m-1"), ags=MAINZ)
    await harness.score(harness.scored(MAINZ, strengths=(2,), deficits=(5,)))
    await harness.score(harness.scored(KAISERSLAUTERN, strengths=(5,), deficits=(2,)))

    response = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/peers", headers=kaiserslautern
    )
    assert response.status_code == 200
    view = response.json()
    assert (view["scored"], view["deficits"], view["strengths"]) == (True, [2], [5])
    by_field = {s["field"]["number"]: s for s in view["suggestions"]}
    assert by_field[2]["role"] == "learns" and by_field[2]["peer_name"] == "Mainz"
    assert by_field[2]["measures"] == [
        {"measure_id": "m-1", "title": "Antirassismus-Schulungen", "status": "running"}
    ]
    assert (by_field[2]["own_score"], by_field[2]["peer_score"]) == (20.0, 80.0)
    assert by_field[5]["role"] == "shares" and by_field[5]["peer"] == MAINZ

    seen_by_mainz = await harness.client.get(f"/v1/municipalities/{MAINZ}/peers", headers=mainz)
    ids = lambda v: sorted(s["suggestion_id"] for s in v["suggestions"])  # noqa: E731
    assert ids(seen_by_mainz.json()) == ids(view)

    suggested = [
        (key, envelope.data)
        for key, envelope in await harness.published_events()
        if isinstance(envelope.data, PeerSuggested)
    ]
    # each of the two pairs told to each of the two, keyed by the recipient
    assert sorted((key, data.suggestion_id) for key, data in suggested) == sorted(
        (ags.encode(), suggestion)
        for suggestion in (f"2:{KAISERSLAUTERN}:{MAINZ}", f"5:{MAINZ}:{KAISERSLAUTERN}")
        for ags in (KAISERSLAUTERN, MAINZ)
    )
    assert all(key == data.recipient.encode() for key, data in suggested)


async def test_redelivered_and_replayed_scores_announce_nothing_twice(harness) -> None:
    await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    await harness.onboard(MAINZ, "Mainz")
    await harness.score(harness.scored(MAINZ, strengths=(3,)))
    first = await harness.score(harness.scored(KAISERSLAUTERN, deficits=(3,)))
    await harness.redeliver(ASSESSMENT_EVENTS, first)  # the same event id
    await harness.score(harness.scored(KAISERSLAUTERN, deficits=(3,)))  # the same score, a new id
    await harness.score(harness.scored(MAINZ, strengths=(3,)))

    events = [e.data for _, e in await harness.published_events()]
    assert sorted((e.recipient, e.suggestion_id) for e in events) == [
        (KAISERSLAUTERN, f"3:{KAISERSLAUTERN}:{MAINZ}"),
        (MAINZ, f"3:{KAISERSLAUTERN}:{MAINZ}"),
    ]


async def test_a_pair_that_stops_holding_is_withdrawn_from_both_once_and_can_return(
    harness,
) -> None:
    kaiserslautern = await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    await harness.onboard(MAINZ, "Mainz")
    await harness.score(harness.scored(MAINZ, strengths=(3,)))
    await harness.score(harness.scored(KAISERSLAUTERN, sequence=1, deficits=(3,)))
    # Kaiserslautern closes its gap: the pair no longer holds
    closed = await harness.score(harness.scored(KAISERSLAUTERN, sequence=2))
    await harness.redeliver(ASSESSMENT_EVENTS, closed)

    view = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/peers", headers=kaiserslautern
    )
    assert view.json()["suggestions"] == []
    pair = f"3:{KAISERSLAUTERN}:{MAINZ}"
    told = [(key, e.data) for key, e in await harness.published_events()]
    withdrawn = [(key, d) for key, d in told if isinstance(d, PeerSuggestionWithdrawn)]
    assert sorted((d.recipient, d.role, d.peer_name, d.reason) for _, d in withdrawn) == [
        (KAISERSLAUTERN, PeerRole.LEARNS, "Mainz", PeerWithdrawalReason.DEFICIT_CLOSED),
        (MAINZ, PeerRole.SHARES, "Kaiserslautern", PeerWithdrawalReason.DEFICIT_CLOSED),
    ]
    assert all(key == d.recipient.encode() and d.suggestion_id == pair for key, d in withdrawn)

    # Mainz loses its strength while Kaiserslautern lacks the field again: nothing holds;
    # then Mainz is strong again and the pair is suggested anew, once to each
    await harness.score(harness.scored(MAINZ, sequence=2))
    await harness.score(harness.scored(KAISERSLAUTERN, sequence=3, deficits=(3,)))
    await harness.score(harness.scored(MAINZ, sequence=3, strengths=(3,)))
    await harness.score(harness.scored(MAINZ, sequence=3, strengths=(3,)))  # again, new id
    kinds = [(type(e.data).__name__, e.data.recipient) for _, e in await harness.published_events()]
    assert sorted(kinds) == sorted(
        [("PeerSuggested", KAISERSLAUTERN), ("PeerSuggested", MAINZ)] * 2
        + [("PeerSuggestionWithdrawn", KAISERSLAUTERN), ("PeerSuggestionWithdrawn", MAINZ)]
    )


async def test_a_peer_losing_its_strength_withdraws_the_pair_as_offer_ended(harness) -> None:
    await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    await harness.onboard(MAINZ, "Mainz")
    await harness.score(harness.scored(KAISERSLAUTERN, deficits=(6,)))
    await harness.score(harness.scored(MAINZ, sequence=1, strengths=(6,)))
    await harness.score(harness.scored(MAINZ, sequence=2))

    reasons = {
        e.data.reason
        for _, e in await harness.published_events()
        if isinstance(e.data, PeerSuggestionWithdrawn)
    }
    assert reasons == {PeerWithdrawalReason.OFFER_ENDED}


async def test_a_clear_improvement_makes_a_peer_suggested(harness) -> None:
    trier = await harness.onboard(TRIER, "Trier")
    await harness.onboard(MAINZ, "Mainz")
    await harness.score(harness.scored(TRIER, deficits=(7,)))
    await harness.score(harness.scored(MAINZ, sequence=1, scores={7: 30.0}))
    await harness.score(harness.scored(MAINZ, sequence=2, scores={7: 55.0}))

    view = (await harness.client.get(f"/v1/municipalities/{TRIER}/peers", headers=trier)).json()
    [suggestion] = view["suggestions"]
    assert (suggestion["peer"], suggestion["reason"], suggestion["improvement"]) == (
        MAINZ,
        "improvement",
        25.0,
    )


async def test_the_feed_shows_peers_activity_touching_the_own_deficits(harness) -> None:
    kaiserslautern = await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    trier = await harness.onboard(TRIER, "Trier")
    await harness.onboard(MAINZ, "Mainz")
    await harness.score(harness.scored(KAISERSLAUTERN, deficits=(2,)))
    await harness.score(harness.scored(TRIER, deficits=(4,)))
    await harness.score(harness.scored(MAINZ, strengths=(2,)))
    await harness.deliver(
        ASSESSMENT_EVENTS, harness.measure_planned(MAINZ, 2, "Beratungsstelle", "m-2"), ags=MAINZ
    )
    await harness.activity(harness.digest(MAINZ, "Mainz"))

    feed = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/feed", headers=kaiserslautern
    )
    assert feed.status_code == 200
    items = feed.json()["items"]
    assert {item["kind"] for item in items} == {"measure_planned", "activity"}
    assert all(item["peer"] == MAINZ and item["fields"] == [2] for item in items)
    assert any("Beratungsstelle" in item["text_de"] for item in items)
    assert (await harness.client.get(f"/v1/municipalities/{TRIER}/feed", headers=trier)).json()[
        "items"
    ] == []

    shared = [
        (key, e.data)
        for key, e in await harness.published_events()
        if isinstance(e.data, PeerActivityShared)
    ]
    assert sorted(data.kind.value for _, data in shared) == ["activity", "measure_planned"]
    assert {key for key, _ in shared} == {KAISERSLAUTERN.encode()}


async def test_only_the_municipalitys_own_key_reads_its_peers_and_feed(harness) -> None:
    await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    mainz = await harness.onboard(MAINZ, "Mainz")
    for path in ("peers", "feed"):
        url = f"/v1/municipalities/{KAISERSLAUTERN}/{path}"
        assert (await harness.client.get(url)).status_code == 401
        wrong = {"Authorization": "Bearer not-a-key"}
        assert (await harness.client.get(url, headers=wrong)).status_code == 401
        assert (await harness.client.get(url, headers=mainz)).status_code == 403
    invalid = await harness.client.get("/v1/municipalities/123/peers", headers=mainz)
    assert invalid.status_code == 422


async def test_unscored_municipality_sees_an_empty_view_and_health_is_served(harness) -> None:
    headers = await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    view = await harness.client.get(f"/v1/municipalities/{KAISERSLAUTERN}/peers", headers=headers)
    assert view.json() == {
        "ags": KAISERSLAUTERN,
        "scored": False,
        "deficits": [],
        "strengths": [],
        "suggestions": [],
    }
    assert (await harness.client.get("/healthz")).json() == {"status": "ok", "service": "exchange"}
    assert "wok_events_consumed" in (await harness.client.get("/metrics")).text
