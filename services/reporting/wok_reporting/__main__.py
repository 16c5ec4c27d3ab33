"""`python -m wok_reporting`: run the reporting service."""

from __future__ import annotations

from wok_reporting.app import SERVICE, build_app
from wok_reporting.settings import ReportingSettings
from wok_runtime.logging import configure_logging
from wok_runtime.service import serve


def main() -> None:
    settings = ReportingSettings()
    configure_logging(service=SERVICE, level=settings.log_level)
    serve(build_app(settings), host=settings.host, port=settings.reporting_port)


if __name__ == "__main__":
    main()
