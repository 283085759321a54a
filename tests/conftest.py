"""Hypothesis profiles for this repo's tests: "ci" (derandomized, no deadline) when the
``CI`` env var is set, else "dev". Select one explicitly with ``--hypothesis-profile``."""

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.register_profile("ci", derandomize=True, max_examples=50, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=25, **_COMMON)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
