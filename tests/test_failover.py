"""The failover decision core on hand-made snapshots, with the default per-CDN rules."""

from livemon.alerting.config import load_config
from livemon.alerting.evaluator import Evaluator
from livemon.alerting.failover import FailoverConfig, FailoverController

T0 = 1_700_000_000.0
RULES = load_config("alerts/alerting.yml").rules
GOOD = {"viewers": 300, "stall_ratio": 0.003, "latency_p95_ms": 4000, "error_rate": 0.002}
OK = {"viewers": 300, "stall_ratio": 0.012, "latency_p95_ms": 5000, "error_rate": 0.004}
BAD = {"viewers": 300, "stall_ratio": 0.2, "latency_p95_ms": 15000, "error_rate": 0.25}


class Loop:
    """Evaluator + controller stepping rooms through time, collecting decisions."""

    def __init__(self, **config):
        config.setdefault("cooldown", 300)
        config.setdefault("failback_after", 600)
        self.evaluator = Evaluator(RULES)
        self.controller = FailoverController(FailoverConfig(**config), RULES)
        self.decisions = []

    def run(self, start, end, rooms):
        """rooms: {room: {cdn: values}} or a function t -> that."""
        for t in range(start, end):
            state = rooms(t) if callable(rooms) else rooms
            snaps = {room: {"ts": T0 + t, "room_id": room, "metrics": {"viewers": 1000},
                            "cdn": cdns} for room, cdns in state.items()}
            for snap in snaps.values():
                self.evaluator.evaluate(snap)
            self.decisions += self.controller.step(snaps, self.evaluator.alerts())
        return self

    def taken(self):
        return [(round(d.ts - T0), d.from_cdn, d.to_cdn, d.mode) for d in self.decisions
                if d.decision == "taken"]

    def declined(self):
        return [(round(d.ts - T0), d.from_cdn, d.reason) for d in self.decisions
                if d.decision == "declined"]


def test_sustained_outage_gives_exactly_one_command_to_the_healthiest_cdn():
    loop = Loop()
    loop.run(0, 60, {"r1": {"cdn-a": GOOD, "cdn-b": OK, "cdn-c": GOOD}})
    # cdn-a fails and stays failed for 10 minutes; its traffic is not moved by this test.
    loop.run(60, 660, {"r1": {"cdn-a": BAD, "cdn-b": OK, "cdn-c": GOOD}})
    # CdnDegradedErrors has `for: 15s`: it fires at 75 and the command goes out in that step.
    assert loop.taken() == [(75, "cdn-a", "cdn-c", "auto")]
    [taken] = [d for d in loop.decisions if d.decision == "taken"]
    command = taken.command()
    assert set(command) == {"room_id", "from_cdn", "to_cdn", "reason", "ts", "command_id"}
    assert command["room_id"] == "r1" and command["ts"] == T0 + 75
    assert "CdnDegradedErrors firing on cdn-a" in command["reason"]
    assert taken.candidates["cdn-b"]["score"] > taken.candidates["cdn-c"]["score"]
    assert loop.declined() == []


def test_declines_when_every_other_cdn_is_degraded():
    loop = Loop()
    loop.run(0, 200, {"r1": {"cdn-a": BAD, "cdn-b": BAD}})
    assert loop.taken() == []
    declined = loop.declined()
    assert len(declined) == 2                        # one record per CDN and reason, not per step
    assert all("no healthy CDN" in reason for _, _, reason in declined)


def test_never_moves_onto_a_cdn_with_a_pending_alert():
    def rooms(t):
        # cdn-b turns bad 5 s before cdn-a's alert fires: pending, not yet firing.
        return {"r1": {"cdn-a": BAD if t >= 60 else GOOD, "cdn-b": BAD if t >= 70 else GOOD,
                       "cdn-c": OK}}
    loop = Loop().run(0, 120, rooms)
    assert loop.taken() == [(75, "cdn-a", "cdn-c", "auto")]


