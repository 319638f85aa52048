"""Fast detection and the rules on products and targets: the 10 s window beside the 60 s one (in
the engine and in rules), the pinned product's payment rule, the GMV pace rule, and
`livemon bench-alerts`' timing and false-alarm count."""

import asyncio
import textwrap

import pytest

from livemon.alerting.config import load_config
from livemon.alerting.evaluator import Evaluator
from livemon.alerting.latency import false_alarms, long_window_only, run_outage, summarize
from livemon.alerting.rules import Rule, load_rules
from livemon.alerting.schema import ConfigError
from livemon.engine import Engine, EngineConfig
from livemon.ingest.events import Health, View

T0 = 1_700_000_000.0
DEFAULTS = {rule.name: rule for rule in load_config("alerts/alerting.yml").rules}


def snap(t, room="r1", cdn=None, show=None, products=None, **metrics):
    metrics.setdefault("viewers", 100)
    return {"ts": T0 + t, "room_id": room, "metrics": metrics, "cdn": cdn or {}, "show": show,
            "products": products or {}}


def transitions(evaluator, snapshots):
    return [(round(tr.ts - T0), tr.state, tr.alert.rule.name, tr.value)
            for s in snapshots for tr in evaluator.evaluate(s)]


# -- the engine's short window ------------------------------------------------------------------

def test_a_sudden_stall_shows_in_the_10s_figures_long_before_the_60s_ones():
    engine = Engine(EngineConfig(admit_events=1))
    events = [View("r1", f"u{i}", T0, "enter") for i in range(20)]
    # 50 s healthy, then every beacon half stalled: one beacon per viewer per second.
    for second in range(1, 61):
        for i in range(20):
            stalled = second > 50
            events.append(Health("r1", f"u{i}", T0 + second, cdn="cdn-a", play_ms=500 if stalled else 1000,
                                 stall_ms=500 if stalled else 0, stall_count=int(stalled), latency_ms=9000.0 if stalled else 3000.0,
                                 error="ERR_CDN_5XX" if stalled and i < 2 else None,
                                 startup_ms=2500.0 if stalled and i < 10 else (800.0 if i < 10 else None)))
    engine.ingest(events, T0 + 60)
    live = engine.live_snapshots(T0 + 60)["r1"]
    room, cdn = live["metrics"], live["cdn"]["cdn-a"]
    for figures in (room, cdn):
        assert figures["stall_ratio_10s"] == pytest.approx(0.5)           # the last 10 s only
        assert figures["stall_ratio"] == pytest.approx(5000 / 60000)      # 10 of 60 s, diluted
        assert figures["error_rate_10s"] == pytest.approx(0.1) and figures["error_rate"] == pytest.approx(1 / 60)
        assert figures["latency_p95_ms_10s"] == pytest.approx(9000, rel=0.02)
        assert figures["latency_p95_ms"] == pytest.approx(9000, rel=0.02)  # 1/6 of the beacons: over the p95
        assert figures["fast_start_ratio_10s"] == 0.0 and figures["fast_start_ratio"] == pytest.approx(5 / 6)
    assert room["startups_10s"] == 100 and room["startups"] == 600 and cdn["startups"] == 600


# -- rules with a short window ------------------------------------------------------------------

STALL = Rule("Stall", "stall_ratio", short="stall_ratio_10s", threshold=0.05, clear=0.03, for_=10,
             volume_metric="viewers", volume_min=20)


def test_either_window_breaching_holds_and_the_worse_value_is_reported():
    long_only = Evaluator([Rule("Stall", "stall_ratio", threshold=0.05, clear=0.03, for_=10)])
    both = Evaluator([STALL])
    # A sudden fault: the 10 s window jumps at once, the 60 s one creeps up.
    series = [snap(t, stall_ratio=0.005 + 0.002 * t, stall_ratio_10s=0.2) for t in range(30)]
    assert transitions(both, series)[:2] == [(0, "pending", "Stall", 0.2), (10, "firing", "Stall", 0.2)]
    assert transitions(long_only, series) == [(23, "pending", "Stall", pytest.approx(0.051))]  # 23 s later
    # Once firing, both windows must be back under the clear line.
    later = [snap(40, stall_ratio=0.02, stall_ratio_10s=0.04), snap(41, stall_ratio=0.02, stall_ratio_10s=0.02)]
    assert transitions(both, later) == [(41, "resolved", "Stall", 0.02)]


