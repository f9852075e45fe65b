"""The student's W warm-up schedule (stages/student.BasisWarmup): a fixed number of steps, or until L_CE / log K has
dropped to student.warmup_ce_ratio with warmup_steps as the cap; its state survives a checkpoint."""
from slade.stages.student import BasisWarmup


def run(schedule, ratios):
    """The steps the schedule marks as warm-up, feeding it one L_CE / log K per warm-up step."""
    warm = []
    for step, ratio in enumerate(ratios):
        if schedule.active(step):
            warm.append(step)
            schedule.observe(step, ratio)
    return warm


def test_fixed_warmup_is_the_first_cap_steps():
    schedule = BasisWarmup(cap=3, ce_ratio=None)
    assert run(schedule, [0.1] * 6) == [0, 1, 2] and schedule.end == 3


def test_adaptive_warmup_ends_after_the_first_step_at_the_target():
    schedule = BasisWarmup(cap=10, ce_ratio=0.5)
    assert run(schedule, [0.99, 0.8, 0.6, 0.45, 0.3, 0.2]) == [0, 1, 2, 3] and schedule.end == 4


def test_adaptive_warmup_stops_at_the_cap():
    schedule = BasisWarmup(cap=3, ce_ratio=0.1)
    assert run(schedule, [0.9] * 6) == [0, 1, 2] and schedule.end == 3


def test_no_warmup():
    schedule = BasisWarmup(cap=0, ce_ratio=0.5)
    assert run(schedule, [0.9] * 3) == [] and schedule.end == 0


def test_state_round_trips_through_a_checkpoint():
    schedule = BasisWarmup(cap=10, ce_ratio=0.5)
    run(schedule, [0.9, 0.4])
    restored = BasisWarmup(cap=10, ce_ratio=0.5)
    restored.load_state_dict(schedule.state_dict())
    assert restored.end == 2 and not restored.active(5)
    fresh = BasisWarmup(cap=10, ce_ratio=0.5)
    fresh.load_state_dict(BasisWarmup(cap=10, ce_ratio=0.5).state_dict())
    assert fresh.end is None and fresh.active(3)
