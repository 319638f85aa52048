"""Incident times over a period of recorded shows: `livemon incidents --from DATE --to DATE`.

The incidents are the records the alerting service publishes (`livemon.alerting.incidents`,
`kind: incident`, the whole incident after each change) as the recording keeps them, each with the
show of its room it happened in; the workers' own incident books hold the same records, but only
while a worker keeps its data dir, and each only for its own rooms. An incident is folded from its
records (a field once set stays set), and its times are those of `Incident.durations()`: to detect
(first bad sample -> fired), to acknowledge (fired -> acknowledged), to resolve (first bad sample ->
resolved), in event time. The figures per show and per ISO week are those of
`livemon.alerting.incidents.report`, against the goal of resolving within 15 minutes.

A period is a range of local dates, both included (`--utc-offset`, +08:00 by default as in
`livemon replay`); a show is in it when it started on one of those dates, and belongs to the ISO
week of its start (local time). Its incidents go with it.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import click
import orjson

from livemon.alerting.incidents import RESOLVE_GOAL_SECONDS, Incident, report
from livemon.engine.config import utc_offset_seconds
from livemon.recording.cli import _open_store, data_dir_option

MAX_SHOWS = 10_000          # shows a report reads at most (the recording keeps 30 days)
DAY = 86400


class PeriodError(ValueError):
    """Bad dates or offset, or a period without a recorded show."""


def lang() -> str:
    """The language of the reports' text: $LIVEMON_LANG (zh or en), else Chinese."""
    value = os.environ.get("LIVEMON_LANG", "zh").lower()[:2]
    return value if value in ("zh", "en") else "zh"


@dataclass(frozen=True)
class Period:
    first: date
    last: date
    offset: int              # seconds east of UTC of the local time
    offset_text: str

    @classmethod
    def parse(cls, first: str, last: str, utc_offset: str = "+08:00") -> Period:
        offset = utc_offset_seconds(utc_offset)
        if offset is None:
            raise PeriodError(f"--utc-offset must look like +08:00 or -05:30, got {utc_offset!r}")
        days = []
        for name, text in (("--from", first), ("--to", last)):
            try:
                days.append(date.fromisoformat(str(text).strip()))
            except ValueError:
                raise PeriodError(f"{name} must be a date like 2026-11-01, got {text!r}") from None
        if days[0] > days[1]:
            raise PeriodError(f"--from {days[0]} is after --to {days[1]}")
        return cls(days[0], days[1], offset, utc_offset.strip())

    @property
    def zone(self) -> timezone:
        return timezone(timedelta(seconds=self.offset))

    @property
    def start(self) -> float:
        """The first instant of the period (Unix seconds)."""
        return datetime.combine(self.first, datetime.min.time(), self.zone).timestamp()

    @property
    def end(self) -> float:
        """The instant after the period: midnight after its last day."""
        return self.start + ((self.last - self.first).days + 1) * DAY

    def local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.zone)

    def week(self, ts: float) -> str:
        """The ISO week of an instant in local time, as 2026-W48."""
        year, week, _ = self.local(ts).isocalendar()
        return f"{year}-W{week:02d}"

    def empty(self) -> str:
        """The message for a period without a recorded show, in the report's language."""
        if lang() == "en":
            return f"no shows between {self.first} and {self.last} (UTC{self.offset_text}); see `livemon shows`"
        return f"{self.first} 至 {self.last}(UTC{self.offset_text})之间没有录制的直播场次;见 `livemon shows`"

    def shows(self, store) -> list[dict]:
        """The recorded shows that started in the period, oldest first; PeriodError when none."""
        found = [s for s in store.shows() if self.start <= s["start"] < self.end]
        if not found:
            raise PeriodError(self.empty())
        if len(found) > MAX_SHOWS:
            raise PeriodError(f"{len(found)} shows between {self.first} and {self.last}, over {MAX_SHOWS}: "
                              "ask for a shorter period")
        found.sort(key=lambda s: (s["start"], s["key"]))
        return found