def test_a_short_window_with_too_few_samples_is_no_data():
    rule = DEFAULTS["CdnSlowStarts"]
    assert (rule.short, rule.short_volume_metric, rule.short_volume_min) == ("fast_start_ratio_10s", "startups_10s", 10)
    evaluator = Evaluator([rule])

    def cdn(t, short_starts):
        return snap(t, cdn={"cdn-a": {"viewers": 300, "startups": 60, "fast_start_ratio": 0.95,
                                      "fast_start_ratio_10s": 0.5, "startups_10s": short_starts}})
    # Two slow plays of four in 10 s: one phone, not the CDN.
    assert transitions(evaluator, [cdn(t, 4) for t in range(30)]) == []
    got = transitions(evaluator, [cdn(t, 12) for t in range(30, 60)])
    assert got[:2] == [(30, "pending", "CdnSlowStarts", 0.5), (45, "firing", "CdnSlowStarts", 0.5)]


@pytest.mark.parametrize("short, words", [
    ("nope_10s", "unknown room metric 'nope_10s'"),
    ("stall_ratio", "another window of 'stall_ratio'"),
    ("latency_p95_ms_10s", "another window of 'stall_ratio'"),   # ms beside a ratio
    ("{metric: stall_ratio_10s, min_volume: {metric: nope, value: 3}}", "unknown room metric 'nope'"),
])
def test_a_bad_short_window_is_reported_with_its_line(tmp_path, short, words):
    path = tmp_path / "rules.yml"
    path.write_text(textwrap.dedent(f"""\
        rules:
          - name: A
            metric: stall_ratio
            short: {short}
            threshold: 0.05
        """))
    with pytest.raises(ConfigError) as error:
        load_rules(path)
    assert words in str(error.value) and f"{path}:" in str(error.value)


# -- the pinned product's payment path -----------------------------------------------------------

def pinned(t, product, clickers, orders, other_orders=5):
    return snap(t, show={"id": "s1", "start": T0, "pinned": product},
                products={product: {"clickers": clickers, "carts": 10, "orders": orders, "gmv": 99.0 * orders,
                                    "ctr": 0.2, "conversion_rate": orders / clickers},
                          "sku-other": {"clickers": 5, "carts": 1, "orders": other_orders, "gmv": 10.0,
                                        "ctr": 0.01, "conversion_rate": 0.5}})


