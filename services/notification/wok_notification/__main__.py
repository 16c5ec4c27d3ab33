from wok_notification.app import build_app
from wok_notification.settings import NotificationSettings
from wok_runtime.logging import configure_logging
from wok_runtime.service import serve


def main() -> None:
    settings = NotificationSettings()
    configure_logging(service="notification", level=settings.log_level)
    serve(build_app(settings), host=settings.host, port=settings.notification_port)


if __name__ == "__main__":
    main()
