"""Reporting fetches less often than the runtime's default: fewer, larger batches for the
embedded broker and database to serve."""

from __future__ import annotations

import os

import pytest

from wok_reporting.settings import ReportingSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("WOK_"):
            monkeypatch.delenv(name)


def test_its_fetches_wait_200_ms_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ReportingSettings().kafka_fetch_max_wait_ms == 200

    monkeypatch.setenv("WOK_KAFKA_FETCH_MAX_WAIT_MS", "50")
    assert ReportingSettings().kafka_fetch_max_wait_ms == 50
