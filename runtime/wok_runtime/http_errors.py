"""Error answers every service shares: `{"detail": ...}` documented once, domain errors
mapped to their 4xx once per app instead of in each route."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse


def problem(description: str) -> dict[str, Any]:
    """An OpenAPI response `{"detail": "..."}`, JSON even on routes that answer HTML."""
    schema = {
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def install_error_handlers(
    app: FastAPI,
    *,
    errors: Iterable[type[Exception]],
    to_http: Callable[[Exception], HTTPException],
) -> None:
    """Each of `errors`, wherever a route raises it, answers what `to_http` makes of it."""

    async def answer(_: Request, error: Exception) -> JSONResponse:
        failure = to_http(error)
        return JSONResponse(
            {"detail": failure.detail}, status_code=failure.status_code, headers=failure.headers
        )

    for error_type in errors:
        app.add_exception_handler(error_type, answer)
