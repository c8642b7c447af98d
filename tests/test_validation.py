"""Cross-frame validation: unit cases for each rule and a simulated month with injected misreads."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from smartmeter.server.frames import Action, Anchor, Frame, Rules, candidates, mid_roll
from smartmeter.server.validation import MeterValidator, first_reading_hint
from smartmeter.simulator.validation_sim import (
    FaultRates,
    drum_positions,
    read_positions,
    run_validation,
    simulate_frames,
)
from smartmeter.types import DigitValue

T0 = datetime(2025, 3, 1, tzinfo=UTC)
RULES = Rules.of(resolution_kwh=0.1, confirm_frames=2, consensus_frames=3)


def frame(i: int, value: float | None, conf: float = 0.95, rolling: int | None = None) -> Frame:
    """Frame number i (10 minutes apart) showing ``value`` on 6 drums; drum ``rolling`` is mid-roll."""
    digits = [DigitValue(float(c), conf) for c in f"{value or 0:07.1f}".replace(".", "")]
    if rolling is not None:
        digits[rolling] = DigitValue(digits[rolling].value + 0.5, conf)  # type: ignore[operator]
    return Frame(f"f{i:04d}", T0 + timedelta(minutes=10 * i), value, conf, digits, "v1", 1)


def actions(decisions: list, key: str) -> list[Action]:
    return [d.action for d in decisions if d.key == key]


def feed_all(v: MeterValidator, frames: list[Frame]) -> list:
    out = []
    for f in frames:
        out.extend(v.feed(f))
    return out


def test_consistent_frames_publish_and_backwards_is_suspect() -> None:
    v = MeterValidator("m", RULES)
    out = feed_all(v, [frame(0, 100.0), frame(1, 100.2), frame(2, 99.5)])
    assert actions(out, "f0000") == [Action.PUBLISH] and actions(out, "f0001") == [Action.PUBLISH]
    assert actions(out, "f0002") == [Action.SUSPECT]
    assert [a.value for a in v.anchors] == [100.0, 100.2]


def test_backwards_tolerance_allows_jitter() -> None:
    v = MeterValidator("m", Rules.of(backwards_tolerance_kwh=0.1))
    out = feed_all(v, [frame(0, 100.2), frame(1, 100.1)])
    assert actions(out, "f0001") == [Action.PUBLISH]


def test_max_power_rejects_impossible_jump() -> None:
    rules = Rules.of(max_power_w=6000)  # 1 kWh per 10 minutes
    v = MeterValidator("m", rules)
    out = feed_all(v, [frame(0, 100.0), frame(1, 101.5), frame(2, 100.9)])
    assert actions(out, "f0001") == [Action.SUSPECT]
    assert actions(out, "f0002") == [Action.PUBLISH]
    assert rules.fits(0, 100.0, 600, 101.0) and not rules.fits(0, 100.0, 600, 101.2)


def test_unreadable_and_low_confidence_go_to_review() -> None:
    v = MeterValidator("m", RULES)
    out = feed_all(v, [frame(0, None, conf=0.0), frame(1, 100.0, conf=0.4)])
    assert [d.action for d in out] == [Action.REJECT, Action.REJECT]
    assert "0.40" in out[1].reason


def test_mid_roll_frame_is_held_until_confirmed() -> None:
    v = MeterValidator("m", RULES)
    out = feed_all(v, [frame(0, 129.9), frame(1, 130.0, rolling=2), frame(2, 130.1)])
    assert actions(out, "f0001") == [Action.HOLD]
    out = v.feed(frame(3, 130.2))
    assert actions(out, "f0001") == [Action.PUBLISH]
    assert [a.key for a in v.anchors] == ["f0000", "f0001", "f0002", "f0003"]


def test_held_misread_at_transition_is_resolved_or_rejected() -> None:
    # drum 2 mid-roll and read one number too high: 230.0 instead of 130.0; neighbours pin 130.0
    v = MeterValidator("m", RULES)
    held = frame(1, 230.0, rolling=2)
    assert mid_roll(held, RULES) == [2]
    assert 130.0 in candidates(held, RULES)
    out = feed_all(v, [frame(0, 130.0), held, frame(2, 130.0), frame(3, 130.1)])
    pub = [d for d in out if d.key == "f0001" and d.action is Action.PUBLISH]
    assert pub and pub[0].value == 130.0 and "transition resolved" in pub[0].reason
    # no candidate fits: rejected, never published
    v = MeterValidator("m", RULES)
    out = feed_all(v, [frame(0, 130.0), frame(1, 530.0, conf=0.7), frame(2, 130.0), frame(3, 130.1)])
    assert actions(out, "f0001") == [Action.HOLD, Action.REJECT]


def test_wrong_accepted_value_is_corrected_by_consensus() -> None:
    v = MeterValidator("m", RULES)
    # first frame is a confident misread (no anchor to refute it yet); later frames agree with each other
    out = feed_all(v, [frame(0, 190.0), frame(1, 100.1), frame(2, 100.2)])
    assert actions(out, "f0001") == [Action.SUSPECT]
    out = v.feed(frame(3, 100.3))
    assert [d for d in out if d.key == "f0000"][0].action is Action.WITHDRAW
    w = [d for d in out if d.key == "f0000"][0]
    assert w.old_value == 190.0 and set(w.evidence) == {"f0001", "f0002", "f0003"}
    assert [a.value for a in v.anchors] == [100.1, 100.2, 100.3]
    # not locked up: later frames keep publishing
    assert actions(v.feed(frame(4, 100.4)), "f0004") == [Action.PUBLISH]


def test_correction_pins_value_when_neighbours_agree() -> None:
    # rule changed (issue 14): with the default typical power (3 kW) a 1 kWh rise in 10 minutes is a surprise and
    # waits for a witness; here the meter is allowed 6 kW typically, so it is published and then corrected
    v = MeterValidator("m", Rules.of(resolution_kwh=0.1, initial_power_w=6000))
    out = feed_all(v, [frame(0, 100.0), frame(1, 101.0), frame(2, 100.0), frame(3, 100.0), frame(4, 100.0)])
    assert actions(out, "f0001")[0] is Action.PUBLISH  # plausible on its own (6 kW for 10 minutes)
    fixed = [d for d in out if d.key == "f0001" and d.action is Action.CORRECT]
    assert fixed and fixed[0].old_value == 101.0 and fixed[0].value == 100.0
    assert all(a.value == 100.0 for a in v.anchors)


def test_surprising_jump_is_never_published_when_the_register_has_not_moved() -> None:
    # 100.0 then a frame 15 steps above what 3 kW allows; the drum rests, its misread repeats (one witness), then
    # the register shows 100.0 again: the surprise was a misread and is never published. Before, 102.0 was
    # published and three frames of it (more than the correct frames after) kept it
    v = MeterValidator("m", RULES)
    out = feed_all(v, [frame(0, 100.0), frame(1, 102.0), frame(2, 102.0), frame(3, 102.0), frame(4, 100.0),
                       frame(5, 100.1), frame(6, 100.1), frame(7, 100.2)])
    assert Action.PUBLISH not in actions(out, "f0001") + actions(out, "f0002") + actions(out, "f0003")
    assert actions(out, "f0001")[0] is Action.SUSPECT and "independent evidence" in out[1].reason
    assert [a.value for a in v.anchors] == [100.0, 100.0, 100.1, 100.1, 100.2]


def test_surprising_jump_is_published_once_a_distinct_value_confirms_it() -> None:
    v = MeterValidator("m", RULES)
    # a real 6 kW load after 100.0 (3 kW assumed): 101.0 waits; 102.0, another value that fits, confirms it
    out = feed_all(v, [frame(0, 100.0), frame(1, 101.0)])
    assert actions(out, "f0001") == [Action.SUSPECT]
    out = v.feed(frame(2, 102.0))
    assert actions(out, "f0001") == [Action.PUBLISH]
    assert [a.value for a in v.anchors] == [100.0, 101.0]  # 102.0 itself waits for its own witness
    out = v.feed(frame(3, 102.9))
    assert actions(out, "f0002") == [Action.PUBLISH]


def test_typical_power_comes_from_the_meters_history() -> None:
    # 8 h at 0.6 kW (a step every 10 minutes): a 4-step rise in 10 minutes (2.4 kW) is a surprise now, while
    # without history (3 kW assumed) it is not
    v = MeterValidator("m", RULES)
    feed_all(v, [frame(i, round(100.0 + 0.1 * i, 1)) for i in range(48)])
    assert actions(v.feed(frame(48, 105.1)), "f0048") == [Action.SUSPECT]
    fresh = MeterValidator("m", RULES)
    feed_all(fresh, [frame(0, 104.7)])
    assert actions(fresh.feed(frame(1, 105.1)), "f0001") == [Action.PUBLISH]


def test_consensus_counts_distinct_values_not_frames() -> None:
    # two correct anchors (100.1, 100.2), then the same crop misread as 100.0 three times: one witness, not three;
    # before, the three frames overruled the two anchors and stored 100.0 three times
    v = MeterValidator("m", RULES)
    out = feed_all(v, [frame(0, 100.1), frame(1, 100.2), frame(2, 100.0), frame(3, 100.0), frame(4, 100.0)])
    assert not [d for d in out if d.action in (Action.WITHDRAW, Action.CORRECT)]
    assert [a.value for a in v.anchors] == [100.1, 100.2]


def test_weak_digit_not_pinned_by_neighbours_is_refused() -> None:
    # the last drum read 4 at confidence 0.63 between 100.0 and 100.5: 1.5 steps off the line between them, and
    # no later photo can witness the value at its time. Before, the held frame was published once two later
    # anchors fitted it (lcd2: an LCD "1" read 7.1 at 0.73 and stored)
    v = MeterValidator("m", RULES)
    weak = frame(1, 100.4)
    weak.digits[-1] = DigitValue(4.0, 0.63)
    out = feed_all(v, [frame(0, 100.0), weak, frame(2, 100.5), frame(3, 100.6), frame(4, 100.7)])
    assert actions(out, "f0001") == [Action.HOLD, Action.REJECT]
    assert "weak digit" in [d for d in out if d.key == "f0001"][-1].reason
    assert [a.value for a in v.anchors] == [100.0, 100.5, 100.6, 100.7]
    # on the line it is published as before
    v = MeterValidator("m", RULES)
    weak = frame(1, 100.3)
    weak.digits[-1] = DigitValue(3.0, 0.63)
    out = feed_all(v, [frame(0, 100.0), weak, frame(2, 100.5), frame(3, 100.6), frame(4, 100.7)])
    assert actions(out, "f0001") == [Action.HOLD, Action.PUBLISH]


def test_trusted_anchor_is_never_overruled_and_review_value_wins() -> None:
    v = MeterValidator("m", RULES, anchors=[Anchor("review:x", T0, 500.0, trusted=True)])
    feed_all(v, [frame(1, 100.0), frame(2, 100.1), frame(3, 100.2), frame(4, 100.3)])
    assert [a.key for a in v.anchors] == ["review:x"]
    out = v.add_trusted(Anchor("review:f0002", T0 + timedelta(minutes=20), 100.1, trusted=True))
    assert any(d.action is Action.WITHDRAW for d in out) is False  # nothing published to withdraw
    v2 = MeterValidator("m", RULES)
    feed_all(v2, [frame(0, 190.0), frame(1, 190.1)])
    out = v2.add_trusted(Anchor("review:f0001", T0 + timedelta(minutes=10), 100.1, trusted=True))
    assert [d.action for d in out if d.key == "f0000"] == [Action.WITHDRAW]
    assert [a.key for a in v2.anchors] == ["review:f0001"]


@pytest.mark.fault("out-of-order photos", proves="wrong values stored: 0 (a late frame is judged between its "
                   "neighbours; one that would go backwards is not published)")
def test_out_of_order_frame_is_judged_between_neighbours() -> None:
    v = MeterValidator("m", RULES)
    feed_all(v, [frame(0, 100.0), frame(2, 100.4), frame(3, 100.5)])
    assert actions(v.feed(frame(1, 100.2)), "f0001") == [Action.PUBLISH]
    # a late frame that would move the register backwards between its neighbours is not published
    assert actions(v.feed(frame(-1, 100.3)), "f-001") == [Action.SUSPECT, Action.REJECT]
    assert [a.value for a in v.anchors] == [100.0, 100.2, 100.4, 100.5]


@pytest.mark.fault("duplicate delivery", proves="wrong values stored: 0 (a frame delivered twice is one reading)")
def test_duplicate_delivery_is_one_reading() -> None:
    v = MeterValidator("m", RULES)
    f = frame(0, 100.0)
    assert [d.action for d in v.feed(f)] == [Action.PUBLISH]
    assert [d.action for d in v.feed(f)] == [Action.DUPLICATE]
    assert len(v.anchors) == 1


def test_odometer_model_matches_assembly() -> None:
    assert read_positions(drum_positions(1299.95, 6, 1), 1)[1] == pytest.approx(1299.9)
    assert read_positions(drum_positions(12345.67, 6, 1), 1)[0] == "12345.6"


@pytest.mark.fault("out-of-order photos", proves="wrong values stored: 0 over a simulated month with duplicates, "
                   "misreads and late frames")
@pytest.mark.parametrize("seed", [1, 2])
def test_simulated_month_no_wrong_value_stored(seed: int) -> None:
    frames = simulate_frames(days=30, seed=seed)
    stats, v = run_validation(frames, Rules())
    assert stats.frames == 4320 and stats.deliveries > stats.frames  # duplicates delivered
    assert stats.faults.get("wrong_digit", 0) > 5 and stats.faults.get("out_of_order", 0) > 10
    assert stats.wrong_stored == 0
    assert stats.yield_ratio >= 0.99
    assert [a.t for a in v.anchors] == sorted(a.t for a in v.anchors)
    values = [a.value for a in v.anchors]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False)), "register went backwards"


@pytest.mark.xfail(strict=True, reason="a confident last-drum misread two steps high (2.2 read 4.1 at 0.96) that the "
                   "next photo's right reading reaches is stored (docs/validation.md, the simulated year): not caught")
def test_a_simulated_year_of_seed_1_stores_no_wrong_value() -> None:
    stats, _ = run_validation(simulate_frames(days=365, seed=1), Rules())
    assert stats.wrong_stored == 0


@pytest.mark.fault("misread digit", proves="wrong values stored: 0 with five times the usual misread rate")
def test_simulated_month_with_many_misreads_still_stores_nothing_wrong() -> None:
    stats, _ = run_validation(simulate_frames(days=30, seed=3, rates=FaultRates().scaled(5)), Rules())
    assert stats.wrong_stored == 0
    assert stats.yield_ratio >= 0.95


def choice_frame(i: int, choices: tuple[float, ...], conf: float = 0.95) -> Frame:
    """Frame i refused by the assembler between ``choices`` (a resting last drum read low: 1834.93)."""
    digits = [DigitValue(float(c), conf) for c in "18349"] + [DigitValue(9.93, conf)]
    return Frame(f"f{i:04d}", T0 + timedelta(minutes=10 * i), None, conf, digits, "v1", 1,
                 " or ".join(f"{c:g}" for c in choices) + ": both plausible", choices)


@pytest.mark.parametrize(("before", "after", "published"), [
    ((1835.0, 1835.0), (1835.0, 1835.1), 1835.0),  # 1834.9 would run backwards from f0000
    ((1834.8, 1834.9), (1834.9, 1834.9), 1834.9),  # 1835.0 would run backwards to f0002
    # both fit: the last drum at 9.93 is a resting 0 read low or a 9 about to roll; 1835.0 is within 0.07 of a step
    # of the register either way, 1834.9 a whole step below it in the first case (frames.just_below)
    ((1834.8, 1834.9), (1835.0, 1835.1), 1835.0),
    ((1840.0, 1840.0), (1840.1, 1840.1), None),  # neither fits
])
def test_validation_chooses_a_refused_frames_reading_by_history(before: tuple[float, float],
                                                                after: tuple[float, float],
                                                                published: float | None) -> None:
    v = MeterValidator("m", RULES)
    out = feed_all(v, [frame(0, before[0]), frame(1, before[1]), choice_frame(2, (1835.0, 1834.9)),
                       frame(3, after[0]), frame(4, after[1])])
    got = [d for d in out if d.key == "f0002"]
    assert [d.action for d in got] == [Action.HOLD, Action.PUBLISH if published else Action.REJECT]
    assert got[-1].value == published and ("1835 or 1834.9 read; " in got[-1].reason) == (published is not None)
    assert [a.value for a in v.anchors if a.key == "f0002"] == ([published] if published else [])


def test_two_fitting_readings_are_refused_unless_the_last_drum_is_just_below_a_digit() -> None:
    """The same frame with its last drum at 9.6 (a 9 well on its way, not a resting 0 read low): both fit, refused."""
    v = MeterValidator("m", RULES)
    f = choice_frame(2, (1835.0, 1834.9))
    f.digits[-1] = DigitValue(9.6, 0.95)
    out = feed_all(v, [frame(0, 1834.8), frame(1, 1834.9), f, frame(3, 1835.0), frame(4, 1835.1)])
    got = [d for d in out if d.key == "f0002"]
    assert [d.action for d in got] == [Action.HOLD, Action.REJECT] and "both fit" in got[-1].reason


def test_refused_frame_with_choices_below_min_confidence_is_rejected_at_once() -> None:
    out = MeterValidator("m", RULES).feed(choice_frame(0, (1835.0, 1834.9), conf=0.3))
    assert [d.action for d in out] == [Action.REJECT]


@pytest.mark.fault("misread digit", proves="wrong values stored: 0 when a drum that does not move is misread in "
                   "every photo from the first one on (the first reading waits for a sure photo)")
def test_first_reading_waits_for_a_sure_one() -> None:
    """A meter's first reading has nothing to be checked against: an LCD whose '1' the model reads as a 7 at 0.84
    in every photo gave 072442.8 for 012442.8, and later photos of that unmoving digit "confirmed" it (512 wrong
    values stored in 8 days, bench/unseen_streams.py --meters lcd2). Below ``first_confidence`` the first
    readings wait; a sure reading anchors the meter, and the waiting ones that fit it are published then."""
    v = MeterValidator("m", RULES)
    weak = [frame(0, 72442.8, conf=0.84), frame(1, 72442.9, conf=0.86), frame(2, 72443.0, conf=0.9)]
    out = feed_all(v, weak)
    assert not [d for d in out if d.action is Action.PUBLISH] and not v.anchors
    assert all("first reading of the meter" in d.reason for d in out if d.action is Action.SUSPECT)
    late = [frame(3, 12443.1, conf=0.97), frame(4, 12443.2, conf=0.9)]
    out = feed_all(v, late)
    assert actions(out, "f0003") == [Action.PUBLISH] and actions(out, "f0004") == [Action.PUBLISH]
    assert [a.value for a in v.anchors] == [12443.1, 12443.2]  # the weak 7xxxx readings never were


def test_a_meter_never_read_surely_is_told_to_confirm_its_register() -> None:
    """An LCD '1' read unsurely in every photo: no first reading, and the frames that overflow the pending pool
    say how to start the meter (``meter confirm``); once it has readings, the overflow says only what happened."""
    rules = Rules.of(resolution_kwh=0.1, confirm_frames=2, consensus_frames=3, max_pending=3)
    out = feed_all(MeterValidator("m1", rules), [frame(i, 12442.0 + i / 10, conf=0.84) for i in range(5)])
    rejected = [d for d in out if d.action is Action.REJECT]
    assert len(rejected) == 2 and all("smartmeter meter confirm m1 --reading" in d.reason for d in rejected)
    v = MeterValidator("m1", rules)
    feed_all(v, [frame(0, 12441.9, conf=0.99)])
    out = feed_all(v, [frame(i, 12442.0 + i / 10, conf=0.7) for i in range(1, 10)])  # weak: held, none confirmed
    rejected = [d for d in out if d.action is Action.REJECT]
    assert rejected and all(d.reason == "not confirmed in time (pending pool full)" for d in rejected)


def test_the_worker_log_says_once_that_a_meter_needs_its_register_confirmed(caplog: pytest.LogCaptureFixture
                                                                              ) -> None:
    """Long before the pending pool overflows: once ``confirm_hint_photos`` photos wait for a first reading, the
    log says how to start the meter, once; a meter with readings never hears it."""
    rules = Rules.of(resolution_kwh=0.1, confirm_frames=2, consensus_frames=3, confirm_hint_photos=3)
    with caplog.at_level(logging.WARNING, logger="smartmeter.server.validation"):
        feed_all(MeterValidator("m1", rules), [frame(i, 12442.0 + i / 10, conf=0.84) for i in range(8)])
    hints = [r.getMessage() for r in caplog.records if "meter confirm" in r.getMessage()]
    assert hints == ["3 photos of meter m1 and no reading stored yet: none has been sure enough to be its first. "
                     "Read the register off the meter and confirm it once (smartmeter meter confirm m1 --reading "
                     "..., or the setup page)"]
    caplog.clear()
    waiting = [(frame(i, 12442.0 + i / 10, conf=0.84), Action.HOLD) for i in range(4)]
    with caplog.at_level(logging.WARNING, logger="smartmeter.server.validation"):  # the worker's next page
        feed_all(MeterValidator("m1", rules, pending=waiting), [frame(i, 12442.0 + i / 10, conf=0.84)
                                                                for i in range(4, 8)])
    assert not [r for r in caplog.records if "meter confirm" in r.getMessage()]  # said once, not every page
    v = MeterValidator("m2", rules)
    feed_all(v, [frame(0, 12441.9, conf=0.99)])
    with caplog.at_level(logging.WARNING, logger="smartmeter.server.validation"):
        feed_all(v, [frame(i, 12442.0 + i / 10, conf=0.7) for i in range(1, 9)])
    assert not [r for r in caplog.records if "meter confirm" in r.getMessage()]
    assert first_reading_hint("m", 95, 0, 96) is None and first_reading_hint("m", 500, 1, 96) is None


def test_first_reading_waiting_is_published_once_a_sure_one_confirms_it() -> None:
    v = MeterValidator("m", RULES)
    out = feed_all(v, [frame(0, 100.0, conf=0.9), frame(1, 100.1, conf=0.97)])
    assert actions(out, "f0000") == [Action.SUSPECT, Action.PUBLISH]
    assert [a.value for a in v.anchors] == [100.0, 100.1]


def test_a_kink_made_by_a_weaker_reading_withdraws_that_reading_too() -> None:
    """An LCD '1' read as a 7 at 0.90 (lcd2, bench/unseen_streams.py seed 15): 62693.7 for 62693.1, later
    "confirmed" by the register catching up, made the sure reading before it (62692.5 at 0.97) a kink, and only
    that right reading was withdrawn. When the reading that makes a kink is less sure than the kink, either may be
    the misread: both are withdrawn."""
    v = MeterValidator("m", RULES)
    values = [(99.0, 0.97), (99.2, 0.97), (99.4, 0.97), (99.6, 0.97), (100.2, 0.97), (100.5, 0.97), (101.4, 0.90),
              (101.4, 0.97), (101.5, 0.97), (101.6, 0.97)]  # f0006 is the misread (the register showed 100.8)
    out = feed_all(v, [frame(i, x, conf=c) for i, (x, c) in enumerate(values)])
    assert actions(out, "f0006")[-1] is Action.WITHDRAW and "either may be the misread" in out[-2].reason
    assert actions(out, "f0005")[-1] is Action.WITHDRAW
    assert [a.key for a in v.anchors] == ["f0000", "f0001", "f0002", "f0003", "f0004", "f0007", "f0008", "f0009"]
    # a kink made by a surer reading: only the kink goes (as before)
    v = MeterValidator("m", RULES)
    out = feed_all(v, [frame(i, x, conf=0.97 if i != 5 else 0.9) for i, (x, _) in enumerate(values)])
    assert actions(out, "f0005")[-1] is Action.WITHDRAW and "f0006" in [a.key for a in v.anchors]


@pytest.mark.parametrize(("spread", "withdrawn"), [(2.0, False), (0.0, True)])
def test_a_bursty_meters_right_readings_are_not_kinks(spread: float, withdrawn: bool) -> None:
    """A water meter's tap opened every other photo puts each right reading 2.5 steps off the line between its
    neighbours (more than kink_steps): the meter's own history raises its kink limit (kink_spread)."""
    rules = Rules.of(resolution_kwh=0.1, confirm_frames=2, consensus_frames=3, kink_spread=spread)
    values = [round(100.0 + 0.5 * (i // 2), 1) for i in range(300)]  # 100.0 100.0 100.5 100.5 101.0 ...
    out = feed_all(MeterValidator("m", rules), [frame(i, v, conf=0.97) for i, v in enumerate(values)])
    late = [d for d in out if d.action is Action.WITHDRAW and d.ts >= T0 + timedelta(days=1, hours=1)]
    assert bool(late) is withdrawn


@pytest.mark.parametrize(("conf", "withdrawn"), [(0.97, True), (0.99, False)])
def test_a_surely_read_reading_is_not_a_kink(conf: float, withdrawn: bool) -> None:
    """A load switched on just before a photo (f0003, 100.6) and running on puts it 3 steps off the line between its
    neighbours (emeter1, 30-day stream: 12472.6 between 12472.4 and 12473.6, right). Read as surely as the model
    reads (0.99), it is the load, not a misread (30-day held-out streams: every reading withdrawn as a kink above
    0.97 was right): it stays. At 0.97 it is checked and withdrawn."""
    rules = Rules.of(resolution_kwh=0.1, confirm_frames=2, consensus_frames=3, kink_spread=0)
    values = {0: 100.4, 2: 100.4, 3: 100.6, 4: 101.4, 5: 101.6, 6: 101.8, 7: 102.0}  # photo 1 unread
    v = MeterValidator("m", rules)
    out = feed_all(v, [frame(i, x, conf=conf) for i, x in values.items()])
    assert (Action.WITHDRAW in actions(out, "f0003")) is withdrawn
    assert ("f0003" in [a.key for a in v.anchors]) is not withdrawn


def test_a_first_reading_is_sure_by_its_digits_not_by_how_well_the_drums_line_up() -> None:
    """A meter the model never saw reads its resting 2s 0.15-0.27 high (altair): every digit at 0.97 or more, but the
    whole reading at 0.85. Judged by the whole reading no photo of that stream ever was sure enough, and nothing
    was stored in 8 days (bench/unseen_streams.py --meters watermeter-altair --days 8)."""
    v = MeterValidator("m", RULES)
    f = frame(0, 12442.7, conf=0.98)
    f.digits[3] = DigitValue(2.15, 0.98)
    f.confidence = 0.85
    out = feed_all(v, [f, frame(1, 12442.8, conf=0.97)])
    assert actions(out, "f0000") == [Action.PUBLISH] and actions(out, "f0001") == [Action.PUBLISH]


def lcd_frame(i: int, value: float, slow_conf: float, start: datetime = T0) -> Frame:
    """Frame i (15 minutes apart from ``start``) of 063xxx.x with its hundreds drum read at ``slow_conf``."""
    f = frame(0, value, conf=0.99)
    f.digits[3] = DigitValue(f.digits[3].value, slow_conf)
    ts = start + timedelta(minutes=15 * i)
    return Frame(f"g{ts:%Y%m%d%H%M}", ts, value, min(0.99, slow_conf), f.digits, "v1", 1)


@pytest.mark.fault("misread digit", proves="wrong values stored: 0 when a slow drum's new digit is misread in "
                   "every photo (an LCD's 1 read as 7 at 0.85): distinct later values do not witness it")
@pytest.mark.parametrize(("slow_conf", "published"), [(0.85, False), (0.99, True)])
def test_a_surprise_in_a_slow_drum_needs_a_sure_read_of_it(slow_conf: float, published: bool) -> None:
    """63099.x, then after a day with no reading 63709.x (63109 with its new 1 read as 7): 610 kWh in a day fits
    max_power, is a surprise at the meter's typical power, and later values (63709.3, 63709.8) differ only in
    the moving drums. Read at 0.85 the hundreds drum cannot be witnessed by them; read surely it is."""
    rules = Rules.of(resolution_kwh=0.1, confirm_frames=2, consensus_frames=3, hold_confidence=0.8)
    v = MeterValidator("m", rules)
    feed_all(v, [lcd_frame(i, round(63098.0 + 0.1 * i, 1), 0.99) for i in range(16)])
    later = T0 + timedelta(days=1, hours=4)
    out = feed_all(v, [lcd_frame(i, round(63709.0 + 0.1 * i, 1), slow_conf, later) for i in range(12)])
    assert any(d.action is Action.PUBLISH and d.value >= 63709 for d in out) is published
    assert all(a.value < 63700 for a in v.anchors) is not published


@pytest.mark.parametrize(("slow_conf", "overruled"), [(0.85, False), (0.99, True)])
def test_a_consensus_in_a_slow_drum_needs_a_sure_read_of_it(slow_conf: float, overruled: bool) -> None:
    """Five right readings 63099.0-63099.4, then eight photos whose hundreds drum reads 7 (63709.5 ...): they agree
    with each other with more distinct values than the five, but those values differ only in the moving drums."""
    rules = Rules.of(resolution_kwh=0.1, confirm_frames=2, consensus_frames=3, hold_confidence=0.8)
    v = MeterValidator("m", rules)
    feed_all(v, [lcd_frame(i, round(63099.0 + 0.1 * i, 1), 0.99) for i in range(5)])
    out = feed_all(v, [lcd_frame(5 + i, round(63709.5 + 0.1 * i, 1), slow_conf) for i in range(8)])
    assert any(d.action in (Action.WITHDRAW, Action.CORRECT) for d in out) is overruled
    assert all(a.value < 63700 for a in v.anchors) is not overruled
