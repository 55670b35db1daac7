"""Simulation of the worker's configured scaling rules against the seed's "Black Friday" load.

The policies' numbers (target, cooldowns, min/max, wake-up capacity) are read from the recorded resources,
then Application Auto Scaling's behaviour is replayed minute by minute:
- target tracking scales out after 3 one-minute datapoints above target to ceil(current * metric / target),
  and in after 15 datapoints below 90 % of target, respecting the cooldowns;
- the wake-up alarm (1 datapoint) sets the capacity to its step's exact value when nothing runs;
- a new task starts processing 1 minute after it is requested (Fargate start-up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from components.worker import QueueWorker
from tests.components.test_worker import worker_args
from tests.support import Recorded, build, inputs

JOBS = 10_000
ARRIVAL_MINUTES = 5


@dataclass
class ScalingRules:
    target: float
    min_count: int
    max_count: int
    wake_capacity: int
    scale_out_cooldown: int
    scale_in_cooldown: int
    processing_seconds: float

    @classmethod
    def from_recorded(cls, recorded: Recorded, processing_seconds: float) -> ScalingRules:
        policies = {r.name.rsplit("-", 3)[-1]: inputs(r) for r in recorded.of_type("aws:appautoscaling/policy:Policy")}
        tracking = next(p for p in policies.values() if "targetTrackingScalingPolicyConfiguration" in p)
        tracking_config = tracking["targetTrackingScalingPolicyConfiguration"]
        wake = next(p for p in policies.values() if "stepScalingPolicyConfiguration" in p)
        target = inputs(recorded.one("aws:appautoscaling/target:Target"))
        return cls(
            target=tracking_config["targetValue"],
            min_count=target["minCapacity"],
            max_count=target["maxCapacity"],
            wake_capacity=wake["stepScalingPolicyConfiguration"]["stepAdjustments"][0]["scalingAdjustment"],
            scale_out_cooldown=tracking_config["scaleOutCooldown"],
            scale_in_cooldown=tracking_config["scaleInCooldown"],
            processing_seconds=processing_seconds,
        )


@dataclass
class Timeline:
    backlog: list[float] = field(default_factory=list)
    desired: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)


def black_friday(minute: int) -> float:
    return JOBS / ARRIVAL_MINUTES if minute < ARRIVAL_MINUTES else 0


def simulate(rules: ScalingRules, arrivals=black_friday, minutes: int = 120) -> Timeline:
    timeline = Timeline()
    backlog, desired, running = 0.0, rules.min_count, rules.min_count
    above, below, last_out, last_in = 0, 0, -(10**6), -(10**6)
    per_task_per_minute = 60 / rules.processing_seconds
    for minute in range(minutes):
        backlog += arrivals(minute)
        backlog = max(0.0, backlog - running * per_task_per_minute)
        metric = backlog / running if running else backlog
        above = above + 1 if metric > rules.target else 0
        below = below + 1 if metric < 0.9 * rules.target else 0
        now = minute * 60
        if running == 0 and desired == 0 and backlog > 0:
            desired = rules.wake_capacity
        elif above >= 3 and running and now - last_out >= rules.scale_out_cooldown:
            desired = min(rules.max_count, max(desired, math.ceil(running * metric / rules.target)))
            last_out = now
        elif below >= 15 and now - max(last_out, last_in) >= rules.scale_in_cooldown:
            wanted = math.ceil(running * metric / rules.target) if running else 0
            desired = max(rules.min_count, min(desired, wanted))
            last_in = now
        running, prior = desired, running  # tasks requested this minute run from the next one
        timeline.backlog.append(backlog)
        timeline.desired.append(desired)
        timeline.running.append(prior)
    return timeline


@pytest.fixture(scope="module")
def rules() -> ScalingRules:
    recorded = build(lambda: QueueWorker("worker", worker_args(max_count=20)))
    return ScalingRules.from_recorded(recorded, processing_seconds=2)


def test_rules_come_from_the_component(rules):
    assert (rules.target, rules.min_count, rules.max_count, rules.wake_capacity) == (30, 0, 20, 1)
    assert (rules.scale_out_cooldown, rules.scale_in_cooldown) == (60, 300)


def test_black_friday_stays_within_bounds_and_scales_out_then_in(rules):
    timeline = simulate(rules)
    assert all(rules.min_count <= d <= rules.max_count for d in timeline.desired)
    first_work = next(i for i, b in enumerate(timeline.backlog) if b > 0)
    assert timeline.desired[first_work] >= 1, "the first message wakes the service in the same minute"
    first_scale_out = next(i for i, d in enumerate(timeline.desired) if d > rules.wake_capacity)
    assert first_scale_out <= first_work + 4, "target tracking reacts within its 3-datapoint window"
    assert max(timeline.desired) == rules.max_count, "a 10,000-job burst needs every allowed task"
    drained = next(i for i, b in enumerate(timeline.backlog) if i > ARRIVAL_MINUTES and b == 0)
    assert timeline.desired[-1] == rules.min_count, "idle again after the burst"
    assert drained < 60
    peak_at = timeline.desired.index(rules.max_count)
    assert peak_at < drained


def test_a_single_message_is_served_from_zero_and_the_service_goes_idle(rules):
    timeline = simulate(rules, arrivals=lambda minute: 1 if minute == 10 else 0, minutes=60)
    assert timeline.desired[:10] == [0] * 10
    assert timeline.desired[10] == 1
    assert timeline.backlog[11] == 0, "the woken task processes it the next minute"
    assert timeline.desired[-1] == 0
