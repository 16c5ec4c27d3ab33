"""The settings of the exchange service: the common `WOK_*` ones plus its own."""

from pydantic import Field

from wok_runtime.settings import WokSettings


class ExchangeSettings(WokSettings):
    # Its consumer ignores most events it reads and is off the paths the freshness targets
    # cover: fewer, larger fetches cost the embedded broker less, under load and idle.
    kafka_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        description="How long its consumer's fetch may wait for records (the common default is "
        "50 ms): each fetch costs the embedded broker CPU. On tansu it is this hop's delay, so a "
        "new or rotated municipality key takes up to this long to reach the service",
    )
    exchange_port: int = 8005
