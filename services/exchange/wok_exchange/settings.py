"""The settings of the exchange service: the common `WOK_*` ones plus its own."""

from wok_runtime.settings import WokSettings


class ExchangeSettings(WokSettings):
    exchange_port: int = 8005
