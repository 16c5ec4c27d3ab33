from wok_runtime.settings import WokSettings


class AssessmentSettings(WokSettings):
    assessment_port: int = 8002
