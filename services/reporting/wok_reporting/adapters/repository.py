"""Where projections and published snapshots are kept: the Protocols and in-memory versions."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from wok_contracts import AggregateSnapshot
from wok_reporting.domain import Projection, ProjectionRow, supersedes


class ProjectionRepository(Protocol):
    async def save(self, row: ProjectionRow) -> bool:
        """Upsert the row by its entity id; False if a newer event about it is already stored."""
        ...

    async def load(self) -> Projection: ...


@dataclass(frozen=True)
class StoredSnapshot:
    scope_id: str
    snapshot: AggregateSnapshot
    published: bool


class SnapshotRepository(Protocol):
    async def latest(self, scope_id: str) -> StoredSnapshot | None: ...

    async def save(self, stored: StoredSnapshot, *, previous_sequence: int | None) -> bool:
        """Store a new snapshot of a scope if the stored one still has `previous_sequence`
        (None: there is none yet); False if another writer got there first."""
        ...

    async def mark_published(self, scope_id: str, sequence: int) -> None: ...


class InMemoryProjectionRepository:
    def __init__(self) -> None:
        self.rows: dict[tuple[type, str], ProjectionRow] = {}

    async def save(self, row: ProjectionRow) -> bool:
        key = (type(row), row.entity_id)
        if not supersedes(row, self.rows.get(key)):
            return False
        self.rows[key] = row
        return True

    async def load(self) -> Projection:
        return Projection.of(self.rows.values())


class InMemorySnapshotRepository:
    def __init__(self) -> None:
        self.snapshots: dict[str, StoredSnapshot] = {}

    async def latest(self, scope_id: str) -> StoredSnapshot | None:
        return self.snapshots.get(scope_id)

    async def save(self, stored: StoredSnapshot, *, previous_sequence: int | None) -> bool:
        current = self.snapshots.get(stored.scope_id)
        current_sequence = None if current is None else current.snapshot.sequence
        if current_sequence != previous_sequence:
            return False
        self.snapshots[stored.scope_id] = stored
        return True

    async def mark_published(self, scope_id: str, sequence: int) -> None:
        current = self.snapshots.get(scope_id)
        if current is not None and current.snapshot.sequence == sequence:
            self.snapshots[scope_id] = replace(current, published=True)