def test_single_cdn_pool_declines():
    loop = Loop().run(0, 120, {"r1": {"cdn-a": BAD}})
    assert loop.taken() == []
    assert [r for _, _, r in loop.declined()] == [
        "CdnDegradedErrors firing on cdn-a; no other CDN in the room's pool"]


def test_cooldown_then_move_again():
    def rooms(t):
        a = BAD if t >= 60 else GOOD
        b = BAD if t >= 200 else GOOD                # the new CDN fails too, 2 minutes later
        return {"r1": {"cdn-a": a, "cdn-b": b, "cdn-c": OK}}
    loop = Loop(cooldown=300).run(0, 500, rooms)
    assert loop.taken() == [(75, "cdn-a", "cdn-b", "auto"), (375, "cdn-b", "cdn-c", "auto")]
    [(ts, src, reason)] = loop.declined()
    assert (ts, src) == (215, "cdn-b") and "cooldown until" in reason


def test_failback_only_after_the_primary_is_healthy_long_enough():
    def rooms(t):
        # r1 moves off cdn-a at 75; r2, still on cdn-a, shows it recovering from 300.
        r1 = {"cdn-a": BAD if t >= 60 else GOOD, "cdn-b": GOOD} if t < 90 else {"cdn-b": GOOD}
        r2 = {"cdn-a": BAD if 60 <= t < 300 else GOOD, "cdn-b": GOOD}
        return {"r1": r1, "r2": r2}
    loop = Loop(cooldown=300, failback_after=600)
    loop.controller.config.pools["*"] = ("cdn-a", "cdn-b")
    loop.run(0, 1200, rooms)
    r1 = [(ts, f, t, mode) for (ts, f, t, mode), d in
          zip(loop.taken(), [d for d in loop.decisions if d.decision == "taken"])
          if d.room_id == "r1"]
    # cdn-a is healthy (seen in r2) from 330 (r2's alert resolved after keep_firing_for);
    # failback at 330 + 600, once.
    assert r1 == [(75, "cdn-a", "cdn-b", "auto"), (930, "cdn-b", "cdn-a", "failback")]


def test_no_failback_without_evidence():
    loop = Loop(failback_after=60)
    loop.run(0, 90, lambda t: {"r1": {"cdn-a": BAD if t >= 30 else GOOD, "cdn-b": GOOD}})
    loop.run(90, 600, {"r1": {"cdn-b": GOOD}})       # nobody plays from cdn-a any more
    assert loop.taken() == [(45, "cdn-a", "cdn-b", "auto")]


def test_manual_pin_and_cancel():
    loop = Loop(cooldown=0)
    loop.run(0, 30, {"r1": {"cdn-a": GOOD, "cdn-b": GOOD, "cdn-c": GOOD}})
    pinned = loop.controller.pin("r1", "cdn-c", T0 + 30, from_cdn="cdn-a", user="ops-li")
    assert [(d.decision, d.from_cdn, d.to_cdn, d.mode) for d in pinned] == [
        ("taken", "cdn-a", "cdn-c", "manual"), ("pinned", None, "cdn-c", "manual")]
    assert "ops-li" in pinned[0].reason
    # While pinned, a failing cdn-b is not moved automatically: declined, and why.
    loop.run(30, 100, {"r1": {"cdn-a": GOOD, "cdn-b": BAD, "cdn-c": GOOD}})
    assert loop.taken() == []
    assert [r for _, _, r in loop.declined()] == [
        "CdnDegradedErrors firing on cdn-b; room pinned to cdn-c by an operator"]
    [unpinned] = loop.controller.unpin("r1", T0 + 100, user="ops-li")
    assert unpinned.decision == "unpinned"
    loop.run(100, 110, {"r1": {"cdn-a": GOOD, "cdn-b": BAD, "cdn-c": GOOD}})
    assert loop.taken() == [(100, "cdn-b", "cdn-c", "auto")]
