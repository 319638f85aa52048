"""Engine checkpoints (`export_rooms` / `import_rooms`, what the worker writes): a restored engine
carries on exactly as one that never stopped; committed checkpoints of every format (the pickles
of earlier versions, and the versioned format of state.py) restore exactly; a field added to a
room's state needs its declaration only.

The run is the worker's loop on a small generated show: every half second of wall clock the events
that arrived are ingested; every second the engine advances, takes its live snapshots and forgets
idle rooms. Arrival is out of order within the lateness (so viewers have undo logs pending at the
checkpoint), some events come too late, some heartbeats and leaves before their enter, viewers
time out, leave and come back.
"""

import base64
import hashlib
import io
import json
import pickle
import random
import sys
import zlib
from pathlib import Path

import msgspec
import orjson
import pytest
from livemon.engine import Engine, state
from livemon.engine.room import ERRORS, ROOM_VECTOR, UNSET, Room
from livemon.engine.state import Field
from livemon.ingest.events import Click, Danmaku, Health, Order, Show, View

DATA = Path(__file__).parent / "data"

T0 = 1_700_000_000.0
ROOMS = ("room-a", "room-b")
CUT = 170.25  # wall seconds after T0 at which the checkpoint is taken
END = 330.0


def arrivals(seed=11, users=60, rooms=ROOMS):
    """(arrival, event) pairs in arrival order; times are absolute."""
    rng = random.Random(seed)
    timed = [(0.0, Show(room_id=rooms[0], ts=T0, action="start", show_id="show-a", title="A"))]
    for u in range(users):
        room, user, cdn = rooms[u % len(rooms)], f"user-{u}", rng.choice(("cdn-a", "cdn-b", "cdn-c"))
        t = rng.uniform(0, 120)
        while t < END - 20:
            if rng.random() < 0.15:
                timed.append((t - 1, View(room_id=room, user_id=user, ts=T0 + t - 1, action="heartbeat")))
            timed.append((t, View(room_id=room, user_id=user, ts=T0 + t, action="enter")))
            for _ in range(rng.randint(0, 8)):
                t += rng.choice((rng.uniform(2, 30), rng.uniform(2, 30), rng.uniform(85, 110)))
                kind, ts = rng.random(), T0 + t
                if kind < 0.55:
                    timed.append((t, View(room_id=room, user_id=user, ts=ts,
                                          action=rng.choice(("heartbeat", "heartbeat", "enter")))))
                elif kind < 0.7:
                    timed.append((t, Danmaku(room_id=room, user_id=user, ts=ts, text="666")))
                elif kind < 0.85:
                    target = rng.choice(("product", "product", "cart", "like", "share", "follow"))
                    product = "sku-1" if target in ("product", "cart") else None
                    timed.append((t, Click(room_id=room, user_id=user, ts=ts, target=target, product_id=product)))
                else:
                    timed.append((t, Order(room_id=room, user_id=user, ts=ts, order_id=f"o-{rng.randrange(20)}",
                                           product_id="sku-1", amount=round(rng.uniform(1, 300), 2),
                                           status=rng.choice(("created", "paid", "paid", "refunded")))))
                timed.append((t + 0.5, Health(
                    room_id=room, user_id=user, ts=ts + 0.5, cdn=cdn, play_ms=rng.randrange(10_000),
                    stall_ms=rng.choice((0, 0, rng.randrange(5000))), stall_count=rng.randrange(3),
                    latency_ms=rng.uniform(300, 9000) if rng.random() < 0.8 else None,
                    error="decode" if rng.random() < 0.1 else None)))
            if rng.random() < 0.6:
                t += rng.uniform(0, 20)
                timed.append((t, View(room_id=room, user_id=user, ts=T0 + t, action="leave")))
            t += rng.choice((rng.uniform(1, 30), rng.uniform(30, 150)))  # back within the window, or not
    # Right after the checkpoint, operations that go before ones logged in it (an expiry with its
    # changes to the sums, a heartbeat): undone and redone on entries the checkpoint holds.
    pairs = [(T0 + CUT + 0.1, View(room_id="room-b", user_id="user-41", ts=T0 + 168.0, action="heartbeat")),
             (T0 + CUT + 0.1, View(room_id="room-b", user_id="user-13", ts=T0 + 165.3, action="leave"))]
    for room in rooms:
        # A viewer heard from every half second, promptly: the rooms' clocks never run on with the
        # wall clock alone, so a restored room (whose clock waits until it is heard from) keeps
        # exactly the clock of one that never stopped.
        for k in range(int((END - 1) * 2)):
            pairs.append((T0 + k / 2 + rng.uniform(0, 0.5), View(room_id=room, user_id=f"host-{room}", ts=T0 + k / 2,
                                                                 action="enter" if k == 0 else "heartbeat")))
    for t, event in timed:
        delay = rng.uniform(0, 4)  # within the lateness of 5 s
        if rng.random() < 0.02:
            delay += rng.uniform(8, 30)  # too late: rejected
        pairs.append((T0 + t + delay, event))
    pairs.sort(key=lambda pair: pair[0])
    return pairs


def run(engine, pairs, start, stop):
    """The worker's loop for wall times in (start, stop]; returns everything it produced."""
    out = []
    pending = [(arrival, event) for arrival, event in pairs if T0 + start < arrival <= T0 + stop]
    wall = T0 + start
    while wall < T0 + stop:
        wall += 0.25
        batch = []
        while pending and pending[0][0] <= wall:
            batch.append(pending.pop(0)[1])
        rejected = engine.ingest(batch, wall)
        out.append(("rejected", [(msgspec.json.encode(event).decode(), reason) for event, reason in rejected]))
        if (wall - T0) % 1.0 == 0:
            # Rooms in a restored engine come in another order: only the order of rooms differs.
            out.append(("finals", sorted(engine.advance(wall), key=by_room)))
            out.append(("live", engine.live_snapshots(wall)))
            out.append(("forgotten", sorted(engine.forget_idle_rooms(wall))))
    return out


def by_room(snapshot):
    return snapshot["ts"], snapshot["room_id"]


def digest(transcript) -> str:
    return hashlib.sha256(json.dumps(transcript, sort_keys=True).encode()).hexdigest()


