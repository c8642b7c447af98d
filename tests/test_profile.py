"""ocr.profile: the alignment method's names."""

import pytest
from pydantic import ValidationError

from smartmeter.ocr.profile import Alignment


def test_auto_is_the_default_and_the_older_name_orb_reads_as_auto() -> None:
    """'orb' always ran phase correlation, then ORB, then a template match: the name said less than it did."""
    assert Alignment().method == "auto"
    assert Alignment(method="orb").method == "auto"  # type: ignore[arg-type]
    assert Alignment(method="template").method == "template"
    with pytest.raises(ValidationError):
        Alignment(method="sift")  # type: ignore[arg-type]
