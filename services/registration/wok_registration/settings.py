from __future__ import annotations

from pydantic import Field, SecretStr

from wok_runtime.settings import WokSettings


class RegistrationSettings(WokSettings):
    registration_port: int = 8001
    admin_key: SecretStr = Field(default=SecretStr(""), description="Onboards municipalities")
    federal_key: SecretStr = Field(
        default=SecretStr(""), description="The federal office's key: refused on every write here"
    )
    registration_link_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Signs the cancellation and erasure links; derived from WOK_SERVICE_KEY "
        "when unset (set it explicitly to rotate the service key without voiding links)",
    )
    public_base_url: str = Field(
        default="",
        description="Where residents reach this service (links in e-mails); "
        "http://<host>:<registration_port> when unset",
    )
    erasure_link_ttl_days: int = Field(default=365, ge=1)
    online_link_release_hours: float = Field(
        default=24.0, ge=0, description="How long before the start the online link is released"
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    def public_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.registration_port}"