# What snapshots held before the sales analytics (SPEC §8-11): a checkpoint written before them
# carries none of their state, so after it only this part can equal an engine that never stopped.
SALES_METRICS = ("startup_p50_ms", "fast_start_ratio", "slow_start_ratio",
                 # and the short-window figures added after them (read from state there already)
                 "startups", "stall_ratio_10s", "latency_p95_ms_10s", "error_rate_10s", "fast_start_ratio_10s", "startups_10s")
OLD_SHOW_KEYS = ("id", "start", "title", "ended_at")


def core(transcript):
    """A transcript's snapshots as the engine before SPEC §8-11 wrote them."""
    def old(snapshot):
        snapshot = {key: value for key, value in snapshot.items() if key not in ("by", "products")}
        snapshot["metrics"] = {k: v for k, v in snapshot["metrics"].items() if k not in SALES_METRICS}
        snapshot["cdn"] = {cdn: {k: v for k, v in reading.items() if k not in SALES_METRICS}
                           for cdn, reading in snapshot["cdn"].items()}
        if snapshot["show"] is not None:
            snapshot["show"] = {key: snapshot["show"][key] for key in OLD_SHOW_KEYS}
        return snapshot

    out = []
    for entry in transcript:
        if isinstance(entry, tuple) and entry[0] == "finals":
            entry = ("finals", [old(s) for s in entry[1]])
        elif isinstance(entry, tuple) and entry[0] == "live":
            entry = ("live", {room: old(s) for room, s in entry[1].items()})
        elif isinstance(entry, list):
            entry = [old(s) for s in entry]
        out.append(entry)
    return out


def resumed(blob, pairs=None, rooms=ROOMS):
    """(never stopped, restored from `blob`): what each produced after the checkpoint."""
    pairs = arrivals() if pairs is None else pairs
    never = Engine()
    run(never, pairs, -1.0, CUT)
    restored = Engine()
    assert sorted(restored.import_rooms(blob)) == list(rooms)
    return run(never, pairs, CUT, END) + [sorted(never.finish(), key=by_room)], \
        run(restored, pairs, CUT, END) + [sorted(restored.finish(), key=by_room)]


# The scenario of the committed checkpoints in tests/data/ (one per layout): three rooms (one with a
# show, viewers with undo logs, CDNs), a room admitted just before the cut (its first final
# snapshots not yet taken), and two candidates that never get admitted.
FIXTURE_ROOMS = ("room-c", "room-d", "room-e", "room-f")


def fixture_arrivals():
    def enter(room, user, at, action="enter"):
        return View(room_id=room, user_id=user, ts=T0 + at, action=action)

    extra = [(T0 + CUT - 9.5, enter("junk-1", "x", CUT - 10)),
             (T0 + CUT - 2.9, enter("junk-2", "x", CUT - 3)), (T0 + CUT - 1.9, enter("junk-2", "y", CUT - 2)),
             (T0 + CUT - 24.9, enter("room-f", "a", CUT - 25)),
             (T0 + CUT - 23.9, Health(room_id="room-f", user_id="a", ts=T0 + CUT - 24, cdn="cdn-f", play_ms=9000,
                                      stall_ms=1000, stall_count=1, latency_ms=2500.0))]
    # The host of room-f, heard from every half second from its admission on (see `arrivals`).
    extra += [(T0 + at + 0.3, enter("room-f", "host", at, "enter" if at == CUT - 0.5 else "heartbeat"))
              for at in (CUT - 0.5 + k / 2 for k in range(int((END - CUT) * 2)))]
    return sorted(arrivals(seed=23, users=24, rooms=FIXTURE_ROOMS[:3]) + extra, key=lambda pair: pair[0])


def test_a_restored_engine_carries_on_as_one_that_never_stopped():
    engine = Engine()
    run(engine, arrivals(), -1.0, CUT)
    never, restored = resumed(engine.export_rooms(ROOMS))
    assert restored == never
    assert any(kind == "finals" and snapshots for kind, snapshots in never)


def test_a_checkpoint_of_the_previous_layout_loads_and_carries_on():
    # Viewer records were 5-item lists until the compact layout; this checkpoint was exported at
    # CUT by that engine (commit f21b3a6) from this very run, and OLD_DIGEST is what that engine
    # produced after CUT without stopping.
    blob = zlib.decompress(base64.b64decode(OLD_CHECKPOINT))
    never, restored = resumed(blob)
    assert core(restored) == core(never)
    assert digest(core(never)) == OLD_DIGEST
    # What the checkpoint holds, so that every part of the old layout is converted: viewers with
    # operations not final yet (one with changes to undo), never present, present, and ended.
    engine = Engine()
    engine.import_rooms(blob)
    rooms = engine.rooms.values()
    logs = [log for room in rooms for log in room.logs.values()]
    assert len(logs) >= 5 and any(entry[5] for log in logs for entry in log)
    states = [(room.starts[slot] == UNSET, room.ends.get(slot, UNSET) == UNSET) for room in rooms for slot in room.viewers.values()]
    assert {(True, True), (False, True), (False, False)} <= set(states)



# What the engine that wrote both committed checkpoints of FIXTURE_ROOMS produced after CUT.
FIXTURE_DIGEST = "52304ae05af22aff755b631e753fc2041f342d27760134c875c5e149e3831c6b"


def fixture_state():
    """The engine of the committed checkpoints' scenario, at CUT."""
    engine = Engine()
    run(engine, fixture_arrivals(), -1.0, CUT)
    return engine


@pytest.mark.parametrize("name", ["engine-checkpoint-v1.msgpack",  # the versioned format, version 1
                                  "engine-checkpoint-pickle.bin"])  # the last pickled one (before it)
def test_a_committed_checkpoint_restores_exactly(name):
    blob = (DATA / name).read_bytes()
    never, restored = resumed(blob, fixture_arrivals(), FIXTURE_ROOMS)
    assert core(restored) == core(never)
    assert digest(core(never)) == FIXTURE_DIGEST
    engine = Engine()
    engine.import_rooms(blob)
    assert sorted(engine.candidates) == ["junk-1", "junk-2"] and engine._finals_due
    assert any(room.cdns and room.logs and room.shows for room in engine.rooms.values())


