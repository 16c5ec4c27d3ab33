from __future__ import annotations

from pydantic import Field, SecretStr

from wok_runtime.settings import WokSettings


class NotificationSettings(WokSettings):
    notification_port: int = 8003
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_starttls: bool = Field(default=False, description="Upgrade a plain connection (587)")
    smtp_use_tls: bool = Field(default=False, description="TLS from the first byte (465)")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_s: float = 30.0
    mail_from: str = "Weltoffene Kommune <noreply@weltoffene-kommune.example>"
    registration_url: str = Field(
        default="http://127.0.0.1:8001",
        description="Base URL of the registration service, asked for contact details",
    )
    registration_timeout_s: float = 10.0
    public_base_url: str = Field(
        default="http://127.0.0.1:8001",
        description="Base URL of the public registration API, for links in e-mails",
    )
    delivery_lease_s: float = Field(
        default=120.0,
        description="How long a claimed delivery is reserved for its sender before another may"
        " take it over (a sender that crashed mid-send)",
    )
