"""Every PromQL expression of the dashboards and the rule files, run against a real Prometheus that
scrapes a real `livemon worker` processing simulated traffic with a CDN outage.

Each expression must parse and evaluate; dashboard and recording-rule expressions must return data;
alert expressions are conditions (empty while all is well), so each metric selector inside them must
return data instead. A renamed metric on either side breaks this test.
"""

from __future__ import annotations

import subprocess
import sys
import time


from livemon.dashboards.queries import (
    Query, dashboard_queries, rule_files, rule_queries, selectors, to_promql,
)
from tests.fixtures.prometheus import QueryError, free_port


HOT_ROOM = "room-001"  # the simulator's hot room: the one whose CDN fails

# Selectors that may be empty here, and why. Everything else must return data.
ALLOWED_EMPTY = {
    "ALERTS": "Prometheus's own alert state: its `for` runs on the wall clock, while the simulated outage "
              "(event time at 4x) is failed over within seconds; the firing path of every rule is proven "
              "by the promtool unit tests (alerts/prometheus/tests/).",
    "livemon_batches_rejected_total": "a series per reason is born with the first unreadable batch; the simulator's "
                                      "bad input is readable batches of bad events (alerts/prometheus/tests/monitor.test.yml "
                                      "proves the rule; tests/test_faults_producers.py the counter)",
    "livemon_records_rejected_total": "a series per topic is born with the first unusable record of the product's own "
                                      "topics, which a healthy run never has (monitor.test.yml proves the rule)",
    "livemon_group_commit_age_seconds": "served by livemon lag-exporter, not the worker; tests/test_lag_outside.py "
                                        "has Prometheus evaluate the rule on a live exporter",
    'livemon_cdn_failover_decisions_total{decision="declined"}': "only when no healthy CDN is left or an operator pinned "
                                      "the room; the simulated outage has healthy CDNs (monitor.test.yml proves the rule)",
}


def allowed_empty(text: str) -> str | None:
    return next((reason for name, reason in ALLOWED_EMPTY.items() if text.startswith(name)), None)


def has_data(prometheus, selector: str, since: float) -> bool:
    """The selector has had samples since `since` (a gauge of something that ended may be gone)."""
    try:
        return bool(prometheus.query_range(selector, since))
    except QueryError:
        return False


def problems(prometheus, queries: list[Query], room: str, since: float) -> list[str]:
    """What is wrong with each query, run as Grafana or Prometheus runs it (instant, or over the
    range since `since`)."""
    found = []
    for query in queries:
        expr = to_promql(query.expr, {"room": room})
        try:
            result = prometheus.query(expr) if query.instant else prometheus.query_range(expr, since)
        except QueryError as error:
            found.append(f"{query.source}: {error}\n    {expr}")
            continue
        empty_selectors = [s for s in selectors(expr) if not allowed_empty(s) and not has_data(prometheus, s, since)]
        if empty_selectors:
            found.append(f"{query.source}: no data for {', '.join(empty_selectors)}")
        elif query.kind != "alert" and not result and not any(allowed_empty(s) for s in selectors(expr)):
            found.append(f"{query.source}: the expression returns no data\n    {expr}")
    return found


def test_every_dashboard_and_rule_query_returns_data(make_broker, start_worker, prometheus_server,
                                                      monkeypatch, tmp_path):
    broker = make_broker()  # private: no other test's rooms in it
    # A webhook receiver that is down, so the notification and queue metrics exist.
    monkeypatch.setenv("LIVEMON_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/down")
    worker = start_worker(broker, "--no-web-page", group="prometheus-proof")
    with open(tmp_path / "simulate.log", "wb") as log:
        simulator = subprocess.Popen(
            [sys.executable, "-m", "livemon", "simulate", "--broker", broker, "--scenario", "normal,cdn-outage,bad-input",
             "--rooms", "3", "--rate", "400", "--duration", "0", "--speed", "4", "--fault-at", "20",
             "--fault-for", "600", "--seed", "7", "--quiet"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        prometheus = prometheus_server([worker.url.removeprefix("http://")], rule_files=rule_files())
        since = time.time()
        queries = dashboard_queries() + rule_queries()
        wanted = sorted({s for q in queries for s in selectors(to_promql(q.expr, {"room": HOT_ROOM}))
                         if not allowed_empty(s)})
        deadline = time.monotonic() + 90
        missing = wanted
        while missing and time.monotonic() < deadline:
            assert simulator.poll() is None, (tmp_path / "simulate.log").read_text()[-3000:]
            time.sleep(2)
            missing = [s for s in missing if not has_data(prometheus, s, since)]
        # rate() and increase() need two samples; recording rules one more evaluation
        time.sleep(6)
        rooms = {r["metric"]["room"] for r in prometheus.query("livemon_room_online")}
        assert HOT_ROOM in rooms, rooms
        found = problems(prometheus, queries, HOT_ROOM, since)
        assert not found, "\n".join(found) + f"\nworker log:\n{worker.log()[-2000:]}"
    finally:
        simulator.terminate()
        simulator.wait(10)


def test_a_renamed_metric_is_caught(prometheus_server):
    """The check itself: an expression naming a metric nobody exposes is reported."""
    prometheus = prometheus_server([f"127.0.0.1:{free_port()}"])  # scrapes nothing
    bad = [Query("test", 'max by (room) (livemon_room_online_viewers{room="$room"})', "panel"),
           Query("test", "sum(rate(livemon_events_total[1m]) > 0 and on () vector(1)", "alert"),
           Query("test", "vector(1)", "panel")]
    found = problems(prometheus, bad, HOT_ROOM, time.time() - 60)
    assert len(found) == 2
    assert "no data for livemon_room_online_viewers" in found[0]
    assert "bad_data" in found[1]  # a parse error