def test_the_format_is_named_versioned_and_not_a_pickle():
    blob = fixture_state().export_rooms(FIXTURE_ROOMS)
    document = msgspec.msgpack.decode(blob)
    assert (document["format"], document["version"]) == ("livemon.engine.state", state.VERSION)
    assert list(document) == ["format", "version", "clock", "rooms", "candidates", "finals_due"]
    assert b"\x80" != blob[:1] and b"livemon.engine.room" not in blob
    # Exported again by the engine it restored: the same bytes.
    again = Engine()
    again.import_rooms(blob)
    assert again.export_rooms(FIXTURE_ROOMS) == blob
    # The committed checkpoints of the same state (written before the sales analytics: restored
    # with their defaults), the last pickled one and the first versioned one, once restored,
    # write the same bytes.
    legacy, versioned = Engine(), Engine()
    legacy.import_rooms((DATA / "engine-checkpoint-pickle.bin").read_bytes())
    versioned.import_rooms((DATA / "engine-checkpoint-v1.msgpack").read_bytes())
    assert legacy.export_rooms(FIXTURE_ROOMS) == versioned.export_rooms(FIXTURE_ROOMS)


def test_a_field_added_to_a_room_needs_its_declaration_only(monkeypatch):
    # A newer worker adds `mood` to a room's state: one Field. Its checkpoints carry it; those of
    # a worker without it (this one) load with the declared default.
    blob = fixture_state().export_rooms(FIXTURE_ROOMS)
    monkeypatch.setattr(Room, "STATE", Room.STATE + (Field("mood", default=lambda room: {"calm": room.id}),))
    newer = Engine()
    newer.import_rooms(blob)
    assert all(room.mood == {"calm": room_id} for room_id, room in newer.rooms.items())
    newer.rooms["room-c"].mood = {"busy": 2}
    again = Engine()
    again.import_rooms(newer.export_rooms(FIXTURE_ROOMS))
    assert again.rooms["room-c"].mood == {"busy": 2}
    # And the rest of the state is untouched: it carries on exactly.
    never, restored = resumed(blob, fixture_arrivals(), FIXTURE_ROOMS)
    assert restored == never


# Attributes of a room that a checkpoint does not hold: from the config, transient, rebuilt.
NOT_IN_STATE = {"config", "step", "width", "horizons", "keep", "recent", "timeout", "seen_at", "_journal", "viewers", "free",
                "kept", "kept_upto", "live_kept", "unfinished", "shown", "first_columns",
                "regions", "product_index"}


def test_every_attribute_of_the_state_classes_is_declared():
    # A new attribute left out of its class's STATE would not survive a takeover: it fails here.
    engine = fixture_state()
    room = engine.rooms["room-c"]
    assert set(vars(room)) == {field.name for field in Room.STATE} | NOT_IN_STATE
    cdn = next(iter(room.cdns.values()))
    for obj in (cdn, cdn.sums, cdn.latency, cdn.viewers, room.shows[0], engine.candidates["junk-1"]):
        declared = {field.name for field in type(obj).STATE}
        assert set(type(obj).__slots__) - declared <= {"_zero", "seen_at"}, type(obj)


def test_vectors_and_logs_are_mapped_by_field_name():
    # A checkpoint of a worker whose room vectors had no `errors` field and one field this worker
    # lacks, in another order: mapped by name, `errors` 0, the unknown field left out.
    engine = fixture_state()
    document = msgspec.msgpack.decode(engine.export_rooms(FIXTURE_ROOMS))
    older = [name for name in ROOM_VECTOR if name != "errors"][::-1] + ["gone"]
    for room in document["rooms"].values():
        sums = room["sums"]
        by_name = [dict(zip(ROOM_VECTOR, vector)) for vector in (sums["window"], sums["total"])]
        sums["window"], sums["total"] = ([fields.get(name, 7) for name in older] for fields in by_name)
        sums["buckets"] = {b: [dict(zip(ROOM_VECTOR, v)).get(name, 7) for name in older]
                           if len(v) == len(ROOM_VECTOR) else v for b, v in sums["buckets"].items()}
        sums["fields"] = older
        for log in room["logs"].values():
            for entry in log:
                if len(entry) == 6:
                    entry[5] = [x for i in range(0, len(entry[5]), 3) if entry[5][i + 1] != "errors"
                                for x in entry[5][i:i + 3]]
    restored = Engine()
    restored.import_rooms(msgspec.msgpack.encode(document))
    for room_id, room in restored.rooms.items():
        original = engine.rooms[room_id].sums
        for mine, theirs in ((room.sums.window, original.window), (room.sums.total, original.total)):
            assert mine == [0 if i == ERRORS else value for i, value in enumerate(theirs)]
        assert room.sums.buckets.keys() == original.buckets.keys()
        assert [log for log in room.logs.values()] == [log for log in engine.rooms[room_id].logs.values()]


def test_what_a_checkpoint_cannot_be():
    with pytest.raises(ValueError, match="newer"):
        Engine().import_rooms(msgspec.msgpack.encode({"format": "livemon.engine.state", "version": 99,
                                                      "clock": None, "rooms": {}}))
    with pytest.raises(ValueError, match="not a livemon"):
        Engine().import_rooms(msgspec.msgpack.encode({"rooms": {}}))
    # A pickle runs nothing but the engine's own classes: any other global is refused.
    with pytest.raises(ValueError, match="builtins.print"):
        Engine().import_rooms(pickle.dumps({"clock": None, "rooms": {}, "x": print}))


def test_a_pickled_checkpoint_without_candidates_still_loads():
    # What engines before admission wrote: no "candidates", no "finals_due".
    class Unpickler(pickle.Unpickler):  # our own file: trusted; its candidates go
        def find_class(self, module, name):
            return Dropped if name == "Candidate" else super().find_class(module, name)

    class Dropped:
        def __setstate__(self, state):
            pass

    old = Unpickler(io.BytesIO((DATA / "engine-checkpoint-pickle.bin").read_bytes())).load()
    blob = pickle.dumps({"clock": old["clock"], "rooms": old["rooms"]}, protocol=pickle.HIGHEST_PROTOCOL)
    restored = Engine()
    assert sorted(restored.import_rooms(blob)) == list(FIXTURE_ROOMS) and restored.candidates == {}


