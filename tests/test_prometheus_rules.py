"""The Prometheus recording and alerting rules: promtool accepts them and their unit tests pass, and
those unit tests show every alerting rule firing, not firing and resolving."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from livemon.dashboards.queries import RULE_DIR, rule_files, rule_queries
from tests.fixtures.prometheus import PROMTOOL

UNIT_TESTS = sorted((RULE_DIR / "tests").glob("*.test.yml"))
MONITOR_ALERTS = {"MonitorWorkerDown", "LivemonStepStalled", "LivemonConsumerStalled", "LivemonBrokerDown",
                  "LivemonConsumerLagGrowing", "LivemonWorkerAtCapacity", "LivemonCheckpointStale",
                  "LivemonRejectedEventsSurge", "LivemonBatchesRejected", "LivemonAlertQueueBacklog",
                  "LivemonFailoverDeclined", "LivemonGroupLagOutside"}



def promtool(*args):
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=RULE_DIR)


def test_promtool_check_rules():
    files = [str(path) for path in rule_files()]
    assert {Path(f).name for f in files} == {"alerts.yml", "recording.yml"}
    result = promtool("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path):
    # The same tests against a rule whose hysteresis arm is gone must fail.
    (tmp_path / "tests").mkdir()
    broken = (RULE_DIR / "alerts.yml").read_text().replace(
        'ALERTS{alertname="RoomHighStallRatio"', 'ALERTS{alertname="Nothing"')
    (tmp_path / "alerts.yml").write_text(broken)
    for path in UNIT_TESTS:
        (tmp_path / "tests" / path.name).write_text(path.read_text())
    result = subprocess.run([PROMTOOL, "test", "rules", "tests/stream-health.test.yml"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode != 0 and "RoomHighStallRatio" in result.stdout + result.stderr


def parse_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total, number = 0.0, ""
    index = 0
    while index < len(text):
        if text[index].isdigit() or text[index] == ".":
            number += text[index]
            index += 1
            continue
        unit = "ms" if text[index:index + 2] == "ms" else text[index]
        total += float(number) * units[unit]
        number, index = "", index + len(unit)
    return total


def test_every_alerting_rule_is_unit_tested_firing_quiet_and_resolved():
    """For each alerting rule, some alert instance (label set) of a unit test is absent before it
    fires (pending or quiet), expected firing, and absent again later (resolved)."""
    alerts = {q.source.rsplit(" / ", 1)[1] for q in rule_queries() if q.kind == "alert"}
    covered = set()
    for path in UNIT_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            timelines: dict[str, list[tuple[float, set]]] = {}
            for case in test.get("alert_rule_test", []):
                firing = {frozenset(a["exp_labels"].items()) for a in case.get("exp_alerts") or []}
                timelines.setdefault(case["alertname"], []).append((parse_seconds(case["eval_time"]), firing))
            for alert, timeline in timelines.items():
                timeline.sort(key=lambda item: item[0])
                for index, (_, firing) in enumerate(timeline):
                    for instance in firing:
                        before = any(instance not in f for _, f in timeline[:index])
                        after = any(instance not in f for _, f in timeline[index + 1:])
                        if before and after:
                            covered.add(alert)
    assert sorted(alerts - covered) == []


def _number(value: float) -> str:
    return f"{value:g}"


# Worker only: the GMV pace needs the show targets (targets.toml), which Prometheus does not have.
WORKER_ONLY = {"GmvBehindPace"}


def _family(scope: str, name: str) -> str:
    """The exposed series of a rule's metric (scope room, cdn or pinned: the product's), with its
    extra labels as the rules select them."""
    from livemon import catalogue

    metric = next(m for m in catalogue.scoped({"pinned": "product"}.get(scope, scope)) if m.name == name)
    labels = ", ".join(f'{key}="{value}"' for key, value in metric.labels)
    return metric.exposed + (f"{{{labels}}}" if labels else "")


def test_equivalent_to_the_stream_default_rules():
    """Same names, `for`, `keep_firing_for`, severity, team, thresholds, short windows and minimum
    volumes as alerts/rules.yml, the rule set the workers evaluate."""
    stream = yaml.safe_load((RULE_DIR.parent / "rules.yml").read_text())["rules"]
    prometheus = {rule["alert"]: rule for group in yaml.safe_load((RULE_DIR / "alerts.yml").read_text())["groups"]
                  for rule in group["rules"] if "alert" in rule}
    assert {r["name"] for r in stream} - WORKER_ONLY <= set(prometheus)
    assert not WORKER_ONLY & set(prometheus)
    # Prometheus only: the monitor watched from outside (the workers cannot report their own absence)
    assert set(prometheus) - {r["name"] for r in stream} == MONITOR_ALERTS
    for rule in stream:
        if rule["name"] in WORKER_ONLY:
            continue
        twin = prometheus[rule["name"]]
        expr = " ".join(twin["expr"].split())
        scope = rule.get("scope", "room")
        assert parse_seconds(twin["for"]) == parse_seconds(rule["for"]), rule["name"]
        assert parse_seconds(twin.get("keep_firing_for", "0s")) == parse_seconds(rule.get("keep_firing_for", "0s"))
        assert twin["labels"] == {"severity": rule["severity"], **rule.get("labels", {})}, rule["name"]
        scale = 0.001 if rule["metric"].endswith("_ms") else 1  # the exposition is in seconds
        volume = rule["min_volume"]
        assert f"({_family(scope, volume['metric'])}) >= {volume['value']}" in expr, rule["name"]
        assert f"({_family(scope, rule['metric'])}" in expr, rule["name"]
        if "short" in rule:
            short = rule["short"] if isinstance(rule["short"], dict) else {"metric": rule["short"]}
            family = _family(scope, short["metric"])
            op = rule.get("op", ">")
            assert f"({family}) {op} {_number(rule['threshold'] * scale)} " in expr + " ", rule["name"]
            assert f"({family}) {op} {_number(rule['clear'] * scale)} " in expr + " ", rule["name"]
            if "min_volume" in short:
                gate = short["min_volume"]
                assert f"({_family(scope, gate['metric'])}) >= {gate['value']}" in expr, rule["name"]
        if "threshold" in rule:
            op = rule.get("op", ">")
            assert f"{op} {_number(rule['threshold'] * scale)} " in expr + " ", rule["name"]
            assert f"{op} {_number(rule['clear'] * scale)} " in expr + " ", rule["name"]
            assert f'ALERTS{{alertname="{rule["name"]}", alertstate="firing"}}' in expr
        else:
            anomaly = rule["anomaly"]
            assert f"< {_number(round(1 - anomaly['min_change'], 6))} * " in expr, rule["name"]
            if "min_baseline" in anomaly:
                assert f">= {_number(anomaly['min_baseline'])} " in expr, rule["name"]
            assert f"offset {anomaly['warmup']}" in expr, rule["name"]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    import re
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in markdown.splitlines() if line.startswith("#")}


def test_every_rule_has_summary_description_and_a_runbook_url_that_resolves():
    """Prometheus rules and the stream's rules: `runbook_url` is a docs/ALERTING.md anchor that exists."""
    anchors = _anchors((RULE_DIR.parents[1] / "docs" / "ALERTING.md").read_text())
    prometheus = [(rule["alert"], rule["annotations"]) for group in yaml.safe_load((RULE_DIR / "alerts.yml").read_text())["groups"]
                  for rule in group["rules"] if "alert" in rule]
    stream = [(rule["name"], rule["annotations"]) for rule in yaml.safe_load((RULE_DIR.parent / "rules.yml").read_text())["rules"]]
    for name, annotations in prometheus + stream:
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "docs/ALERTING.md" and anchor == name.lower() and anchor in anchors, name
