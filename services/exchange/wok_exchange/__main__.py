from wok_exchange.app import build_app
from wok_exchange.settings import ExchangeSettings
from wok_runtime.logging import configure_logging
from wok_runtime.service import serve


def main() -> None:
    settings = ExchangeSettings()
    configure_logging(service="exchange", level=settings.log_level)
    serve(build_app(settings), host=settings.host, port=settings.exchange_port)


if __name__ == "__main__":
    main()
