"""docs/reliability.md is what tests/fault_matrix.py makes of the tests' fault markers: the table cannot drift."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from fault_matrix import FAULTS, PAGE, ROOT, collect, main, render


def test_reliability_page_is_up_to_date_with_the_markers() -> None:
    marks = collect()
    assert PAGE.read_text(encoding="utf-8") == render(marks), \
        "docs/reliability.md is out of date: run .venv/bin/python tests/fault_matrix.py"
    assert main(["--check"]) == 0
    assert {m.test.split("::")[0] for m in marks} >= {"tests/test_backup.py", "tests/test_image_io.py"}


def test_every_marked_test_exists_and_the_marker_is_registered() -> None:
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("fault(") for m in markers)
    for m in collect():
        path, name = m.test.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(encoding="utf-8"), m


def test_rows_untested_classes_and_bad_markers(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text(
        'import pytest\n\n\n@pytest.mark.fault("disk full", proves="photos lost: 0 | none")\n'
        '@pytest.mark.parametrize("x", [1])\ndef test_full(x: int) -> None:\n    pass\n\n\n'
        'def test_plain() -> None:\n    pass\n')
    marks = collect(tmp_path)
    assert [(m.fault, m.test) for m in marks] == [("disk full", "tests/test_a.py::test_full")]
    page = render(marks)
    assert "| disk full | spool, image store, backup archive | `tests/test_a.py::test_full` | photos lost: 0 / none |" \
        in page
    assert page.count("**not yet tested**") == len(FAULTS) - 1
    (tmp_path / "test_b.py").write_text('import pytest\n\n\n@pytest.mark.fault("gremlins", proves="x")\n'
                                        'def test_g() -> None:\n    pass\n')
    with pytest.raises(ValueError, match="gremlins"):
        render(collect(tmp_path))
    (tmp_path / "test_b.py").write_text('import pytest\nP = "x"\n\n\n@pytest.mark.fault("disk full", proves=P)\n'
                                        'def test_g() -> None:\n    pass\n')
    with pytest.raises(ValueError, match="test_b.py:5: write"):
        collect(tmp_path)
