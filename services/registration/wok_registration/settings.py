from __future__ import annotations

from pydantic import Field, SecretStr

from wok_runtime.settings import WokSettings


class RegistrationSettings(WokSettings):
    registration_port: int = 8001
    admin_key: SecretStr = Field(default=SecretStr(""), description="Onboards municipalities")
