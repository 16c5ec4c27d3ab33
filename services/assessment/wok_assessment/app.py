"""Composition root of the assessment service."""

from __future__ import annotations

from fastapi import FastAPI

from wok_assessment.adapters.repository import MongoMunicipalityDirectory, MunicipalityDirectory
from wok_assessment.entrypoints.http import build_router
from wok_assessment.handlers import AssessmentHandlers
from wok_assessment.settings import AssessmentSettings
from wok_contracts import MunicipalityRegistered
from wok_contracts.topics import REGISTRATION_EVENTS
from wok_runtime.consumer import ProcessedStore
from wok_runtime.service import ServiceRuntime

CONSUMER_GROUP = "assessment"


def build_app(
    settings: AssessmentSettings,
    *,
    runtime: ServiceRuntime | None = None,
    directory: MunicipalityDirectory | None = None,
    processed: ProcessedStore | None = None,
) -> FastAPI:
    runtime = runtime or ServiceRuntime(name="assessment", settings=settings)
    handlers = AssessmentHandlers(
        directory=directory or MongoMunicipalityDirectory(runtime.database)
    )
    runtime.consume(
        group=CONSUMER_GROUP,
        topics=[REGISTRATION_EVENTS],
        handlers={MunicipalityRegistered: handlers.remember_municipality},
        processed=processed,
    )
    return runtime.http_app(
        title="Weltoffene Kommune: assessment", routers=[build_router(handlers)]
    )
