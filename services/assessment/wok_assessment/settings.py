from __future__ import annotations

from pydantic import Field

from wok_assessment.domain.workshop import DEFAULT_MIN_GROUP_SIZE
from wok_runtime.settings import WokSettings


class AssessmentSettings(WokSettings):
    # Its consumer ignores most events it reads and is off the paths the freshness targets
    # cover: fewer, larger fetches cost the embedded broker less, under load and idle.
    kafka_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        description="How long its consumer's fetch may wait for records (the common default is "
        "50 ms): each fetch costs the embedded broker CPU. On tansu it is this hop's delay, so a "
        "new or rotated municipality key takes up to this long to reach the service",
    )
    assessment_port: int = 8002
    workshop_min_group_size: int = Field(
        default=DEFAULT_MIN_GROUP_SIZE,
        ge=2,
        description="A stakeholder group's ratings of a field in a workshop are shown as a mean "
        "only from this many on (fewer: 'too few ratings'), so no one's rating is revealed",
    )
