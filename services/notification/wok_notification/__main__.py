import gc

from wok_notification.app import build_app
from wok_notification.settings import NotificationSettings
from wok_runtime.logging import configure_logging
from wok_runtime.service import serve

# Allocations between two collections of the youngest generation (the default is 700): a
# mail makes thousands of short-lived objects, most freed before a collection comes anyway
YOUNG_COLLECTION_THRESHOLD = 10_000


def tune_garbage_collection() -> None:
    """What start-up built (modules, the app, its clients) lives as long as the process: it
    is set aside (`gc.freeze`) so that no collection looks through it again, and the young
    generation is collected less often. Measured on the notification bench: the collector's
    CPU per confirmation from about 0.05 ms to 0.015 ms."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def main() -> None:
    settings = NotificationSettings()
    configure_logging(service="notification", level=settings.log_level)
    app = build_app(settings)
    tune_garbage_collection()
    serve(app, host=settings.host, port=settings.notification_port)


if __name__ == "__main__":
    main()