def fold(records: list[dict]) -> list[Incident]:
    """The incidents of a show's records: one per incident id, from all its records (the first
    record of each field set wins, so redelivery or order does not matter)."""
    merged: dict[str, dict] = {}
    for record in records:
        if record.get("kind") != "incident" or record.get("id") is None:
            continue
        known = merged.setdefault(str(record["id"]), {})
        for name, value in record.items():
            if known.get(name) is None:
                known[name] = value
    out = []
    for data in merged.values():
        try:
            out.append(Incident.from_record(data))
        except TypeError:        # a record missing an incident's required fields
            continue
    return out


@dataclass
class ShowIncidents:
    show: dict
    week: str
    incidents: list[Incident]


def collect(store, period: Period) -> list[ShowIncidents]:
    """Each show of the period with its incidents (an incident seen in two shows stays with the first)."""
    seen: set[str] = set()
    out = []
    for show in period.shows(store):
        incidents = [i for i in fold(store.records(show["key"])) if i.id not in seen]
        seen.update(i.id for i in incidents)
        out.append(ShowIncidents(show, period.week(show["start"]), incidents))
    return out


FIGURES = ("incidents", "resolved", "acknowledged", "failovers", "resolved_within_goal")
TIMES = ("time_to_detect", "time_to_acknowledge", "time_to_resolve")


def _empty_row(group) -> dict:
    row = {"group": group, **{name: 0 for name in FIGURES}}
    for name in TIMES:
        row[f"mean_{name}"] = row[f"p90_{name}"] = None
    return row


def _with_goal(row: dict) -> dict:
    """The row with `mttr` (mean time to resolve), open incidents and the share within the goal."""
    row["mttr"] = row["mean_time_to_resolve"]
    row["open"] = row["incidents"] - row["resolved"]
    row["within_goal_share"] = row["resolved_within_goal"] / row["incidents"] if row["incidents"] else None
    row["goal_met"] = row["incidents"] == row["resolved_within_goal"]
    return row


def incident_report(store, period: Period) -> dict:
    """The incident figures of the period: per show, per ISO week, in total, and each incident."""
    shows = collect(store, period)
    by_id = {i.id: s for s in shows for i in s.incidents}
    every = [i for s in shows for i in s.incidents]
    per_show = {r["group"]: r for r in report(every, key=lambda i: by_id[i.id].show["key"])}
    per_week = {r["group"]: r for r in report(every, key=lambda i: by_id[i.id].week)}
    total = report(every, key=lambda i: "total")
    show_rows: list[dict] = []
    week_rows: dict[str, dict] = {}
    for s in shows:
        row = per_show.get(s.show["key"]) or _empty_row(s.show["key"])
        show_rows.append(_with_goal({**row, "show": s.show["key"], "room_id": s.show["room_id"],
                                     "title": s.show.get("title"), "start": s.show["start"], "week": s.week,
                                     "local_start": period.local(s.show["start"]).strftime("%Y-%m-%d %H:%M")}))
        week_rows.setdefault(s.week, {"shows": 0})["shows"] += 1
    weeks = [_with_goal({**(per_week.get(week) or _empty_row(week)), "week": week, "shows": extra["shows"]})
             for week, extra in sorted(week_rows.items())]
    incidents = []
    for i in sorted(every, key=lambda i: (i.first_bad_ts, i.id)):
        incidents.append({**i.record(), "show": by_id[i.id].show["key"], "week": by_id[i.id].week,
                          "within_goal": i.resolved_ts is not None
                          and i.durations()["time_to_resolve"] <= RESOLVE_GOAL_SECONDS})
    return {"from": str(period.first), "to": str(period.last), "utc_offset": period.offset_text,
            "goal_seconds": RESOLVE_GOAL_SECONDS,
            "total": _with_goal({**(total[0] if total else _empty_row("total")), "shows": len(shows)}),
            "weeks": weeks, "shows": show_rows, "incidents": incidents}


# ---- text ----------------------------------------------------------------------------------------

