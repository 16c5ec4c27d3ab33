"""The settings of the exchange service: the common `WOK_*` ones plus its own."""

from wok_runtime.settings import BystanderConsumerSettings


class ExchangeSettings(BystanderConsumerSettings):
    exchange_port: int = 8005
