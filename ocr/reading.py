"""How sure a reading is, given its digits: the one rule both read paths use.

A profiled meter (``ocr.pipeline.MeterReader``) and an auto-located one (``ocr.autolocate.read_auto``) both read
one value per drum, pointer or display digit with a confidence in 0..1, then ``ocr.assemble`` turns the positions
into a reading with a *consistency* in 0..1 (1: every drum sits where its neighbours say it should). Then::

    reading confidence = (confidence of the least sure digit) x (consistency of the assembly)

Why the least sure digit, and not the product of all digit confidences: the product would be right if each
digit's errors were independent, and they are not. The digits of one photo share its blur, glare, exposure and
alignment; when one drum is hard to read its neighbours usually are too, so a product counts one doubt once per
digit. It would also make the same photo quality look less sure on an 8-drum register than on a 5-drum one
(0.95 per digit: 0.66 against 0.77), so one ``min_confidence`` could not serve every meter. The least sure digit
is what a person reading the meter goes by as well: a reading is wrong as soon as one digit is wrong, and it
cannot be surer than that digit. Both paths already took the minimum over the digits.

Why the consistency multiplies, where auto-locate took the minimum of the two: it is a different kind of
evidence (where the drums sit relative to each other, not what each shows), so a doubt about the row's geometry
and a doubt about a digit add up; with the minimum, a row that barely fits (consistency 0.7) read from digits
that are 0.7 sure counted as sure as either alone. The product is never above the minimum: it can only make a
reading less sure, never publish one the minimum would not. Measured (``bench/reading_confidence.py``, minimum
-> product, hold-out model): the test photos of both paths read and publish the same (9 profiled, 8
auto-located); 1500 simulated profiled photos: 3 fewer wrong readings (66 -> 63, none of them published either
way), 2 fewer exact ones, published 1272 exact / 53 wrong both; 200 generated auto-locate photos: 1 of 126 exact
readings drops below 0.6 (0.63 -> 0.58: review); 200 hard ones: published 101 exact / 2 wrong both.

The validator compares this number with ``validation.min_confidence`` and the readers with the profile's
``min_confidence`` (docs/validation.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from smartmeter.types import DigitValue


def least_sure(values: Iterable[DigitValue]) -> float:
    """The confidence of the least sure digit (0 when there is none, or one was not read at all)."""
    confidences = [v.confidence if v.value is not None else 0.0 for v in values]
    return min(confidences, default=0.0)


def reading_confidence(values: Iterable[DigitValue], consistency: float = 1.0) -> float:
    """The confidence of the reading made of ``values`` by an assembly of ``consistency`` (module docstring),
    rounded to 4 decimals as results carry it."""
    return round(max(0.0, min(1.0, least_sure(values) * consistency)), 4)