OLD_DIGEST = "77b26042f705b7f79ca73c66177a86f4bdfe3082ca0e173f4281bfbaf3f6170b"
OLD_CHECKPOINT = (  # base64 of zlib of `export_rooms(ROOMS)`, 10,524 characters
    "eNrtXQmYFMXZnp6dPWC5Vw4VEOQQYyAsh4CuYfHI6gw9GhFQDpfZ3WZ7mmV33ZnhUmBBbgZZZfBAoyABQxQlalDxADECXkm8f9EY"
    "4hUTDHKraPSv+qq6uqprmqkhv8/z/8/z4/PsVH399ldVXx3fV9X9to25q7U5Pvg3O9UnmVtZU1c5JVU24r1rvrMafb5kbkNd3dRY"
    "Cl/Lw8m+kVSyqCY6zZhaV9vPqK2O1hr9sDyVDFyNf1alzp0HaH+0KmUGknmVdbWTo9WpZHvXTba8xWWQv4Rk2e2BWNyoT5UNP0jq"
    "lsybHq2tqpueKisNU0lBTSRu1BqxGJKdRmVt6huMmFFbaZTHo1ONukQcXRvTSK41i5l108ujVTUGEs7fQYQtJifiiQajvCY6NYrB"
    "DVTeAexQg7SXuxAPdQNEosJs69Qud3q0Km6mQiXJArOuITqrrjaWCnUNlYQeX4wMM8VATQkdTubLlcqbGplRHo9Rg09CkvyYYdSW"
    "R+JUVI9EzbHpyifX1NU1pIKbDo0ykgWTG+pq41ED5X+N87mx6UZ9nF4MxBKox5IdXAYnBkQXml+cqJxixEdhFNg7jAxudgqVmN2I"
    "tvwKAECvB31IMjHVJ6SFfOg/LeSHX+k/I6hRoC3yBPpdGnPSAjUjmKOqMaCqMVdVY54LGKC6ffqwPHSX5iDzVVUWuCoZ8AI2U21N"
    "c9WiC1WBLVSLbunSmOOlsVVGjRr+zwi2lixOU3pxIaCYyjaqrWmrCmynCixiQK2stH2br7agOczX1Y0/TdVMVwpm4sab20ztvTTq"
    "S1oBhqnsoNqojqrATqrA01WBZ6gCz1QFdlYdwV0UpiNYvGt6i+tzC/TRZ4trwVmq3d1NtZbdXcA8WviWQn1Aayhcs6Fne46MSL5Y"
    "zR6qxuypCuxFgX4KS29MvxHsrarxHCULIWAfVY3nujTmUut0aasP7cqtMMiUP3HNRs/uOU+18J+qAvuqjox+qhp/Jo0LLT2wv9eM"
    "0IfkU/vQRahYtewBLmAuUa4/11q/5AxxuRroMc025un1fm6kI+gg1eIHqwLPVwUO4R1A15Z/+TNxAJ6jM6Y6jIeq1mCY6hpzged6"
    "8E4zcT24ULXsEoVp7sPT/CJVjT/n7Vk6ffKHGRzqcMlP2o26phXXKDRGZ/Gaabh9spqUqlZ5hFIch2pwsWcHfNxVHPuXqE7RS9OX"
    "rb/n16cUimvYZart+YUqsEwVeLlqzHeFqsYg35kXv7ZpWoZpF1JVvIgHBn9A/7yxI1Vnnu4Zypb5xVA2rLonuIo3QLdZBxtd80Rf"
    "1U6c079UtcDVCr4OOiuZvlX6ngJ9aEexWaNUC79GFThadR0dowocq9qb13r25iWudfQ6zwl/mmsLM0613eNVgROyXO4mStEQ8cwj"
    "2+jP5Iqr05286siHd89uPLnq63l8v/tbDM0wWdd4eP7CVnqTRpYKG1qu2mmTPDutJiAGExHPTnugpdhpFapDq9LLSbmBVR5T6qmA"
    "XtOJP2sxgobqQJic5UCoVlV8v6tVucxQo/NEQ5mqKqOq3Wl5dlLfM8Q5OEW17BopNCUKA7n6z38i2n6qqs5a3vbjNr3TSVylf9D/"
    "2kkcfHWqmn8r+ynNC1svdZTHWcINHiYYF9DbDUM25kzQwLds+GefX0NaVoAVBSftvzRPP6utfqIjamqOc9PDcqV9XpWOq1oioQqc"
    "ln4i2Avd6a1D+8ShM91zkO3vIQ7wR11Iz1bN8FyGql2nNTNVm3VjlvN7axadcJNqJZ5QNcBsjxWud77+XQfRqHNUC5+bpQUaVRU/"
    "rdqqeXwNikPhtRl2LfM9rJBqqdd3FsfBs1l0181soguGsLX3a6N36yIO8QXpTWefNt6tf1kk3rA9i+osVLXzjiyULk5fY09PscRz"
    "EkfPFJv2gmpvL1X1Usu8PKQbuNyzkqs6iJVckX6JRsj3u9OFnCJv8dTZq704xFaq9lOTKvBWVeBtqqZc5dma73NEC6VUy17tacpk"
    "G9FAtzOkv6x0cuYF5g7VKrwhDPzvTzrw7/JyX3atv24uGuKtLGbV21lg7/ZaM+yKPNxdrMg9quZ4N4ta/EpV6b3pF0X74LxHkf7u"
    "+SE/H9vcp6p6bxb1Xes52oa7+m2dZ4zQuYM4xdd7TopNHcQR/GulA2wE3OBZeEeXY9roQuazJ6J5vUR7PuBZzeYB0eX/RtXymxSB"
    "CbMdhuWH2pSVrl4+bDPp+53YwZEotdWs4Dmz/b5Q71C3UCD4HerC4Df2HyOZG6+LR2pSWMU5oU5lpWvytn3fhFScqX+hhZrbOu55"
    "LZj/eI4vNDw0JJRPC07mls8yGuoyu5N4KrEoVZEsjNbGjYZIZTxaW50yeyRbXRqNoXRlfCx5zSHtc/lATSQWh7cj8hMxo6HvoKEp"
    "CPZptnhQCoJeOzsgBWE7zQ5G2QVcFoEXO9lB6OoKJzvg/BQsQIlkbmVdohYKhaKQDRrIzzTys4D8LCY/K8jPXfCTSOZPNaZWGA0x"
    "drt50Dy0iFTLPLyQVNc8tJDUzDyykNTJPLqQ1MY8tpDUwzy+MIXU1Ru1Vdhgs1MwHFcySwzun2qKme1C+WDcgsqaaOUUsOx+2Yzm"
    "AXiZBe5DzZwH5cDuNmF+hSs6jzTiftII8xtbZhVqPh+q0P20ZgnLr+G3ZlC5fig3rz4y82Sl2rYeRCwQw8VRc8ZwMZC2OkApMUe5"
    "Bsrz4XWXypl4tLQcSdKjphjxSjPtYDH74GrjffPslP4Smskx2PEiob4H5fR69CcBG1Z0/bdwvYFevxVf3wPXp5Pr5XB9BsncAJnZ"
    "JHM7ZOaTTAIyC0hmGWSWkMwSyCwnmasgkySZ5yBzC8nshsxqklkHmVX8lbtIZiFk1pBME2TuJZmbIbOOZEZAZi3JPA+Z9SQTh8xG"
    "knkcMg+QzCycQasIbwc/2A8sBpYCc4AZoPnQbGguNBOaB83ClfZDM6DGUFOoIVQGqgc1SUD/Biqrasl7Vrko1bcyZeYmCy6pqh0V"
    "j8T593TONnt59TZ7aQW/pKLhdZM+u6bPqkFEnyjTJ8hwDtCf3Tckn4Doczv2nI5/nIQfH2ncwwj68EETjqnxebQmnJ7i01KNO3lk"
    "J438aR0+nYMqsVM5fAqncWdl9GzML5wK4VMgjTumwIcRGzoSENvV4128JmzKySbc2aXSXakm7CPwvgEk9PybnndrQsxNYmw+bsVx"
    "qibEcThg07jzTud8kwUtLDrhwwIcBgCI+Wrim3lPiz2rxvyffuHFwfJumi/UOuQ3zE+wJG9OcP9eJOkSChjmZ31Eb2R1RkuN1RX9"
    "UVpHyDoBK0RMdYUQ1gHvqf8fz/Y00xiWu5fSzNsl4kR1zdERbGbmT4sa07EX8/QmsGbzzra4fwpsRrMDkaOeDj4Pqm77AQSaAc6N"
    "+Lij0HzbAyOHvAacIjSQuiZLcMHTyc8M8oPtjcLSJeQnSX5uIT+reL8MetHPveRnHe/ncAHWTcTPES8NbVtE6m/NJldwidYckp5N"
    "3TMUDJ47aXt3XLg1l8BW2Vdtdw61sK/eC7eYR1A562gkYHvXPjDuOVd/fqoJuhmJ4PYm1M+hZrinoLdg9YykrOHccD7JmsleO8Ov"
    "mcGkYm9YkTeqnFcT6KsImvBslzzL5R/+4Ic9Gn8aDMe+cJdzijqaQOwT2DH6OVQNPSpiR0POMQ89z9H4cxw4sNGEIwV8hKAJRwf4"
    "qACKZztgsuPl93Z4E6cJewyyp+ADf73iTH6RefSs4Hl5aEkpZIvMtb2DoZFI0iaUcyqLTJpgBHzwyeILIaQQAgfe1dOVAJz3raLL"
    "Bm+9TnDF1gxUSc+5bh6EXrMnOooga7mJjmbtzXaoCNW2LwwSou9itCAsJ4EnrqeVi+F3O/O8lkzNG7jpTtSh3M1C4L2cC7x9YIEQ"
    "0YSE6/mZjVVa28l0uwFCcTrFrR1EOJ8LcW/m5Lgg63mSxqVZO0maBeir7cTddlNQer0rSLYDdrgOsXqBOGUrlKcse9ENv9imca92"
    "0Ve5NP5FEXgxRBOeyuOn8Br3CIg+8vFzE1IPBPT9NKagzxHIAwNN2NvjvbzGPxuDZ2GuWfPrZvys6d5J/9UYfBpB58zPz9VfT6K9"
    "pe9UZkyaiF4Id/kIl/eG9XYQqjDe7QGMnBUujm6chpKceYjfcQ5AmLUOZkCK31VheMhPhrTP3j2uTbPVwkDrCG76UeJ5brA3iWy3"
    "iG+zjjm7Mes4pKWxdsQea7n2WEtAY3GzCs26WLwvpTSgnoDX7Ut9Ph97FT+MpEQcBf6AaUQa4hWG/Wo+w5r7EPbcOFUR7YZqnuen"
    "1xgIq+BApelB3QTQpPSgUgHUmB40SQCtTQ9qFEA70oPWCqB96UE7eJDlSw8S7GSlt5Ml2MlKbydLsJOV3k4WtZNh5aBrbCE+n3X2"
    "tev+vZslwmGrCMNgfWLD4fVDMyBx6be7myAx/sbdTWHAkEFnIy++aOkvIXHlrB0jIWGc2DEyDBjDupVDjjg6oRUxR8GE1WFbijNO"
    "GxhmVPlFfXAbIqACxUU2vnrE8ItJYt/GZ8Jh8whabO1rwSklhpiYtL/ECJvH2Dwdymww/vVWfxcTk3p8tDJsdQZbzOHqbVbf1pol"
    "kLXmQMvmcoiyvbv2ionrx+3ay1o4LbjVaWF6LLR0Lih+nlM86cGdv2EJVPTzgNjJV+5PZdezBELsBGsdty9fseGrDyFR3m7gucha"
    "x4mjYwbr9VpHMTFpw2sdw4Ah5zE2sqLsUAFLoHI6AGI2h7jyoRmbxcTkn87YHAYM8rk2LPzdrgoxYdy0qyJsHrQXz0Gsi8IvLxwj"
    "JozgwjFh61xuVA9w4FeVVD8hJiY/U/1E2DoPevQYV9Wr3vj4VTFRffXHr4YBQzYBNvKa8Dwy/Mf1+9kvIDHh8gs3hAGD4nYbNmrO"
    "5OupnicsZObDJIawL4/u8Ie/EetGH/kAGW8H3H2IXZ6xq5Yl0N2HiBewL4+9cOjHxPQjhlWhu49ALbdziGuvu62SjOXLhp2FENtB"
    "/1H78oRNX+VAomrKOh/Sf9RIJAuMGfXRhqhBTijpSxawXpBFI/igLHqIF2ELOCkjuFnGPyyLHqGiHexuIt/ihiIjBH/nFtKiHpX1"
    "PiaLHpdFv5dFW2XRE1KxYPHgkzL0KVm0TWrJYfZ8ncc9I5UCvWY/BieiIgf/nKxiuyzaIYuel0U7ZdELHrb+gwx9URbtkkW7ZdEe"
    "Ktru6vyXZOjLvKizI39FqibMpeCrsorXpI44agT/KOP+JIv+LItel0VvyKI3ZdFbsuhtWfSOLHpXqv9xI/hfMu49WbRXFr0viz7w"
    "sOVfqPx5Vzd9KKv4qyzaJ4v+Jos+kkUfy6JP0s5E4nuCn8r4z9LNvb/LuM9l0T9k0T9l0X5Z9EW6YfYvGXdAFn0piw7KokOy6LAs"
    "OiKLjsqiY7LouCz6ShZ9TUTmYa6dR4zgNzLyhGQPhPtWxn0n9S3EVcF/y9DvJShEOcEfJDnEikHfYUmFJov8sihHFgVABJlIAj9f"
    "MyK1iXriNUlTIdKN0MqYxyLBtuSWuSAeDhnzcIQ6VIigI9QPwhoboc4L2h+h3ofeTVwOzMQI9RjQ9gh1B7A0RuiqD1FbhK73uCJk"
    "7YbpErGXJvMgCZ/oIkQrT5YfCNUidI2BsClC1w2IjFD782rqqquNqpR9OImu3Ar3bORrTR5u2zYrrI9Eq8rrGqrwQTI+zQzU4VPi"
    "pmR+ZZ1Z1xCP4QAOHxjg4zT82yYUsB95G0ayLX70W25MM2rj5YSdzZjfJiZ1T8SPiwKjTOHRcfNkHr6KKfu5sTjavDob12RuPBqv"
    "MVJJbUQq2QIuMr0+YJhXT51WXhGJGamQL1lI6s3yBUZtlVGFSerhZEF0an1NtDIaTy3FG+xIsqDcqks01EZqUuFEBf1oQEXKzCfE"
    "frO5tQtPh0KzNUegh0OH023GvHlm6LDZmb29YXZhnyMwu5JkE0qeBW8F2EcV3UnuJMdGbiK79j9GZM8IzJrInhF4ykR2T+Ap89hz"
    "MvHYM2psrsp5zJrHnhHYUrXoVqoaW6sCfzwae8bGFKm+hufBX9efaKbnuSgt7VUL/7/IS8/JxEvPSHXLmpeesY5dVYFnqQK7qQK7"
    "qwLPVgX2UDVPT1VgL9Wis6akw4uQ55QUbMnwKnLWzPSMwJ+oAgUGEnlT0bOaWXPYM5IV+3qwVBf79dN6sJcftf+Qxe47OYv95Bxl"
    "jsTu1FJTI7Hbi+CJZvo5LcR3OQd6vk45upP4OuUg1fYM9iDpNBXpb3YFnpLmxWLPycxiF1s036+3zBWX9VPmpfuz5qW7gRd6fo9g"
    "s4t4WaJa9inw0jMAh6sCT5lfnqPKL/fUeEkaQ2rB/mMvaOHNMHcPjZlt9GYuFtRlHqyWzS30K13UyR+PY54ReIXnlBzaVhxFQdWB"
    "GfJ8wfn1niJfdaRqLXXVssOezZnXVWzOld7cM9fb4lep1jJrUnlG4I/HFM8IHKMKHKsKvFbJ9aQhintq/PF44hl3bxNVR+T1qkWX"
    "e35TTcsRl4tJ6T/Vg5nRRenZ28D2uOLxB/DZxsk+5qRMI6nIGOzQwL4qSzaiMpF7bbaMb/mbKJ+7PgqhzPU2vboqE4Pbptl8eoa+"
    "sjsaMzneHG7Pwk+Bwq1m+qk8r2vcJxv8GQL432TP+1bmsaAaX/flrXtRDTJ8daQuy0a62d92j1zQTv/4dHGaPajKgLxBWNg0m/WC"
    "XUk7kfvToLoExjwGzvL2eqfSUIDXGVf9Ok7CI3bZpumjXLzKaao9Nl11vZwhfanNXt3atj851duOmxqbh7qJ4cOs7EnhGYDKDO/Z"
    "WQ67OenxBbRtZpH+4jBYD1jjnlIdfXNVPdE2VY2NnqHRkM7iOJnnGertdAVR81Ute7NqcxZ4l50rjpOFHnvES3P0D9qLc36Rh1/r"
    "q/9wttigxelnKFIbLBEn6BLVpi/1GPmf5uv9C0TDL0s/npxZddx1w3LPPq0tFBu2KwsaZ9JT68yuomFX8BW+7MjK20Te6cVF+oph"
    "YBuJsa0xRiXelrW58/S2+rRO+r6B4kdIVnosbhe209/MFxvYlOajkVqwvvCiQj3cRn9wcMjPV+OlLMxxykRvf9ZEbzcwpUppXa1a"
    "9O2qQGV+953pIzHdH9CfbiMO17tU273GcxUY301UebdqNe/JlkudEXgfP/gnTSgen+ETUe9nMebWZfuBIvfq8m4r3eokTtb1HtC7"
    "8/V7uqSnUmcsfoNqj270KPwiTT+RJxbuQaXWny3Ur3DF9r9Vreen6randOoWoWZlpYs+eu8g2l2hVepV/GmgYOP6MZ31se8E+x3w"
    "+0LnhHqGcuGDBoRTjf+QF9xDvUMtykqXP3jaYrwedtX34eUoJ7jlRFOf4O6zNF+wZGDAFxoWGmyHCvx78CcnUZv/yPTS+oBhAsl5"
    "4OAUBJP0FcthhMhEc+jaTI6ggS4uc15ejwtMq5nkZyF5lZ1Sn5fx77BjvLU4xyFLLSFpfKe1lKTx7dYyksY6rEUkvcyRcwxjeIPd"
    "yj/Jm/q4prh05x4f3NNO4e3+AQMJW4vaojgFPoQ2/hbSwCa+gUDtuo9UGF+w1ror7FejMEQphWEjI+O9DDyGG6h8ic3UScDOZnZK"
    "fwWoDTGeAkh5h7WQmUkyD0FmDlXzNFaz0qbiJiACRKCnALSQZAzILCKZbZBZTG/fhe9cDXcuJddX8fSjRyGzjGRqILOCZDZBpomq"
    "+R1WsxXUUNrj03D9TpLZwDMdCb3yfr7NlNy4lOd2PM1xO7DloElQe86kr2B+I7Mk4TdiY4GRsAq/Yxswg9NgaCi0CVoJDXLaAVUm"
    "XHHo7gsJucK6CHe7Ip2HPmOmz5Q17pmHfpOml+SKZGNyDq0JB5zkQFPgET9VRE5n6PkEPo843JVQfOjOUw+10rdShh3dONKNoosk"
    "3JZSe+m2jW3TuD2PvrALkbCYWT94hpuXV1so8IhJCMkz9XCMeGNvgSNMvDxPMaLejGMU3Tw2uKeP5gu1ZDy8n8WCAxchSbtT4+EJ"
    "U5LMxqxmG4wle+7AIHJNFM8Rzo/jjWlG6ko2Kh+1xx3cqE5jGoTW9Tn2Yit8AGMgIa7Cqg09Ams28RCUeVosEJqiZPmPkZ8E+eE9"
    "hA9Kcj6OsZxj5rJPZawhQoEBhTVbB1DpUMtFKSjD+pKstomTuRbqQubYClyuBeh7B0k6yelcwelcw2Hud9Lcyp5nk6mst7KY5vSh"
    "MH0IrAlPS8nTUefBJH0QqQkfp8ZP/TTuuRN9zqQJD3nwQx1NeE6Cn4towocx8bGowKK1N9Rsk8U2Vc4uTX+wUH+2vcCRZdGiE6jR"
    "wIybnfN66QfweZZG5+aQIbr2PoqotFOZmYLT4L0BTBzqC1SnQnGxQEkdMJiGADRWQhNlJTf2hxBKJx37lHxKI4OVaeimwBo9OwDD"
    "CIKFHiSNsVbPAOOIWr0CAnXvAYHsXTyQfNclwIbc6iyGnP0VC/KgXvAsp7XT7zid9Dl7mkef3nEPKvCDCU045tZ/5ReZ2/QI1Dl4"
    "pQetGu9qSvP1Cjrmqc/AB2KlncmNjc7nN6g/mucMTOqO6AkPPdHR+JMcenLDn9jo4yibe6nt/uCARRMOVvAJioso3o56TXqAwE4L"
    "NGcavNJC70EnFN3t0t0tz3plWxk2DUZdF5yxALmkIuakIolgwRtI0vHUvkgR5b8hkSlYFKLAUwgAIRyKiaFfVtGeEOClidye4kM1"
    "jQvVnhbDsm0sNnPCsjQRmbo/HDCEeBd7vg0mdFvYo8AwtJeDYuJV7NvoDsG+bQi3nSEbGLw3gGbbCgZSN4M3CvzugrrRevJDGe8x"
    "8kP9ZyO5No/bdmnQTfbuywddE/LRTZjtW+nHL5oI8/hOycXSjVg9l4bGV6MlyZoccFyvEXDcqokvVpOLuGJWlFyc597aUfki9zbP"
    "JPKl3A6K2/IRI1ncwuneZYECVPidzkWJ+IxxsHA2PynxuSIN8blRID7/P5n5fxeZuQ/rpHSgSTbjeX7A4YYOGsx6ecQrvU4jZMqX"
    "c4+Ew9atGAZe2kZcN/LYKsLRXP/tFwhxNiBwmGgjqo51WcASCIGvkQCTES3PuP1tSEz8fsN4hFgEiGqulPGfd3uf8HHH7VyGENVQ"
    "Sj8O8Yu9782CxC+LSooJp3RVSTHjElddXuK0Pz0WuMT9QHEPTnFl+R1rWQIV3QMQ93HVN95rfJIlEAJfY7Yc4rDHt6y+hSUQ7B5Q"
    "ZHBFBf815wgxyKIb30EIAxDLuKJC759/RExUjD//SBgwZBGwkSM7L51GAH/7Zw7SZYGug7yurx87SCjQ5VHMZj8IOg5wiHDTuKuJ"
    "1S8ta0SIA3zDih0C8U/vJXUZdU//18i46tz/NfsqTifzgDZrpGQ8XjrgKTcOJBaT/yEhftpOn3UjCT5+DOXAuSPK4ZfdQq0x1MD9"
    "tR6aNZlr+FULSnuTMXOi6Riq9GRuZA8exio9+ovdH7IEgj3Mw5wJMPofo65gCQTbAuUt5Yw05lDL9cRIn3SeihBLOSMNHsgUjd2z"
    "cw5LINhjoGgxp+ja3qtfJwPtjOsIr7my28Q1YcDY52zcaBqf111MjC+eNDxsbQW9Uc4gE/xPPAeJSFHXy1DJUUAs4efftTsvYAmE"
    "WMKV6LRgwsx5dSyBUNtAz1pOz8TN71xOplvvO2Y4XypAGWfuMUxFbMW75EsFa2Hg9eSqPHHX/OHEArGbzkNF9YSiTH5WvtRiD0sg"
    "hMl130DHSpFZT0ZYAn8IABT1IorC6B+kjYQ12E8+HWUzuvF6SBZFxujmRA/Jos2y6GFZ9Igs2iKLfieLHuVFD9tyMhwZi5vDPy6L"
    "fi+LtrpFZPQyKrcjh6WIUbk5FU/JIpvK/Ri7G/6A72CUbkcO45vxuh05jGTG63bksG4yXjdX7nZZtEO6G/wTI3dz0J0etnhBhv5B"
    "Fr0oi3bJot2yaI8sekkW2bxuXCWuhizudBjeUdHo4EoZzXuJeDvMYEb4dnf2H+Vq/EkW/VkWvS4phBnOiN+OvKdTxTdlPW/Jordl"
    "0Tuy6F1ZZBPAD8gGdKjgjhzWSMYHF63ukMI50Qey6C8eY+9DGfpXXhR15PskFbCAMWY4p+IjWfSxLPpEUoi9Pu2fT2X8ZxIe4ghG"
    "DnfP4s/TdzHETIwrzum3ueJmQLTwfhn6hSz6lyw6wIu+zGHyL2XoQVl0SBYdlloE4R0jjouWdNjjnIpjsui4LPpKFn0ti76RRSdk"
    "0bey6DuP+v5bhn4vi2zK+FrXTLAp45xIk0V+WZQjiwKSKGHdRt0yeQ0SlooI89Fb7T62HTJM50iwkhDJt0GGOCPotAh1PjAcI8F6"
    "AjMhQ1ZmiKMjdLWFIR2hMxs2BpHganJPL8iQyQEhaCRhPeB3Pj6JpGtzOH43uZnyu+dDZpNw80PoZnyImVPXt38K/x2cAr73sFST"
    "9YgfohVC8dbg4K11KMeheluPIwCc01i/B6j1pN85BmuebEt27n2Lh/Sn/1LWM/xW0HoW5cLWdqzGB9/x8+OXMaznyc9OuPoC+rsE"
    "+NrWi1iQqEgk+v03EjMEXw=="
)


