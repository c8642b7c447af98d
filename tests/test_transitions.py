"""The transition case table (tests/resources/transitions/cases.yaml): what a careful person reads, with sources.

Every case is raw model output from another reader's bug tracker, the issue that asked for it, or the
simulator's renders read by the CNN. A case expects a reading, or no reading with the two plausible readings
named (``candidates``), or no reading at all (positions that do not fit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from smartmeter.errors import ConfigError
from smartmeter.ocr.assemble import assemble
from smartmeter.ocr.profile import Coupling, Profile

CASES_FILE = Path(__file__).parent / "resources" / "transitions" / "cases.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
KEYS = {"id", "digits", "pointers", "decimals", "coupling", "last_resting", "expect", "candidates", "truth",
        "source", "reasoning"}


def run_case(case: dict[str, Any]) -> Any:
    coupling = Coupling.model_validate(case.get("coupling", {}))
    return assemble(case["digits"], case.get("pointers", []), case.get("decimals"), coupling=coupling,
                    last_resting=case.get("last_resting"))


def test_every_case_has_a_source_and_its_reasoning() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)) and len(CASES) >= 30
    for case in CASES:
        assert set(case) <= KEYS, case["id"]
        assert str(case.get("source", "")).strip() and len(str(case.get("reasoning", ""))) > 20, case["id"]
        assert ("candidates" not in case) or case["expect"] is None, case["id"]
        assert ("truth" not in case) or case["truth"] in case["candidates"], case["id"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    result = run_case(case)
    if case["expect"] is not None:
        assert result.reading == case["expect"], result.error
        assert result.error is None and result.candidates == []
        assert result.value == pytest.approx(float(case["expect"]))
        return
    assert result.reading is None and result.value is None and result.error
    if "candidates" in case:  # both readings are named, in the error and as candidates
        assert sorted(result.candidates) == sorted(case["candidates"])
        assert all(c in result.error for c in case["candidates"])
    else:
        assert result.candidates == [] and "does not fit" in result.error


def test_a_resting_drum_is_likelier_than_one_caught_at_the_end_of_its_roll() -> None:
    # no appearance known: both readings, the resting digit first (a roll-only drum rests 90 % of the time)
    assert assemble([1.0, 8.0, 3.0, 4.9]).candidates == ["1835", "1834"]


def test_the_profile_carries_the_coupling() -> None:
    profile = Profile.model_validate({"digits": [[0, 0, 10, 20]], "coupling": {"last_drum": "continuous"}})
    assert profile.coupling.last_drum == "continuous" and profile.coupling.drum == "roll"
    assert profile.coupling.pointer == "continuous" and profile.coupling.rightmost == "auto"
    with pytest.raises(ValueError, match="coupling"):
        Profile.model_validate({"digits": [[0, 0, 10, 20]], "coupling": {"drum": "sometimes"}})
    with pytest.raises(ValueError, match="coupling"):
        Profile.model_validate({"digits": [[0, 0, 10, 20]], "coupling": {"drums": "roll"}})


def test_a_profile_file_with_a_bad_coupling_is_a_config_error(tmp_path: Path) -> None:
    from smartmeter.ocr.profile import load_profile

    path = tmp_path / "meter.yaml"
    path.write_text("digits: [[0, 0, 10, 20]]\ncoupling: {rightmost: roll}\n", encoding="utf-8")
    assert load_profile(path).coupling.rightmost == "roll"
    path.write_text("digits: [[0, 0, 10, 20]]\ncoupling: {rightmost: sideways}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="rightmost"):
        load_profile(path)


@pytest.mark.parametrize(("coupling", "expected"), [
    ({"drum": "roll"}, None),  # as an odometer: 3.9 beside a resting 9 is a 4, and then 1.39 fits no digit
    ({"drum": "continuous", "rightmost": "continuous"}, "139"),  # a creeping counter at 139.0
])
def test_drum_coupling_decides_a_creeping_counter(coupling: dict[str, str], expected: str | None) -> None:
    result = assemble([1.39, 3.9, 9.0], coupling=Coupling.model_validate(coupling))
    assert result.reading == expected
