"""`livemon incidents`: time to detect, acknowledge and resolve per show and per ISO week, from the
incident records of recorded shows (simulated shows replayed by the workers' engine, their final
snapshots run through the real alerting service, everything recorded as the hub records it)."""

from __future__ import annotations

import json
import statistics
from datetime import date, datetime, time as dtime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from livemon.alerting.config import ServiceConfig, load_config
from livemon.alerting.service import AlertService
from livemon.cli import cli
from livemon.recording.cli import import_summaries, import_timeline
from livemon.recording.store import RecordingStore
from livemon.replay import replay_lines
from livemon.simulator.core import generate

CST = timezone(timedelta(hours=8))
ACK_AFTER = 45.0          # the operator acknowledges the room's open incidents 45 s after its first firing


def monday(weeks_ago: int) -> date:
    """The local Monday `weeks_ago` weeks before this one (recent, so the store's retention keeps it)."""
    today = datetime.now(CST).date()
    return today - timedelta(days=today.weekday() + 7 * weeks_ago)


def local(day: date, hour: int, minute: int = 0) -> float:
    return datetime.combine(day, dtime(hour, minute), CST).timestamp()


# (scenario, start, duration, seed): two outage shows in one week, a calm one and an outage the next
# week, and a calm show three weeks back, outside the period the tests ask for.
SHOWS = [
    ("normal,cdn-outage", lambda: local(monday(2), 20), 330, 1),
    ("normal,cdn-outage", lambda: local(monday(2) + timedelta(days=2), 21, 30), 330, 2),
    ("normal", lambda: local(monday(1), 19), 120, 3),
    ("normal,cdn-outage", lambda: local(monday(1) + timedelta(days=6), 23, 50), 330, 4),
    ("normal", lambda: local(monday(3) + timedelta(days=4), 20), 120, 5),
]
PERIOD = (str(monday(2)), str(monday(1) + timedelta(days=6)))


def record_show(store: RecordingStore, folder: Path, scenario: str, start: float, duration: float, seed: int):
    """One simulated show: replayed, imported with its summary, and alerted on; returns its summary
    and the alert, failover and incident records the alerting service published."""
    lines = [m.value for m in generate(scenario, rooms=1, duration=duration, rate=80, bad_fraction=0,
                                       start=start, seed=seed)]
    summaries: list[dict] = []
    timeline = list(replay_lines(lines, shows=summaries))
    [summary] = summaries
    (folder / "timeline.jsonl").write_bytes(b"".join(orjson.dumps(s, option=orjson.OPT_APPEND_NEWLINE) for s in timeline))
    (folder / "shows.jsonl").write_bytes(orjson.dumps(summary, option=orjson.OPT_APPEND_NEWLINE))
    import_timeline(store, folder / "timeline.jsonl")
    assert import_summaries(store, folder / "shows.jsonl") == 1
    config = load_config(Path(__file__).parents[1] / "alerts" / "alerting.yml")
    service = AlertService(ServiceConfig(rules=config.rules, failover=config.failover))
    published, first_fired = [], None
    for snapshot in timeline:
        now = snapshot["ts"]
        published += service.evaluate({snapshot["room_id"]: snapshot}, now)
        fired = [r for r in published if r.get("kind") == "incident"]
        if fired and first_fired is None:
            first_fired = min(r["fired_ts"] for r in fired)
        if first_fired is not None and first_fired + ACK_AFTER <= now < first_fired + ACK_AFTER + 1:
            published += service.handle_operator({"action": "ack", "room_id": snapshot["room_id"], "by": "场控-王"}, now)
    records = [r for r in published if r.get("kind") in ("alert", "failover", "incident")]
    for record in records:   # as the hub records them: with the clock of their arrival (here event time)
        when = record.get("ts") or max(v for k, v in record.items() if k.endswith("_ts") and v is not None)
        store.write(records=[record], wall=when)
    return summary, records


_BUILT: dict = {}


