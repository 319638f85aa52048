"""The pure evaluator: Prometheus-like lifecycle, hysteresis, volume, and EWMA anomaly rules."""

import math
import random

import pytest

from livemon.alerting.config import load_config
from livemon.alerting.evaluator import Evaluator
from livemon.alerting.rules import Anomaly, Rule

T0 = 1_700_000_000.0


def snap(t, room="r1", cdn=None, **metrics):
    metrics.setdefault("viewers", 100)
    return {"ts": T0 + t, "room_id": room, "metrics": metrics, "cdn": cdn or {}}


def run(evaluator, series):
    """series: [(t, snapshot kwargs)] -> [(t, state, rule, cdn)] of the transitions."""
    out = []
    for t, kw in series:
        for tr in evaluator.evaluate(snap(t, **kw)):
            out.append((round(tr.ts - T0), tr.state, tr.alert.rule.name, tr.alert.cdn))
    return out


STALL = Rule("Stall", "stall_ratio", threshold=0.05, clear=0.03, for_=10, volume_metric="viewers",
             volume_min=20, severity="critical", annotations={"summary": "{room} {value:.0%}"})


def test_pending_firing_resolved_with_for_and_hysteresis():
    values = [0.01] * 5 + [0.08] * 15 + [0.04] * 5 + [0.02] * 3
    got = run(Evaluator([STALL]), [(t, {"stall_ratio": v}) for t, v in enumerate(values)])
    # pending at the first bad sample (5), firing once `for` (10 s) has passed (15), held through
    # 0.04 (between clear and fire lines), resolved at the first sample under the clear line (25).
    assert got == [(5, "pending", "Stall", None), (15, "firing", "Stall", None),
                   (25, "resolved", "Stall", None)]


def test_pending_that_recovers_never_fires_and_dedup_per_series():
    ev = Evaluator([STALL])
    values = [0.08] * 5 + [0.01] * 3 + [0.08] * 12
    got = run(ev, [(t, {"stall_ratio": v}) for t, v in enumerate(values)])
    assert got == [(0, "pending", "Stall", None), (5, "inactive", "Stall", None),
                   (8, "pending", "Stall", None), (18, "firing", "Stall", None)]
    # Still bad: no new transition, one alert for the series.
    assert run(ev, [(t, {"stall_ratio": 0.09}) for t in range(20, 40)]) == []
    assert len(ev.firing()) == 1


def test_for_zero_fires_on_the_first_bad_sample():
    rule = Rule("Now", "error_rate", threshold=0.1)
    assert run(Evaluator([rule]), [(0, {"error_rate": 0.2})]) == [(0, "firing", "Now", None)]


def test_keep_firing_for_matches_prometheus():
    rule = Rule("K", "error_rate", threshold=0.1, keep_firing_for=10)
    ev = Evaluator([rule])
    series = [(0, 0.2), (1, 0.0), (5, 0.2), (6, 0.0), (15, 0.0), (16, 0.0)]
    got = run(ev, [(t, {"error_rate": v}) for t, v in series])
    # false at 1, true again at 5 resets keep_firing_since; false from 6: still firing at 15
    # (15 - 6 < 10), resolved at 16.
    assert got == [(0, "firing", "K", None), (16, "resolved", "K", None)]


def test_min_volume_and_nulls_are_no_data():
    got = run(Evaluator([STALL]), [(0, {"stall_ratio": 0.5, "viewers": 5}),
                                   (1, {"stall_ratio": None}),
                                   (2, {"stall_ratio": 0.5, "viewers": None})])
    assert got == []                                  # a tiny room never pages


def test_per_cdn_series_and_a_cdn_that_leaves_the_window():
    rule = Rule("Cdn", "error_rate", scope="cdn", threshold=0.05, volume_metric="viewers",
                volume_min=10)
    ev = Evaluator([rule])
    bad = {"viewers": 50, "error_rate": 0.3}
    good = {"viewers": 50, "error_rate": 0.0}
    got = run(ev, [(0, {"cdn": {"a": bad, "b": good}}), (1, {"cdn": {"a": bad, "b": bad}}),
                   (2, {"cdn": {"b": good}})])
    assert got[:2] == [(0, "firing", "Cdn", "a"), (1, "firing", "Cdn", "b")]
    assert sorted(got[2:]) == [(2, "resolved", "Cdn", "a"), (2, "resolved", "Cdn", "b")]


