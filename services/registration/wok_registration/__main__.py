from wok_registration.app import build_app
from wok_registration.settings import RegistrationSettings
from wok_runtime.logging import configure_logging
from wok_runtime.service import serve


def main() -> None:
    settings = RegistrationSettings()
    configure_logging(service="registration", level=settings.log_level)
    serve(build_app(settings), host=settings.host, port=settings.registration_port)


if __name__ == "__main__":
    main()