def build_recorded(tmp_path_factory):
    """The five shows recorded into one data dir, once per test session (the period report's tests
    read the same): (data dir, [(summary, records)] in SHOWS order)."""
    if "data" not in _BUILT:
        data = tmp_path_factory.mktemp("incidents") / "data"
        store = RecordingStore(data)
        shows = []
        for index, (scenario, start, duration, seed) in enumerate(SHOWS):
            folder = tmp_path_factory.mktemp(f"show{index}")
            shows.append(record_show(store, folder, scenario, start(), duration, seed))
        store.close()
        _BUILT["data"] = (data, shows)
    return _BUILT["data"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return build_recorded(tmp_path_factory)


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


# ---- the independent computation ------------------------------------------------------------------

def final_incidents(records: list[dict]) -> dict[str, dict]:
    """Each incident as its last published record has it (the service publishes it whole)."""
    return {r["id"]: r for r in records if r["kind"] == "incident"}


def times(incident: dict) -> dict:
    def gap(a, b):
        return None if incident[a] is None or incident[b] is None else incident[b] - incident[a]
    return {"detect": gap("first_bad_ts", "fired_ts"), "ack": gap("fired_ts", "acked_ts"),
            "resolve": gap("first_bad_ts", "resolved_ts")}


def expected(incidents: list[dict]) -> dict:
    got = [times(i) for i in incidents]
    resolve = sorted(t["resolve"] for t in got if t["resolve"] is not None)
    mean = lambda name: round(statistics.fmean(v), 1) if (v := [t[name] for t in got if t[name] is not None]) else None
    return {"incidents": len(incidents), "resolved": len(resolve),
            "acknowledged": sum(i["acked_ts"] is not None for i in incidents),
            "mttd": mean("detect"), "mtta": mean("ack"), "mttr": mean("resolve"),
            "p90_resolve": resolve[-(-len(resolve) * 9 // 10) - 1] if resolve else None,
            "within_goal": sum(v <= 900 for v in resolve)}


def as_expected(row: dict) -> dict:
    return {"incidents": row["incidents"], "resolved": row["resolved"], "acknowledged": row["acknowledged"],
            "mttd": row["mean_time_to_detect"], "mtta": row["mean_time_to_acknowledge"], "mttr": row["mttr"],
            "p90_resolve": row["p90_time_to_resolve"], "within_goal": row["resolved_within_goal"]}


def iso_week(ts: float) -> str:
    year, week, _ = datetime.fromtimestamp(ts, CST).isocalendar()
    return f"{year}-W{week:02d}"


# ---- tests -----------------------------------------------------------------------------------------

def test_the_fixture_has_incidents_of_every_kind(recorded):
    _, shows = recorded
    incidents = [i for _, records in shows[:2] for i in final_incidents(records).values()]
    assert len(incidents) >= 8
    assert any(i["resolved_ts"] is not None for i in incidents) and any(i["resolved_ts"] is None for i in incidents)
    assert any(i["acked_ts"] is not None for i in incidents) and any(i["acked_ts"] is None for i in incidents)
    assert final_incidents(shows[2][1]) == {}        # the calm show


def test_per_show_per_week_and_total_match_the_incident_records(recorded):
    data, shows = recorded
    result = run("incidents", "--from", PERIOD[0], "--to", PERIOD[1], "--data-dir", data, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    in_period = shows[:4]
    assert [row["start"] for row in report["shows"]] == [s["start"] for s, _ in in_period]
    for row, (summary, records) in zip(report["shows"], in_period):
        assert row["room_id"] == summary["room_id"] and row["week"] == iso_week(summary["start"])
        assert as_expected(row) == expected(list(final_incidents(records).values())), row["show"]
    weeks: dict[str, list] = {}
    for summary, records in in_period:
        weeks.setdefault(iso_week(summary["start"]), []).extend(final_incidents(records).values())
    assert [w["week"] for w in report["weeks"]] == sorted(weeks) and len(weeks) == 2
    for row in report["weeks"]:
        assert as_expected(row) == expected(weeks[row["week"]]), row["week"]
    assert [w["shows"] for w in report["weeks"]] == [2, 2]
    every = [i for _, records in in_period for i in final_incidents(records).values()]
    assert as_expected(report["total"]) == expected(every)
    assert report["total"]["open"] == len(every) - report["total"]["resolved"] > 0
    assert report["goal_seconds"] == 900 and report["utc_offset"] == "+08:00"
    listed = {i["id"]: i for i in report["incidents"]}
    assert set(listed) == {i["id"] for i in every}
    for incident in every:
        assert listed[incident["id"]]["time_to_resolve"] == times(incident)["resolve"]
        assert listed[incident["id"]]["acked_by"] == (incident["acked_by"])
    # The show three weeks back is outside the period; the calm show is listed with no incident.
    assert shows[4][0]["start"] not in [row["start"] for row in report["shows"]]
    assert report["shows"][2]["incidents"] == 0 and report["shows"][2]["mttr"] is None


def test_table_in_chinese_by_default_and_english(recorded):
    data, shows = recorded
    result = run("incidents", "--from", PERIOD[0], "--to", PERIOD[1], "--data-dir", data)
    assert result.exit_code == 0, result.output
    assert "故障处理时长" in result.output and "按周(ISO)" in result.output and "平均恢复" in result.output
    for week in {iso_week(s["start"]) for s, _ in shows[:4]}:
        assert week in result.output
    result = run("incidents", "--from", PERIOD[0], "--to", PERIOD[1], "--data-dir", data, env={"LIVEMON_LANG": "en"})
    assert result.exit_code == 0, result.output
    assert "Per ISO week" in result.output and "MTTR" in result.output and "goal: resolved within 15 minutes" in result.output
    lines = result.output.splitlines()
    total = next(line for line in lines if line.startswith("total"))
    every = [i for _, records in shows[:4] for i in final_incidents(records).values()]
    assert total.split()[1:3] == ["4", str(len(every))]          # shows, incidents


def test_one_day_holds_the_show_of_that_day(recorded):
    data, shows = recorded
    day = datetime.fromtimestamp(shows[1][0]["start"], CST).date()
    result = run("incidents", "--from", day, "--to", day, "--data-dir", data, "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)["shows"]
    assert row["start"] == shows[1][0]["start"]
    # The show at 23:50 on a Sunday at UTC+08:00 began at 00:50 on Monday at UTC+09:00: another day and week.
    late = shows[3][0]["start"]
    sunday = datetime.fromtimestamp(late, CST).date()
    result = run("incidents", "--from", sunday, "--to", sunday, "--data-dir", data, "--json", "--utc-offset", "+09:00")
    assert result.exit_code == 1 and "之间没有录制的直播场次" in result.output
    monday_after = sunday + timedelta(days=1)
    result = run("incidents", "--from", monday_after, "--to", monday_after, "--data-dir", data, "--json",
                 "--utc-offset", "+09:00")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [r["start"] for r in report["shows"]] == [late]
    assert report["shows"][0]["week"] == f"{monday_after.isocalendar()[0]}-W{monday_after.isocalendar()[1]:02d}"


def test_clear_errors(recorded, tmp_path):
    data, _ = recorded
    result = run("incidents", "--from", "2026-13-01", "--to", PERIOD[1], "--data-dir", data)
    assert result.exit_code == 2 and "--from must be a date like" in result.output
    result = run("incidents", "--from", PERIOD[1], "--to", PERIOD[0], "--data-dir", data)
    assert result.exit_code == 2 and "is after --to" in result.output
    result = run("incidents", "--from", PERIOD[0], "--to", PERIOD[1], "--utc-offset", "8", "--data-dir", data)
    assert result.exit_code == 2 and "--utc-offset must look like +08:00" in result.output
    result = run("incidents", "--from", "2020-01-01", "--to", "2020-01-31", "--data-dir", data,
                 env={"LIVEMON_LANG": "en"})
    assert result.exit_code == 1 and "no shows between 2020-01-01 and 2020-01-31" in result.output
    result = run("incidents", "--from", "2020-01-01", "--to", "2020-01-31", "--data-dir", data)
    assert result.exit_code == 1 and "之间没有录制的直播场次" in result.output
    result = run("incidents", "--from", PERIOD[0], "--to", PERIOD[1], "--data-dir", tmp_path / "nothing")
    assert result.exit_code == 1 and "no recording in" in result.output
    assert not (tmp_path / "nothing").exists()


def test_an_incident_folds_from_its_records_in_any_order(recorded):
    import random

    from livemon.recording.mttr import fold

    _, shows = recorded
    records = [r for _, recs in shows[:2] for r in recs]
    want = {i["id"]: times(i) for i in final_incidents(records).values()}
    for seed in range(3):
        shuffled = records + records[: len(records) // 2]      # redelivered too
        random.Random(seed).shuffle(shuffled)
        got = {i.id: i.durations() for i in fold(shuffled)}
        assert got == {k: {"time_to_detect": v["detect"], "time_to_acknowledge": v["ack"],
                           "time_to_resolve": v["resolve"]} for k, v in want.items()}


def test_a_period_over_the_show_limit_is_refused(recorded, monkeypatch):
    from livemon.recording import mttr

    data, _ = recorded
    monkeypatch.setattr(mttr, "MAX_SHOWS", 3)
    result = run("incidents", "--from", PERIOD[0], "--to", PERIOD[1], "--data-dir", data)
    assert result.exit_code == 1 and "4 shows between" in result.output and "shorter period" in result.output
