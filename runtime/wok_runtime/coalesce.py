"""Requests made side by side by many handlers, answered in one round trip.

Handlers of a Kafka batch working side by side, or concurrent HTTP requests, each ask for
one thing at a time (a contact, a write): notification's lookups and confirmation writes,
registration's contact inserts. A `Coalescer` collects what is asked while a
round trip is under way (or within one turn of the event loop) and sends it as the next
round trip, up to `max_batch` items in one and at most `max_in_flight` at once: under load
the rounds grow, alone a request goes out on the next turn of the loop. Each caller gets
its own item's answer, or the error of its round (every waiter of a failed round gets it),
and returns only once its round is over: what a handler does next still follows what it
asked for, exactly as with a round trip of its own.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# One answer per item, in the items' order: a result, or the error of that item alone
Round = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    def __init__(self, run: Round[T, R], *, max_batch: int = 500, max_in_flight: int = 1) -> None:
        self._run = run
        self._max_batch = max(1, max_batch)
        self._max_in_flight = max(1, max_in_flight)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._rounds: set[asyncio.Task[None]] = set()
        self.round_sizes: list[int] = []  # for tests and benchmarks: the last rounds' sizes

    async def submit(self, item: T) -> R:
        return await self._enqueue(item)

    async def submit_all(self, items: Sequence[T]) -> list[R]:
        """Several items at once (in the same round if there is room): their answers, or
        the first error among them once all are answered."""
        futures = [self._enqueue(item) for item in items]
        answers: list[R] = []
        failure: BaseException | None = None
        for future in futures:
            try:
                answers.append(await future)
            except Exception as error:  # the others are still awaited
                failure = failure or error
        if failure is not None:
            raise failure
        return answers

    def _enqueue(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): nothing carries over
            self._loop, self._waiting, self._in_flight, self._scheduled = loop, [], 0, False
            self._rounds = set()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        self._schedule()
        return future

    def _schedule(self) -> None:
        if not self._scheduled and self._waiting and self._in_flight < self._max_in_flight:
            assert self._loop is not None
            self._scheduled = True
            self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._scheduled = False
        assert self._loop is not None
        while self._waiting and self._in_flight < self._max_in_flight:
            batch = [pair for pair in self._waiting[: self._max_batch] if not pair[1].done()]
            del self._waiting[: self._max_batch]
            if not batch:
                continue
            self._in_flight += 1
            task = self._loop.create_task(self._round(batch))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)

    async def _round(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            if len(self.round_sizes) >= 1000:
                del self.round_sizes[:500]
            self.round_sizes.append(len(batch))
            try:
                answers: Sequence[R | BaseException] = await self._run([item for item, _ in batch])
                if len(answers) != len(batch):
                    raise RuntimeError(f"{len(answers)} answers to {len(batch)} requests")
            except BaseException as error:  # every waiter gets it
                answers = [error] * len(batch)
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue  # the caller gave up waiting
                if isinstance(answer, asyncio.CancelledError):
                    future.cancel()
                elif isinstance(answer, BaseException):
                    future.set_exception(_own(answer) if len(batch) > 1 else answer)
                else:
                    future.set_result(answer)
        finally:
            self._in_flight -= 1
            self._schedule()


def _own(error: BaseException) -> BaseException:
    """A copy of a round's error for one waiter (each raises it with its own traceback),
    caused by the original."""
    try:
        mine = copy.copy(error)
    except Exception:  # an exception that cannot be copied is shared
        return error
    mine.__cause__ = error.__cause__ or error
    return mine
