"""Shared test set-up: Hypothesis profiles and small fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ("pytester",)  # tests/crashtest/test_plugin.py runs pytest inside pytest

# "default": fast enough for every run; "ci"/"long": many more examples, for a nightly run
# (HYPOTHESIS_PROFILE=long pytest).
settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def qdir(tmp_path: Path) -> str:
    """A path for a new queue directory (not yet created)."""
    return str(tmp_path / "q")
