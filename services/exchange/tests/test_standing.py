"""The standing (profiles, pairs, names) is computed once and reused: this process's own
changes show at once, another instance's after at most STANDING_TTL_S."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.exchange.tests.conftest import scored
from wok_contracts import MunicipalityRegistered, new_envelope
from wok_exchange.adapters import InMemoryExchangeRepository
from wok_exchange.domain import Scoring
from wok_exchange.handlers import STANDING_TTL_S, ExchangeHandlers

KAISERSLAUTERN = "07312000"
MAINZ = "07315000"
T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def envelope(data: object, ags: str, *, at: datetime = T0) -> object:
    made = new_envelope(data, source="/test", municipality=ags)  # type: ignore[arg-type]
    made.time = at
    return made


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_own_changes_show_at_once_and_another_instances_after_the_ttl() -> None:
    repository = InMemoryExchangeRepository()
    clock = Clock()
    handlers = ExchangeHandlers(repository=repository, events_stored=lambda: None, clock=clock)
    await handlers.remember_municipality(
        envelope(MunicipalityRegistered(ags=MAINZ, name="Mainz", kind="city", land="07"), MAINZ)
    )
    await handlers.record_scoring(envelope(scored(KAISERSLAUTERN, deficits=(3,)), KAISERSLAUTERN))
    assert (await handlers.standing()).suggestions == []
    assert (await handlers.standing()).names == {MAINZ: "Mainz"}

    # this process's scoring: the pair at once
    await handlers.record_scoring(envelope(scored(MAINZ, strengths=(3,)), MAINZ))
    pairs = [(s.field, s.needing, s.offering) for s in (await handlers.standing()).suggestions]
    assert pairs == [(3, KAISERSLAUTERN, MAINZ)]

    # another instance's writes (straight into the storage): seen once the TTL has passed
    await repository.add_scoring(
        Scoring(
            self_check_id="sc-other",
            ags=MAINZ,
            sequence=2,
            scores={field: 50.0 for field in range(1, 8)},
            strengths=frozenset(),
            deficits=frozenset(),
        )
    )
    await repository.remember_municipality(
        ags=MAINZ, name="Landeshauptstadt Mainz", as_of=T0 + timedelta(days=1)
    )
    clock.now += STANDING_TTL_S / 2
    assert len((await handlers.standing()).suggestions) == 1
    clock.now += STANDING_TTL_S
    standing = await handlers.standing()
    assert standing.suggestions == []
    assert standing.names[MAINZ] == "Landeshauptstadt Mainz"