def test_record_format():
    ev = Evaluator([STALL])
    trs = [tr for t in range(12) for tr in ev.evaluate(snap(t, stall_ratio=0.1))]
    record = trs[-1].record()
    assert record["kind"] == "alert" and record["state"] == "firing"
    assert record["rule"] == "Stall" and record["room_id"] == "r1" and record["cdn"] is None
    assert record["active_at"] == T0 and record["fired_at"] == T0 + 10
    assert record["summary"] == "r1 10%"
    assert record["labels"] == {"alertname": "Stall", "room": "r1", "severity": "critical"}


def test_forgotten_room_resolves_its_alerts():
    ev = Evaluator([Rule("Now", "error_rate", threshold=0.1)])
    ev.evaluate(snap(0, error_rate=0.5))
    [tr] = ev.forget_room("r1")
    assert tr.state == "resolved" and tr.ts == T0


# -- anomalies on generated series ------------------------------------------------------------

RULES = {r.name: r for r in load_config("alerts/alerting.yml").rules}


def noisy(level, t, rng, rel=0.03, wave=0.05):
    """A level with noise and a slow wave, as a show's metrics move."""
    return level * (1 + wave * math.sin(t / 300) + rng.gauss(0, rel))


def fired(rule, values, volume=1000, metric_overrides=None):
    ev = Evaluator([rule])
    times = []
    for t, v in enumerate(values):
        metrics = {rule.metric: v, "viewers": volume}
        for tr in ev.evaluate(snap(t, **metrics)):
            if tr.state == "firing":
                times.append(t)
    return times


@pytest.mark.parametrize("seed", range(5))
def test_viewer_drop_fires_on_a_30pct_drop_within_a_minute(seed):
    rng = random.Random(seed)
    # 10 minutes of a normal show, then 35% of the audience leaves over 45 s, and stays away.
    values = [noisy(2000, t, rng) for t in range(600)]
    values += [noisy(2000 * (1 - 0.35 * min(1, s / 45)), 600 + s, rng) for s in range(300)]
    times = fired(RULES["ViewerDrop"], values)
    assert len(times) == 1 and 600 <= times[0] <= 660


@pytest.mark.parametrize("seed", range(5))
def test_viewer_drop_is_quiet_on_noise_and_slow_decline(seed):
    rng = random.Random(seed)
    # Noise, a wave, and a slow 40% decline over 20 minutes (a show winding down).
    values = [noisy(2000 * (1 - 0.4 * t / 1200), t, rng) for t in range(1500)]
    assert fired(RULES["ViewerDrop"], values) == []


@pytest.mark.parametrize("seed", range(3))
def test_interaction_collapse(seed):
    rng = random.Random(seed)
    normal = [noisy(0.7, t, rng, rel=0.05) for t in range(900)]
    assert fired(RULES["InteractionCollapse"], normal) == []
    collapsed = normal + [noisy(0.2, t, rng, rel=0.05) for t in range(900, 1100)]
    times = fired(RULES["InteractionCollapse"], collapsed)
    assert len(times) == 1 and 900 <= times[0] <= 960


def orders_per_min(rng, seconds, rate_per_min, stop_at=None):
    """A 60 s window count of Poisson orders, as the engine computes orders_per_min."""
    stamps = []
    t = 0.0
    while t < seconds:
        t += rng.expovariate(rate_per_min / 60)
        if stop_at is None or t < stop_at:
            stamps.append(t)
    out, j, i = [], 0, 0
    for s in range(seconds):
        while i < len(stamps) and stamps[i] <= s:
            i += 1
        while j < i and stamps[j] <= s - 60:
            j += 1
        out.append(float(i - j))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_orders_stopped_while_viewers_stay(seed):
    rule = RULES["OrdersStopped"]
    quiet = orders_per_min(random.Random(seed), 3600, 10)
    assert fired(rule, quiet, volume=500) == []
    stopped = orders_per_min(random.Random(seed), 1500, 10, stop_at=900)
    times = fired(rule, stopped, volume=500)
    assert len(times) == 1 and 900 <= times[0] <= 1000
    # The same stop with the audience gone is not a payment failure.
    assert fired(rule, stopped, volume=100) == []


def test_anomaly_spike_and_relearn():
    rule = Rule("Spike", "danmaku_per_min", anomaly=Anomaly("spike", 1.0, 60, 60, z=3,
                                                          relearn_after=120))
    rng = random.Random(1)
    values = [noisy(100, t, rng) for t in range(300)] + [noisy(400, t, rng) for t in range(300, 800)]
    ev = Evaluator([rule])
    got = [(round(tr.ts - T0), tr.state) for t, v in enumerate(values)
           for tr in ev.evaluate(snap(t, danmaku_per_min=v))]
    # Fires at the jump; after `relearn_after` the new level is the baseline and it resolves.
    assert got == [(300, "firing"), (420, "resolved")]
