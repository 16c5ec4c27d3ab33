"""The exchange consumer ignores most of what it reads: it fetches less often than the others."""

from __future__ import annotations

import os

import pytest

from wok_exchange.settings import ExchangeSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("WOK_"):
            monkeypatch.delenv(name)


def test_its_fetches_wait_half_a_second_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # each fetch costs the embedded broker CPU, and most of what it reads it ignores
    assert ExchangeSettings().kafka_fetch_max_wait_ms == 500

    monkeypatch.setenv("WOK_KAFKA_FETCH_MAX_WAIT_MS", "80")
    assert ExchangeSettings().kafka_fetch_max_wait_ms == 80