if __name__ == "__main__":
    # Writes the committed checkpoint of this version's format: python tests/test_engine_checkpoint.py
    sys.path.insert(0, str(Path(__file__).parent.parent))
    path = DATA / f"engine-checkpoint-v{state.VERSION}.msgpack"
    path.write_bytes(fixture_state().export_rooms(FIXTURE_ROOMS))
    print("wrote", path)


def test_a_stored_checkpoint_payload_of_either_compression_unpacks_to_what_was_packed():
    # Layout 3 (zstd) is written; a layout 2 payload (zlib), left on the topic by a worker of the
    # previous release, must still restore after an upgrade.
    from livemon.agents.checkpoints import LAYOUT, Checkpoint, _pack, _unpack

    engine = Engine()
    engine.ingest([View("r1", "u1", 10.0, "enter"), Danmaku("r1", "u1", 11.0, "hi")])
    state_bytes = engine.export_rooms(["r1"])
    alerts = {"r1": {"pending": {"RoomHighStallRatio": 12.0}}}
    checkpoint = Checkpoint(partition=0, offsets={"liveroom.views": 2}, rooms=["r1"], state=state_bytes,
                            alerts=alerts, worker="w1", wall=20.0)
    packed = _pack(checkpoint)
    assert LAYOUT == 3 and packed[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    assert _unpack(packed, LAYOUT) == (state_bytes, alerts)
    body = orjson.dumps(alerts)
    old = zlib.compress(len(body).to_bytes(8, "big") + body + state_bytes, 1)
    assert _unpack(old, 2) == (state_bytes, alerts)


def test_a_show_tally_of_the_earlier_layout_restores_to_the_same_summary():
    # Until 2026-12-03 a show's tally kept its clickers and buyers as sets of users, and a set of
    # users per column besides; now each user once, with the columns they acted under.
    from livemon.engine.ledger import Tally, summary
    from livemon.ingest.events import decode
    from livemon.simulator.core import Simulation

    sim = Simulation("surge", rooms=2, seed=3, duration=120, rate=300)
    engine = Engine()
    for message in sim.messages():
        engine.ingest(decode(message.value, message.topic)[0], sim.now)
        engine.advance(sim.now)
    room = max(engine.rooms.values(), key=lambda r: len(r.ledger.current.data["buyers"]))
    tally = room.ledger.current
    new = Tally.encode(tally)
    old = dict(new)
    for name in ("clickers", "buyers"):
        users = {user: cols for cols, members in new[name] for user in members}
        old[name] = sorted(users)
        old["by_" + name] = {}
        for user, cols in users.items():
            for c in cols:
                old["by_" + name].setdefault(c, []).append(user)

    def summarized(t):
        d = dict(t.data, end=t.data["last_ts"])
        return summary(d, room.regions, 8 * 3600)

    expected = summarized(tally)
    assert expected["totals"]["buyers"] > 5 and expected["totals"]["conversion_rate"]
    assert any(len(values) > 1 for values in expected["by"].values())
    assert summarized(Tally.decode(old)) == summarized(Tally.decode(new)) == expected
    assert Tally.encode(Tally.decode(old)) == new


def test_a_show_restored_mid_way_sums_up_as_one_that_never_stopped():
    # A show's users are numbered in the order the tally first sees them, and numbered again, in
    # another order, when it is restored: its summary must not tell.
    from livemon.ingest.events import decode
    from livemon.simulator.core import Simulation

    sim = Simulation("surge", rooms=3, seed=9, duration=150, rate=300)
    whole, first = Engine(), Engine()
    later = None
    for message in sim.messages():
        events = decode(message.value, message.topic)[0]
        for engine in (whole, later or first):
            engine.ingest(events, sim.now)
            engine.advance(sim.now)
        if later is None and sim.now - sim.start >= 70:
            later = Engine()
            later.import_rooms(first.export_rooms(list(first.rooms)))
    assert later is not None
    middle = {room: whole.show_summary(room) for room in whole.rooms}
    assert middle == {room: later.show_summary(room) for room in later.rooms}
    assert any(s["totals"]["buyers"] and s["products"] and s["hours"] for s in middle.values())
    for engine in (whole, later):
        engine.finish()
    ended = sorted(whole.take_summaries(), key=lambda s: s["room_id"])
    assert ended and ended == sorted(later.take_summaries(), key=lambda s: s["room_id"])
