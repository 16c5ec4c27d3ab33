from __future__ import annotations

from pydantic import Field

from wok_assessment.domain.workshop import DEFAULT_MIN_GROUP_SIZE
from wok_runtime.settings import BystanderConsumerSettings


class AssessmentSettings(BystanderConsumerSettings):
    assessment_port: int = 8002
    workshop_min_group_size: int = Field(
        default=DEFAULT_MIN_GROUP_SIZE,
        ge=2,
        description="A stakeholder group's ratings of a field in a workshop are shown as a mean "
        "only from this many on (fewer: 'too few ratings'), so no one's rating is revealed",
    )
