from wok_assessment.app import build_app
from wok_assessment.settings import AssessmentSettings
from wok_runtime.logging import configure_logging
from wok_runtime.service import serve


def main() -> None:
    settings = AssessmentSettings()
    configure_logging(service="assessment", level=settings.log_level)
    serve(build_app(settings), host=settings.host, port=settings.assessment_port)


if __name__ == "__main__":
    main()
