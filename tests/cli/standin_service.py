"""A stand-in for a platform service, run by the stack tests as `python -m standin_service`.

It answers `/readyz` once it can ping the stack's MongoDB (like the real services, which
check their dependencies), and shows which stack settings it was given.
"""

import os

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pymongo import AsyncMongoClient

SETTINGS_SHOWN = (
    "WOK_KAFKA_BOOTSTRAP",
    "WOK_MONGODB_URI",
    "WOK_SMTP_PORT",
    "WOK_REGISTRATION_URL",
    "WOK_KAFKA_SESSION_TIMEOUT_MS",
    "WOK_TOPIC_PREFIX",
)


def build_app() -> FastAPI:
    app = FastAPI()
    never_ready = os.environ.get("STANDIN_NEVER_READY") == "1"

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if never_ready:
            return JSONResponse({"status": "not ready", "checks": {"kafka": "down"}}, 503)
        client: AsyncMongoClient = AsyncMongoClient(
            os.environ["WOK_MONGODB_URI"], serverSelectionTimeoutMS=1000
        )
        try:
            await client.admin.command("ping")
        finally:
            await client.close()
        return JSONResponse({"status": "ready"})

    @app.get("/settings")
    async def settings() -> dict[str, str]:
        return {name: os.environ.get(name, "") for name in SETTINGS_SHOWN}

    return app


if __name__ == "__main__":
    print("stand-in service starting", flush=True)
    uvicorn.run(
        build_app(), host="127.0.0.1", port=int(os.environ["STANDIN_PORT"]), log_level="warning"
    )
