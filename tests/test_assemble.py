"""The assembler: worked examples, couplings, ambiguity, and property tests on rendered counters.

The table of real-world transition cases (with their sources) is tests/test_transitions.py.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartmeter.errors import InputError
from smartmeter.ocr.assemble import DRUM_SNAP_FRACTION, Coupling, assemble

CREEPING = Coupling(rightmost="continuous")  # a counter whose last drum is its last (it creeps)


def test_a_resting_last_drum_read_a_little_low_is_not_stored_a_step_low() -> None:
    """Seen on a meter the model never saw (bench/unseen_streams.py, gasmeter-gmt): the tenths drum resting on 9
    (register 12442.906) read 8.941; flooring stored 12442.8, a whole step below the register. From x.92 on a
    creeping drum is the next digit, which is at most a tenth of a step high when the drum really is at x.92."""
    read = [9.952, 1.019, 1.941, 3.981, 3.973, 1.936, 8.941]
    assert assemble(read, decimals=1, coupling=CREEPING).reading == "012442.9"
    assert assemble([*read[:-1], 8.9], decimals=1, coupling=CREEPING).reading == "012442.8"


@pytest.mark.parametrize(("digits", "pointers", "expected"), [
    ([2.9, 7.0, 6.8], [9.7], "376.9"),  # 6.8 still rolling with its pointer at 9.7 -> 6; 2.9 next to 7.0 -> 3
    ([2.9, 0.3], [], "30"),  # right neighbour has passed 0: the 3 has arrived
    ([2.9, 9.8], [], "29"),  # right neighbour still rolling 9 -> 0: the 2 is still the 2
    ([9.9, 9.95], [], "00"),  # snapped last drum, carry wraps the most significant digit
    ([1.5, 9.5, 9.5], [], "199"),  # a whole chain halfway through a carry
    ([2.95, 9.97, 0.05], [], "300"),  # a middle drum slightly past 0 by noise
    ([1.0, 8.97], [], "19"),  # last drum within 0.05 of 9: snapped to 9, the 1 does not move
    ([1.0, 8.9], [], "18"),  # a drum at 8.9 still shows the 8 (labels are tenths): not snapped
    ([4.0, 2.91], [], "42"),
    ([4.0, 2.92], [], "43"),  # a drum's boundary (float-safe: 2.92 - 2 is 0.9199999999999999)
    ([4.0], [2.94], "4.2"),  # a pointer's boundary is 0.95: dial noise is not a resting digit read low
    ([4.0], [2.95], "4.3"),
    ([3.9, 9.9], [], "39"),  # the 3 is 0.9 into its carry with its neighbour at 9.9: still the 3
    ([2.9, 9.9], [], "29"),  # the neighbour's carry in progress explains the 2.9
    ([0.0, 0.0, 0.0], [], "000"),
])
def test_worked_examples(digits: list[float], pointers: list[float], expected: str) -> None:
    result = assemble(digits, pointers, coupling=CREEPING)
    assert result.error is None
    assert result.reading == expected


def test_the_neighbour_that_already_wrapped_still_carries() -> None:
    # true register 299.95: the middle drum is at 9.95 and noise wrapped it to 0.05
    assert assemble([2.95, 0.05, 9.85], coupling=CREEPING).reading == "299"


def test_decimals_and_value() -> None:
    result = assemble([0.0, 1.0, 2.0, 3.0], [4.5, 5.0], decimals=3)
    assert result.reading == "012.345"
    assert result.value == pytest.approx(12.345)
    assert result.digits == [0, 1, 2, 3, 4, 5]
    assert assemble([1.0], [2.0, 3.0]).reading == "1.23"  # decimals default to the number of pointers
    assert assemble([4.0], decimals=1).reading == "0.4"


def test_inconsistent_middle_drum_names_the_position() -> None:
    result = assemble([1.0, 2.0, 4.5, 2.0])
    assert result.reading is None and result.value is None
    assert result.error is not None and result.error.startswith("digit 3 at 4.5 does not fit its right neighbour 2.0")


def test_a_pointer_between_two_readings_is_named_and_both_readings_given() -> None:
    # a needle on the 4 mark with the next dial at 5: 3.5 or 4.5 read half a step off, either way
    result = assemble([1.0], [4.0, 5.0])
    assert result.reading is None and sorted(result.candidates) == ["1.35", "1.45"]
    assert result.error is not None and "pointer 1 at 4.0 reads" in result.error
    assert result.error.startswith(" or ".join(result.candidates))


def test_unreadable_digit_gives_no_reading() -> None:
    result = assemble([1.0, None, 3.0], [float("nan")])
    assert result.reading is None
    assert result.error == "digit 2, pointer 1 unreadable"


def test_confidence_falls_with_inconsistency() -> None:
    clean = assemble([3.0, 7.0, 6.0])
    noisy = assemble([3.3, 7.0, 6.0])
    assert clean.confidence == 1.0
    assert 0.0 < noisy.confidence < clean.confidence


@pytest.mark.parametrize(("digits", "kwargs"), [
    ([], {}),
    ([10.0], {}),
    ([-0.1], {}),
    (["3"], {}),
    ([True], {}),
    ([1.0, 2.0], {"decimals": 3}),
    ([1.0, 2.0], {"decimals": -1}),
])
def test_malformed_input_raises(digits: list[object], kwargs: dict[str, int]) -> None:
    with pytest.raises(InputError):
        assemble(digits, **kwargs)  # type: ignore[arg-type]


def render(count: int, frac: float, n: int) -> list[float]:
    """Exact drum positions of a counter showing ``count`` units plus ``frac`` of the last unit.

    The last drum moves continuously; every other drum moves only while its right neighbour rolls 9 -> 0.
    """
    positions = [0.0] * n
    positions[-1] = count % 10 + frac
    for i in range(n - 2, -1, -1):
        digit = (count // 10 ** (n - 1 - i)) % 10
        positions[i] = digit + min(max(positions[i + 1] - 9.0, 0.0), 1.0)
    return positions


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 8).flatmap(lambda n: st.tuples(
    st.just(n),
    st.integers(0, 10 ** n - 1),
    st.floats(0.0, 0.999),
    st.lists(st.floats(-0.1, 0.1), min_size=n, max_size=n),
)))
def test_recovers_truncated_register_from_noisy_drums(case: tuple[int, int, float, list[float]]) -> None:
    # noise up to 0.1 on every drum but the last, whose noise must stay below 0.05 (half a tenth) for its
    # own position to be told apart from the next tenth
    n, count, frac, noise = case
    noise[-1] *= 0.49
    observed = [(p + e) % 10.0 for p, e in zip(render(count, frac, n), noise, strict=True)]
    observed = [0.0 if math.isclose(x, 10.0) else x for x in observed]
    result = assemble(observed, coupling=CREEPING)
    assert result.error is None, (observed, result.error)
    assert result.reading is not None
    got = int(result.reading)
    truncated = count % 10 ** n
    if frac < DRUM_SNAP_FRACTION - 0.05:
        assert got == truncated, observed
    else:  # the last drum is within noise of arriving (a resting digit read low): the next unit is honest too
        assert got in (truncated, (truncated + 1) % 10 ** n), observed


def render_mixed(total: float, n_drums: int, n_pointers: int, last_drum: str) -> list[float]:
    """Exact positions of a counter showing ``total`` units of its last position: pointers geared continuously,
    drums rolling only while their right neighbour goes 9 -> 0, the last drum rolling or creeping with the first
    pointer (``last_drum``)."""
    n = n_drums + n_pointers
    positions = [0.0] * n
    for i in range(n - 1, -1, -1):
        place = 10.0 ** (n - 1 - i)
        if i >= n_drums or i == n - 1 or (i == n_drums - 1 and last_drum == "continuous"):
            positions[i] = (total / place) % 10.0
        else:
            digit = math.floor(total / place) % 10
            positions[i] = digit + min(max(positions[i + 1] - 9.0, 0.0), 1.0)
    return positions


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 10 ** 8 - 1), st.floats(0.0, 0.999),
       st.sampled_from(["roll", "continuous"]), st.data())
def test_mixed_counters_read_right_or_not_at_all(n_drums: int, n_pointers: int, count: int, frac: float,
                                                  last_drum: str, data: st.DataObject) -> None:
    # drums read within 0.1, pointers within 0.45 (the rightmost one within 0.04: its own fraction is the reading)
    n = n_drums + n_pointers
    count %= 10 ** n
    exact = render_mixed(count + frac, n_drums, n_pointers, last_drum)
    noise = [data.draw(st.floats(-0.1, 0.1) if i < n_drums else st.floats(-0.45, 0.45)) for i in range(n - 1)]
    noise.append(data.draw(st.floats(-0.04, 0.04)))
    observed = [(p + e) % 10.0 for p, e in zip(exact, noise, strict=True)]
    observed = [0.0 if math.isclose(x, 10.0) else x for x in observed]
    result = assemble(observed[:n_drums], observed[n_drums:])
    if result.reading is not None:
        got = int(result.reading.replace(".", ""))
        assert got in (count, (count + 1) % 10 ** n) if frac >= 0.9 else got == count, (observed, exact)
    # told how the last drum moves, exact positions always read
    stated = Coupling(last_drum=last_drum)  # type: ignore[arg-type]
    exact = [0.0 if math.isclose(x, 10.0) else x for x in exact]
    assert assemble(exact[:n_drums], exact[n_drums:], coupling=stated).reading is not None, exact


@pytest.mark.parametrize(("resting", "expected"), [(None, None), (True, "1835"), (False, "1834")])
def test_a_last_drum_with_its_decimals_left_out_is_decided_by_its_appearance(resting: bool | None,
                                                                             expected: str | None) -> None:
    result = assemble([1.0, 8.0, 3.0, 4.9], last_resting=resting)
    assert result.reading == expected
    if expected is None:
        assert result.candidates == ["1835", "1834"]
        assert result.error == ("1835 or 1834: both plausible (digit 4 at 4.9 reads 5 or 4): the meter's history "
                                "or the profile's coupling must decide")
    assert assemble([1.0, 8.0, 3.0, 4.9], coupling=CREEPING).reading == "1834"  # a creeping last drum: the 4
    assert assemble([1.0, 8.0, 3.0, 4.7]).reading == "1834"  # mid-roll: no resting drum reads 0.3 low
    assert assemble([1.0, 8.0, 3.0, 5.1]).reading == "1835"  # a resting 5 read high
    # a decimal drum may creep or rest (rightmost: auto): 4.9 is either; said to creep, it is the 4
    assert assemble([1.0, 8.0, 3.0, 4.9], decimals=1).candidates == ["183.5", "183.4"]
    assert assemble([1.0, 8.0, 3.0, 4.9], decimals=1, coupling=CREEPING).reading == "183.4"
    assert assemble([1.0, 8.0, 3.0, 4.8], decimals=1).reading == "183.4"  # below the band: creeping
