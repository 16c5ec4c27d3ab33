from __future__ import annotations

from pydantic import Field, SecretStr

from wok_runtime.settings import WokSettings


class ReportingSettings(WokSettings):
    reporting_port: int = 8004
    federal_key: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer key of the federal program office; reads aggregates only. "
        "Unset means nobody can read them (fail closed).",
    )
    snapshot_interval_s: float = Field(
        default=0.2,
        gt=0,
        description="Changes within this interval are coalesced into one snapshot per scope",
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=200,
        ge=1,
        description="How long reporting's fetch may wait for records (the runtime's default is "
        "50). On the embedded stack (tansu answers a waiting fetch when this runs out) a batch "
        "then holds what arrived in it: fewer, larger batches, each one stored with one "
        "write, for at most this much more delay before the aggregates",
    )
    batch_max_records: int = Field(
        default=2000,
        gt=0,
        description="At most this many records are consumed and stored as one batch",
    )
