"""Hypothesis profiles for agent test suites: ``ci_profile()`` in a ``conftest.py``."""

from __future__ import annotations

import os


def ci_profile(*, max_examples: int = 50, dev_max_examples: int = 25, load: bool = True) -> str:
    """Register hypothesis profiles ``"ci"`` (derandomized: the same examples every run; no
    deadline, since agent calls vary in speed) and ``"dev"`` (random, fewer examples), and
    load ``"ci"`` when the ``CI`` environment variable is set, else ``"dev"``.

    Returns the name of the profile it loaded (or would load, with ``load=False``)."""
    from hypothesis import HealthCheck, settings

    suppress = [HealthCheck.too_slow, HealthCheck.data_too_large,
                HealthCheck.function_scoped_fixture]  # fmt: skip
    settings.register_profile(
        "ci", derandomize=True, max_examples=max_examples, print_blob=True, deadline=None,
        suppress_health_check=suppress,
    )  # fmt: skip
    settings.register_profile(
        "dev", max_examples=dev_max_examples, deadline=None, suppress_health_check=suppress
    )
    name = "ci" if os.environ.get("CI") else "dev"
    if load:
        settings.load_profile(name)
    return name
