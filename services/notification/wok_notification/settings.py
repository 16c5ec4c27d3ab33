from __future__ import annotations

import os
from pathlib import Path

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
    smtp_connections: int = Field(
        default=16,
        description="SMTP connections kept open and reused for sending, side by side",
    )
    notification_concurrency: int = Field(
        default=96,
        description="Messages handled side by side (different dialogue events and people;"
        " one person's and one event's messages stay in order); their lookups and writes"
        " share round trips, so more side by side costs less CPU per mail",
    )
    notification_batch_records: int = Field(
        default=500, description="Most messages taken from Kafka and committed as one batch"
    )
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
    notification_template_dirs: str = Field(
        default="",
        description="Extra template folders, separated by the OS path separator (':' on Linux),"
        " searched before the built-in ones: a folder <language>/messages.j2 in them adds or"
        " rewords a language (see wok_notification/TEMPLATES.md)",
    )
    reminder_before_s: float = Field(
        default=24 * 3600.0, description="How long before the start the reminder goes out"
    )
    access_release_before_s: float = Field(
        default=24 * 3600.0,
        description="How long before the start the online link goes out (online, hybrid events)",
    )
    scheduler_interval_s: float = Field(
        default=5.0, description="How often due reminders and access mails are looked for"
    )
    digest_window_s: float = Field(
        default=3600.0,
        description="One message per person (address) per window: a further message that is"
        " not a confirmation (of registration, promotion or erasure) is held and sent with the"
        " others of the window as one digest at its end; 0 turns the limit off",
    )
    taskforce_reminder_before_s: float = Field(
        default=48 * 3600.0,
        description="How long before an event's registration deadline taskforce members who"
        " have not registered are reminded",
    )
    assessment_url: str = Field(
        default="http://127.0.0.1:8002",
        description="Base URL of the assessment service, for the field report link in staff mails",
    )
    report_link_valid_days: float = Field(
        default=30,
        ge=0,
        description="How long the field report link in a 'self-check scored' mail opens the"
        " report without the municipality's key (signed with a key derived from the service"
        " key); 0 sends a plain link that needs the key",
    )
    smtp_give_up_attempts: int = Field(
        default=8, description="Failed SMTP attempts of one mail before it may be given up"
    )
    smtp_give_up_after_s: float = Field(
        default=900.0,
        description="How long the mail server must have been away before a mail is given up"
        " (NotificationFailed, and the triggering event to the dead-letter topic)",
    )

    def template_dirs(self) -> list[Path]:
        return [Path(part) for part in self.notification_template_dirs.split(os.pathsep) if part]
