"""Publishing the aggregates: compute, protect, number, store, then put on the exchange stream.

A snapshot is stored (with its sequence, unpublished) before it goes on the topic and is
marked published after; a crash in between publishes the same snapshot again on the next
round instead of skipping it. Subscribers keep the highest sequence per key. A round's
snapshots are stored with one write, go out in one hand-over to the producer (batched,
acknowledged together) and are marked with one write.

A round costs what changed, not what is stored: the figures are kept up to date from the
facts stored since the last round (`Tally`, fed by `ProjectionRepository.facts_since`),
disclosure control runs over all scopes together (a complement may fall in another
scope), and only scopes whose protected figures differ from those of their stored
snapshot are compared, stored and sent (the stored snapshots are read once, then kept).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from wok_contracts import (
    CONTENT_TYPE,
    AggregateScope,
    AggregateSnapshot,
    new_envelope,
)
from wok_contracts.topics import EXCHANGE_AGGREGATES
from wok_reporting.adapters.repository import (
    ProjectionRepository,
    SnapshotRepository,
    StoredSnapshot,
)
from wok_reporting.disclosure import DAILY_PREFIX, Disclosed, disclose
from wok_reporting.domain import PROGRAM, ScopeFigures, as_utc
from wok_reporting.tally import Tally
from wok_runtime.logging import get_logger
from wok_runtime.outbox import Publisher

SOURCE = "/wok/reporting"
THREAD_FACTS = 10_000  # more new facts than this are aggregated beside the event loop
# A table with more cells than this is protected beside the event loop (about 2 µs a cell:
# a smaller one takes less time than handing it to a thread and back costs).
THREAD_CELLS = 5_000

log = get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def snapshot(
    figures: ScopeFigures, disclosed: Disclosed, *, sequence: int, generated_at: datetime
) -> AggregateSnapshot:
    cells = disclosed.metrics
    return AggregateSnapshot(
        scope=figures.scope,
        scope_key=figures.key,
        sequence=sequence,
        as_of=figures.as_of,
        generated_at=generated_at,
        metrics={name: cells[name] for name in figures.metrics},
        suppressed=list(disclosed.suppressed),
        daily_registrations={
            name.removeprefix(DAILY_PREFIX): value
            for name, value in cells.items()
            if name.startswith(DAILY_PREFIX)
        },
        statistics=dict(disclosed.statistics),
    )


Basis = tuple[ScopeFigures, Disclosed]
"""The protected figures a scope's snapshot was made from."""


@dataclass(frozen=True)
class Outgoing:
    """A scope's snapshot stored unpublished in this round, to be sent and marked."""

    scope: str
    snapshot: AggregateSnapshot
    basis: Basis


@dataclass(frozen=True)
class SnapshotMessage:
    """A snapshot as the publisher's `send_all` takes it."""

    topic: str
    key: str
    value: bytes
    headers: dict[str, str]


def same_content(a: AggregateSnapshot, b: AggregateSnapshot) -> bool:
    """Whether two snapshots tell the same (sequence and generation time aside)."""
    return (
        a.scope == b.scope
        and a.scope_key == b.scope_key
        and a.metrics == b.metrics
        and a.daily_registrations == b.daily_registrations
        and a.statistics == b.statistics
        and sorted(a.suppressed) == sorted(b.suppressed)
        and (a.as_of is None) == (b.as_of is None)
        and (a.as_of is None or b.as_of is None or as_utc(a.as_of) == as_utc(b.as_of))
    )