WORDS = {
    "zh": {"title": "故障处理时长 {} 至 {}(UTC{}),目标:15 分钟内恢复", "by_week": "按周(ISO)", "by_show": "按场次",
           "week": "周", "show": "场次", "shows": "场次数", "incidents": "故障", "open": "未恢复", "acked": "已确认",
           "mttd": "平均发现", "mtta": "平均确认", "mttr": "平均恢复", "p90": "P90 恢复", "goal": "15 分钟内",
           "met": "达标", "missed": "未达标", "none": "—", "total": "合计"},
    "en": {"title": "Incident times {} to {} (UTC{}), goal: resolved within 15 minutes", "by_week": "Per ISO week",
           "by_show": "Per show", "week": "WEEK", "show": "SHOW", "shows": "SHOWS", "incidents": "INCIDENTS",
           "open": "OPEN", "acked": "ACKED", "mttd": "MTTD", "mtta": "MTTA", "mttr": "MTTR", "p90": "P90 TTR",
           "goal": "<=15 MIN", "met": "met", "missed": "missed", "none": "-", "total": "total"},
}


def duration(seconds: float | None, words: dict) -> str:
    if seconds is None:
        return words["none"]
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


def pad(text, width: int, left: bool = False) -> str:
    """`text` padded to `width` terminal columns (a Chinese character takes two)."""
    text = str(text)
    wide = sum(unicodedata.east_asian_width(c) in "WF" for c in text)
    fill = " " * max(0, width - len(text) - wide)
    return text + fill if left else fill + text


COLUMNS = (("incidents", 9), ("open", 6), ("acked", 6), ("mttd", 8), ("mtta", 8), ("mttr", 8), ("p90", 8))


def _cells(row: dict, words: dict) -> str:
    goal = words["none"] if not row["incidents"] else (
        f"{row['resolved_within_goal']}/{row['incidents']} {words['met'] if row['goal_met'] else words['missed']}")
    values = (row["incidents"], row["open"], row["acknowledged"], duration(row["mean_time_to_detect"], words),
              duration(row["mean_time_to_acknowledge"], words), duration(row["mttr"], words),
              duration(row["p90_time_to_resolve"], words))
    return " ".join(pad(v, width) for v, (_, width) in zip(values, COLUMNS)) + "  " + goal


def render_text(data: dict) -> str:
    """The report as two tables (per week, per show) for a terminal."""
    words = WORDS[lang()]
    head = " ".join(pad(words[name], width) for name, width in COLUMNS) + "  " + words["goal"]
    width = max([10] + [len(r["show"]) for r in data["shows"]])
    out = [words["title"].format(data["from"], data["to"], data["utc_offset"]), "",
           words["by_week"], f"{pad(words['week'], 10, True)} {pad(words['shows'], 6)} {head}"]
    for row in data["weeks"] + [{**data["total"], "week": words["total"]}]:
        out.append(f"{pad(row['week'], 10, True)} {pad(row['shows'], 6)} {_cells(row, words)}")
    out += ["", words["by_show"], f"{pad(words['show'], width, True)} {head}"]
    out += [f"{pad(row['show'], width, True)} {_cells(row, words)}" for row in data["shows"]]
    return "\n".join(out)


# ---- command -------------------------------------------------------------------------------------

def period_options(command):
    """--from, --to and --utc-offset, shared by `livemon incidents` and `livemon report`."""
    command = click.option("--utc-offset", default="+08:00", show_default=True,
                           help="UTC offset of the local dates and weeks (as `livemon replay --utc-offset`).")(command)
    command = click.option("--to", "last", required=True, metavar="DATE",
                           help="Last local date of the period, included (YYYY-MM-DD).")(command)
    command = click.option("--from", "first", required=True, metavar="DATE",
                           help="First local date of the period (YYYY-MM-DD).")(command)
    return command


def over_period(first, last, utc_offset, data_dir, build, *args):
    """`build(store, period, *args)` over the recording, for a command's --from, --to and
    --utc-offset: a bad date is a usage error, an empty period or a missing recording a clear one."""
    try:
        period = Period.parse(first, last, utc_offset)
    except PeriodError as error:
        raise click.BadParameter(str(error)) from None
    store = _open_store(data_dir)
    try:
        return build(store, period, *args)
    except PeriodError as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()


@click.command()
@period_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object: totals, weeks, shows and each incident.")
@data_dir_option
def incidents(first, last, utc_offset, as_json, data_dir):
    """Time to detect, acknowledge and resolve incidents per show and per ISO week of the recorded
    shows that started from --from to --to (local dates, both included), against the goal of
    resolving within 15 minutes."""
    data = over_period(first, last, utc_offset, data_dir, incident_report)
    click.echo(orjson.dumps(data).decode() if as_json else render_text(data))
