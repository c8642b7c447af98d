"""Shared fixtures. Tests never need ../shared: resources live in tests/resources (see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest

RESOURCES = Path(__file__).parent / "resources"


@pytest.fixture
def resources() -> Path:
    return RESOURCES