class SnapshotPublisher:
    def __init__(
        self,
        *,
        projections: ProjectionRepository,
        snapshots: SnapshotRepository,
        publisher: Publisher,
        interval_s: float,
        refresh_s: float = 5.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._projections = projections
        self._snapshots = snapshots
        self._publisher = publisher
        self._interval_s = interval_s
        self._refresh_s = refresh_s
        self._clock = clock
        self._changed = asyncio.Event()
        self._tally = Tally()
        self._cursor: object = None
        # What the stored snapshots are (read once, then kept as this publisher writes),
        # and the protected figures each scope's stored snapshot was made from or checked
        # against: a scope whose figures are those again needs no database operation.
        self._stored: dict[str, StoredSnapshot] | None = None
        self._basis: dict[str, Basis] = {}
        self._settled = False  # the last round ended with everything sent

    def changed(self) -> None:
        """Called after a projection changed; the next round publishes what it affects."""
        self._changed.set()

    async def current(self, scope_id: str) -> AggregateSnapshot | None:
        """The newest snapshot of a scope (already protected), as the stream carries it."""
        stored = await self._snapshots.latest(scope_id)
        return None if stored is None else stored.snapshot

    async def all_current(self) -> list[AggregateSnapshot]:
        """The newest snapshot of every scope: program, Länder, municipalities, fields."""
        order = {
            AggregateScope.PROGRAM: 0,
            AggregateScope.LAND: 1,
            AggregateScope.MUNICIPALITY: 2,
            AggregateScope.FIELD: 3,
        }
        found = [stored.snapshot for stored in await self._snapshots.all()]
        return sorted(found, key=lambda s: (order[s.scope], s.scope_key))

    async def publish_changes(self, *, force: Collection[str] = ()) -> list[AggregateSnapshot]:
        """Publish a new snapshot of every scope whose content changed, and of `force`d ones.

        All scopes are protected together: a cell withheld in one municipality may need a
        complement withheld in another, so one change can republish several scopes.
        """
        found = await self._projections.facts_since(self._cursor)
        if found.complete:
            self._tally = Tally()
        if len(found.facts) > THREAD_FACTS:  # the first round: every stored fact
            await asyncio.to_thread(self._tally.add, found.facts)
        else:
            self._tally.add(found.facts)
        self._cursor = found.cursor
        if self._settled and not found.facts and not found.complete and not force:
            return []  # nothing new since a round that sent everything
        self._settled = False
        if self._stored is None:
            self._stored = {stored.scope_id: stored for stored in await self._snapshots.all()}
        figures = self._tally.figures()
        # Pure computation over every scope (a second at a large table): in a thread, so
        # the event loop (the consumer of the same process) keeps going meanwhile.
        cells = sum(len(figure.metrics) + len(figure.daily) for figure in figures.values())
        if cells > THREAD_CELLS:
            disclosed = await asyncio.to_thread(disclose, figures)
        else:
            disclosed = disclose(figures)
        taken = False  # another publisher stored a scope: look again next round
        assert self._stored is not None
        stored_now = self._stored
        # Each changed scope's new snapshot (or one stored but never sent), in scope order.
        planned: list[tuple[str, AggregateSnapshot, Basis, bool]] = []  # ..., to be stored
        for scope, figure in figures.items():
            basis = (figure, disclosed[scope])
            stored = stored_now.get(scope)
            if (
                scope not in force
                and stored is not None
                and stored.published
                and self._basis.get(scope) == basis
            ):
                continue
            candidate = snapshot(
                figure,
                disclosed[scope],
                sequence=1 if stored is None else stored.snapshot.sequence + 1,
                generated_at=self._clock(),
            )
            unchanged = stored is not None and same_content(stored.snapshot, candidate)
            if unchanged and stored is not None and not stored.published:
                planned.append((scope, stored.snapshot, basis, False))  # send it as it is
            elif unchanged and scope not in force:
                self._basis[scope] = basis
            else:
                planned.append((scope, candidate, basis, True))
        # Stored unpublished first, all of them in one write (conditional on the sequence
        # each scope had, so two publishers cannot both store a sequence).
        saved = await self._snapshots.save_all(
            [
                (
                    StoredSnapshot(scope_id=scope, snapshot=candidate, published=False),
                    None if scope not in stored_now else stored_now[scope].snapshot.sequence,
                )
                for scope, candidate, _, store in planned
                if store
            ]
        )
        outgoing: list[Outgoing] = []
        for scope, candidate, basis, store in planned:
            if store and scope not in saved:
                log.info("snapshot taken by another publisher", scope=scope)
                taken = True
                self._basis.pop(scope, None)
                latest = await self._snapshots.latest(scope)
                if latest is None:
                    stored_now.pop(scope, None)
                else:
                    stored_now[scope] = latest
                continue
            if store:
                stored_now[scope] = StoredSnapshot(scope, candidate, published=False)
                self._basis.pop(scope, None)
                if disclosed[scope].suppressed:
                    log.info(
                        "disclosure control",
                        scope=scope,
                        sequence=candidate.sequence,
                        withheld_small=sorted(
                            set(disclosed[scope].suppressed) - set(disclosed[scope].complementary)
                        ),
                        withheld_complementary=sorted(disclosed[scope].complementary),
                    )
            outgoing.append(Outgoing(scope=scope, snapshot=candidate, basis=basis))
        # What was stored is sent (one hand-over for the round) and marked (one write);
        # a failure leaves the rest stored unpublished, sent as it is next round.
        sent, failure = await self._send_all(outgoing)
        if sent:
            await self._mark_published(sent)
        for done in sent:
            stored_now[done.scope] = StoredSnapshot(done.scope, done.snapshot, published=True)
            self._basis[done.scope] = done.basis
        if failure is not None:
            raise failure  # what was sent stays marked; the rest goes next round
        self._settled = not taken
        return [done.snapshot for done in sent]

    async def _send_all(
        self, outgoing: list[Outgoing]
    ) -> tuple[list[Outgoing], BaseException | None]:
        """Put the snapshots on the exchange stream: those acknowledged, and the first
        failure. With the runtime's publisher one hand-over for all (`send_all`: batched,
        acknowledged together); otherwise one publish each."""
        if not outgoing:
            return [], None
        messages = [self._message(item) for item in outgoing]
        send_all = getattr(self._publisher, "send_all", None)
        results: list[object]
        if send_all is None:
            results = []
            for message in messages:  # each scope on its own: one failing holds back none
                try:
                    await self._publisher.publish(
                        topic=message.topic,
                        key=message.key,
                        value=message.value,
                        headers=message.headers,
                    )
                except Exception as error:
                    results.append(error)
                else:
                    results.append(None)
        else:
            acks = await send_all(messages)
            results = await asyncio.gather(*acks, return_exceptions=True)
        sent: list[Outgoing] = []
        failure: BaseException | None = None
        for item, result in zip(outgoing, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
                continue
            sent.append(item)
            self._log_sent(item)
        return sent, failure

    async def _mark_published(self, sent: list[Outgoing]) -> None:
        await self._snapshots.mark_all_published(
            [(item.scope, item.snapshot.sequence) for item in sent]
        )

    @staticmethod
    def _message(item: Outgoing) -> SnapshotMessage:
        payload = item.snapshot
        is_municipality = payload.scope is AggregateScope.MUNICIPALITY
        envelope = new_envelope(
            payload,
            source=SOURCE,
            municipality=payload.scope_key if is_municipality else None,
            subject=item.scope,
        )
        return SnapshotMessage(
            topic=EXCHANGE_AGGREGATES,
            key=item.scope,
            value=envelope.to_json_bytes(),
            headers={"content-type": CONTENT_TYPE},
        )

    @staticmethod
    def _log_sent(item: Outgoing) -> None:
        log.info(
            "aggregate snapshot published",
            scope=item.scope,
            sequence=item.snapshot.sequence,
            suppressed=len(item.snapshot.suppressed),
        )

    async def run(self) -> None:
        """Publish the program snapshot now, then after changes, at most once per interval.

        Waiting one interval after the first change coalesces a burst of events into one
        snapshot per scope; unlike a quiet-period debounce it cannot starve under steady load.
        """
        await self._until_published(force=(PROGRAM,))
        while True:
            # Also now and then without a change signal: a rebuild (`wok reporting rebuild`)
            # replaces the projections from another process.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=self._refresh_s)
            await asyncio.sleep(self._interval_s)
            self._changed.clear()
            await self._until_published()

    async def _until_published(self, *, force: Collection[str] = ()) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.publish_changes(force=force)
                return
            except Exception as error:
                # Broker or database away: the projections are safe, publish when back.
                log.warning(
                    "snapshot publishing failed; retrying", attempt=attempt, error=repr(error)
                )
                await asyncio.sleep(min(5.0, self._interval_s * 2**attempt))