def test_payments_of_the_pinned_product_stopping_while_clicks_go_on_fire_with_its_label():
    rule = DEFAULTS["PinnedProductPaymentsStopped"]
    evaluator = Evaluator([rule])
    selling = [pinned(t, "sku-1", 120, 8) for t in range(0, 300)]
    assert transitions(evaluator, selling) == []
    # The payment path of the pinned product breaks: clicks go on, its orders drain from the window.
    broken = [pinned(t, "sku-1", 120, max(0, 8 - (t - 300) // 5)) for t in range(300, 420)]
    got = transitions(evaluator, broken)
    assert [state for _, state, _, _ in got] == ["pending", "firing"]
    (_, _, _, fired_value), fired_at = got[1], got[1][0]
    assert fired_value == 0 and fired_at - got[0][0] == 30
    [alert] = evaluator.firing()
    assert alert.labels() == {"alertname": rule.name, "room": "r1", "product": "sku-1", "severity": "critical",
                              "team": "payments"}
    assert "sku-1" in alert.annotations()["summary"]
    # Another product pinned: the broken one's series has no data any more and resolves; its
    # baseline goes with it.
    got = transitions(evaluator, [pinned(t, "sku-2", 120, 8) for t in range(420, 460)])
    assert got[0][1] == "resolved" and ("PinnedProductPaymentsStopped", "r1", "sku-1") not in evaluator.baselines


def test_a_pinned_products_alert_travels_with_its_room_to_another_worker():
    rule = DEFAULTS["PinnedProductPaymentsStopped"]
    first = Evaluator([rule])
    transitions(first, [pinned(t, "sku-1", 120, 8) for t in range(0, 300)]
                + [pinned(t, "sku-1", 120, 0) for t in range(300, 340)])
    [alert] = first.firing()
    second = Evaluator([rule])
    [taken] = second.import_rooms(first.export_rooms(["r1"]))
    assert (taken.id, taken.labels()) == (alert.id, alert.labels())
    # It goes on firing there with no second `for`, and resolves once another product is pinned.
    assert transitions(second, [pinned(340, "sku-1", 120, 0)]) == []
    assert [state for _, state, _, _ in transitions(second, [pinned(341, "sku-2", 120, 8)])] == ["resolved"]


def test_few_clicks_or_a_product_just_pinned_do_not_fire():
    evaluator = Evaluator([DEFAULTS["PinnedProductPaymentsStopped"]])
    # Pinned a minute ago: clicks come long before its first paid orders.
    assert transitions(evaluator, [pinned(t, "sku-1", 150, 0) for t in range(0, 100)]) == []
    # Orders stop, but only a handful of viewers click: no evidence the path is broken.
    quiet = Evaluator([DEFAULTS["PinnedProductPaymentsStopped"]])
    history = [pinned(t, "sku-1", 120, 8) for t in range(0, 300)] + [pinned(t, "sku-1", 20, 0) for t in range(300, 500)]
    assert transitions(quiet, history) == []


# -- the GMV pace against the show target -----------------------------------------------------------

def test_gmv_behind_the_pace_of_the_show_target_fires_from_the_targets_file(tmp_path, monkeypatch):
    (tmp_path / "targets.toml").write_text('[default]\ngmv = 100000\nminutes = 100\n'
                                           '[rooms.r2]\ngmv = 1000\n'
                                           '[shows."r3.big"]\ngmv = 2000000\nminutes = 100\n')
    monkeypatch.setenv("LIVEMON_WEB_TARGETS", str(tmp_path / "targets.toml"))
    config = load_config("alerts/alerting.yml")
    assert config.targets["default"] == {"gmv": 100000, "minutes": 100}
    evaluator = Evaluator([r for r in config.rules if r.name == "GmvBehindPace"], config.targets)

    def show(t, room, gmv, show_id="s"):
        return snap(t, room=room, show={"id": show_id, "start": T0, "pinned": None}, gmv_total=gmv)
    # 100 000 over 100 minutes: 1 000 a minute is on pace. r1 sells 700 a minute (pace 0.7); r2's own
    # target (1 000, the default's 100 minutes) is on pace at 10 a minute; r3's show has a 20x target.
    got = []
    for t in range(0, 60 * 30, 5):
        got += [(room, tr.state, round(tr.ts - T0), round(tr.value, 2))
                for room, gmv, show_id in (("r1", 700 * t / 60, "s"), ("r2", 10 * t / 60, "s"), ("r3", 1000 * t / 60, "big"))
                for tr in evaluator.evaluate(show(t, room, gmv, show_id))]
    # Quiet for the first 15% of the show (15 minutes), pending then, firing 5 minutes later.
    assert got == [("r1", "pending", 900, 0.7), ("r3", "pending", 900, 0.05),
                   ("r1", "firing", 1200, 0.7), ("r3", "firing", 1200, 0.05)]


def test_without_targets_the_pace_rule_has_no_data(monkeypatch):
    monkeypatch.delenv("LIVEMON_WEB_TARGETS", raising=False)
    config = load_config("alerts/alerting.yml")
    evaluator = Evaluator(config.rules, config.targets)
    assert transitions(evaluator, [snap(t, show={"id": "s", "start": T0, "pinned": None}, gmv_total=0.0)
                                   for t in range(0, 6000, 60)]) == []


# -- livemon bench-alerts -----------------------------------------------------------------------

def test_false_alarms_are_counted_per_rule_set_on_the_same_show():
    touchy = Rule("Touchy", "stall_ratio", short="stall_ratio_10s", threshold=0.0, for_=0)
    strict = Rule("Strict", "stall_ratio", short="stall_ratio_10s", threshold=0.9, for_=0)
    counts = false_alarms("normal", {"both": [touchy, strict], "long": long_window_only([touchy, strict])},
                          rooms=2, rate=100, duration=40)
    assert counts["both"]["Touchy"] >= 1 and counts["long"]["Touchy"] >= 1
    assert counts["both"]["Strict"] == counts["long"]["Strict"] == 0
    assert all(rule.short is None for rule in long_window_only([touchy]))


def test_every_stream_rule_fires_on_a_cdn_outage_within_for_plus_5_of_its_symptom(tmp_path):
    summary = summarize(asyncio.run(run_outage(tmp_path)))
    assert summary["missed"] == []
    stream = {name for name, rule in DEFAULTS.items() if rule.short}
    assert stream <= set(summary["alerts"])
    for name in stream:
        row = summary["alerts"][name]
        assert row["within_for_plus_5_of_onset"], (name, row)
        assert row["detect_s"] >= row["symptom_s"] + row["for_s"] - 1, (name, row)  # it did wait its `for`
    assert summary["failover"]["within_for_plus_5"]
