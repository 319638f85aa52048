"""The engine's SPEC §8-11 figures against the straightforward computation of tests/reference_sales.py,
on generated multi-room shows with every event type, out-of-order arrival within the lateness,
re-entries with other attributes, duplicate and refunded orders, pins, promotions and ad spend.

Every replay line's `by`, `products`, start-up figures (room and per CDN) and `show.pinned`, and
every show summary, must match the reference."""

import random

import orjson
import pytest

from livemon.engine import Engine
from livemon.ingest.events import AGE_BANDS, DEVICES, GENDERS, PROMO_TYPES, SOURCES
from livemon.ingest.events import decode
from livemon.replay import CHUNK, replay_lines
from tests import reference, reference_sales
from tests.test_engine_sales import engine_config

T0 = 1_700_000_000.0
REGIONS = ("Zhejiang", "Guangdong", "Beijing", "Sichuan")
CATEGORIES = ("beauty", "food", "apparel")


def _attrs(rng):
    """Viewer attributes of an enter: each present or not (missing: "unknown")."""
    attrs = {}
    for name, values in (("source", SOURCES), ("device", DEVICES), ("region", REGIONS), ("age_band", AGE_BANDS),
                         ("gender", GENDERS), ("follower", (True, False))):
        if rng.random() < 0.8:
            attrs[name] = rng.choice(values)
    return attrs


def generated_sales(seed, rooms=2, users=20, shows=2, span=200.0, disorder=4.9, margin=6.0, fresh_users=False):
    """Events in arrival order: each arrives less than `disorder` seconds after its ts.

    Per room, `shows` shows one after the other (more than show_idle apart). A show's own `start`
    and `end` events have no other event of the room within `margin` seconds, so that the arrival
    order cannot change which show an event belongs to; user events fill `span` seconds in between.
    """
    rng = random.Random(seed)
    events = []
    products = [f"sku-{k}" for k in range(14)]  # more than 10: top10_share below 1

    def show_event(room, ts, action, **fields):
        events.append({"type": "show", "room_id": room, "ts": ts, "action": action, **fields})

    for r in range(rooms):
        room = f"room-{r}"
        ts0 = T0 + rng.uniform(0, 30)
        order_no = 0
        for s in range(shows):
            kind = rng.choice(["named", "anonymous", "implicit"])
            if kind == "named":
                show_event(room, ts0, "start", show_id=f"{room}-show-{s}", title=f"Show {s}")
            elif kind == "anonymous":
                show_event(room, ts0, "start")
            first = ts0 + (margin if kind != "implicit" else 0.0)
            last = first + span
            # The catalogue: most products announced (some twice: the later one counts), a few never.
            for pid in products:
                if rng.random() < 0.8:
                    entry = {"product_id": pid}
                    if rng.random() < 0.8:
                        entry["category"] = rng.choice(CATEGORIES)
                    if rng.random() < 0.7:
                        entry["title"] = f"Product {pid}"
                    if rng.random() < 0.5:
                        entry["price"] = round(rng.uniform(1, 200), 2)
                    show_event(room, rng.uniform(first + 0.01, last), "product", **entry)
            # The host: pins (the same product again, unpins with nothing pinned), promotions, spend.
            for _ in range(rng.randint(2, 8)):
                at = rng.uniform(first + 0.01, last)
                if rng.random() < 0.7:
                    show_event(room, at, "pin", product_id=rng.choice(products[:6]))
                else:
                    show_event(room, at, "unpin")
            for p in range(rng.randint(0, 4)):
                at = rng.uniform(first + 0.01, last)
                promo = {"promo_id": f"promo-{s}-{p}", "promo_type": rng.choice(PROMO_TYPES)}
                if rng.random() < 0.6:
                    promo["product_id"] = rng.choice(products[:6])
                show_event(room, at, "promo_start", **promo)
                if rng.random() < 0.7:  # else it runs to the show's end
                    show_event(room, rng.uniform(at + 0.01, last), "promo_end", promo_id=promo["promo_id"])
            for _ in range(rng.randint(0, 4)):
                spend = {"amount": rng.choice([0, round(rng.uniform(10, 500), 2)]), "channel": rng.choice(SOURCES)}
                if rng.random() < 0.5:
                    spend["campaign"] = "c-1"
                show_event(room, rng.uniform(first + 0.01, last), "spend", **spend)
            # The audience.
            for u in range(users):
                user = f"user-{s}-{u}" if fresh_users else f"user-{u}"  # else the same people come back
                ghost = rng.random() < 0.1  # never enters: its events are attributed "unknown"
                ts = rng.uniform(first, first + span * 0.7)
                cdn = rng.choice(["cdn-a", "cdn-b"])
                for _ in range(rng.randint(1, 3)):  # visits, each with its own attributes
                    if ts >= last:
                        break
                    visit = _attrs(rng)
                    if not ghost:
                        events.append({"type": "view", "room_id": room, "user_id": user, "ts": ts,
                                       "action": "enter", **visit})
                    for _ in range(rng.randint(0, 7)):
                        ts += rng.choice([rng.uniform(1, 40), rng.uniform(1, 40), rng.uniform(80, 120)])
                        if ts >= last:
                            break
                        base = {"room_id": room, "user_id": user, "ts": ts}
                        draw = rng.random()
                        if draw < 0.3 and not ghost:
                            action = rng.choice(["heartbeat", "heartbeat", "enter"])
                            extra = _attrs(rng) if action == "enter" else {}  # no change within a presence
                            events.append({"type": "view", **base, "action": action, **extra})
                        elif draw < 0.4:
                            events.append({"type": "danmaku", **base, "text": "好"})
                        elif draw < 0.7:
                            target = rng.choice(["product", "product", "product", "cart", "like", "share", "follow"])
                            click = {"type": "click", **base, "target": target}
                            if target in ("product", "cart"):
                                click["product_id"] = rng.choice(products)
                            events.append(click)
                        else:
                            order_no += 1
                            oid = f"{room}-order-{order_no}"
                            pid = rng.choice(products)
                            amount = round(rng.uniform(1, 300), 2)
                            order = {"type": "order", **base, "order_id": oid, "product_id": pid, "amount": amount}
                            flow = rng.random()
                            if flow < 0.15:  # created only
                                events.append({**order, "status": "created"})
                                continue
                            if flow < 0.2:  # a refund of an order never paid: nothing
                                events.append({**order, "status": "refunded"})
                                continue
                            if rng.random() < 0.5:
                                events.append({**order, "status": "created"})
                                order["ts"] = ts = ts + rng.uniform(0.5, 5)
                                if ts >= last:
                                    break
                            events.append({**order, "status": "paid"})
                            if rng.random() < 0.2:  # a resent duplicate
                                events.append({**order, "status": "paid"})
                            later = ts + rng.uniform(6, 30)
                            if rng.random() < 0.2 and later < last:  # a later duplicate, another amount
                                events.append({**order, "ts": later, "status": "paid", "amount": amount + 1})
                            if rng.random() < 0.25 and later < last:
                                events.append({**order, "ts": later + 0.5, "status": "refunded"})
                        if rng.random() < 0.6:
                            beacon = {"type": "health", "room_id": room, "user_id": user, "ts": ts + 0.3,
                                      "cdn": cdn, "play_ms": rng.randrange(0, 10000),
                                      "stall_ms": rng.choice([0, 0, rng.randrange(5000)]),
                                      "stall_count": rng.randrange(3)}
                            if rng.random() < 0.5:
                                beacon["startup_ms"] = rng.choice([rng.uniform(100, 6000), rng.uniform(100, 6000),
                                                                   1000, 3000, 999.5, 3000.5])
                            if rng.random() < 0.7:
                                beacon["latency_ms"] = rng.uniform(500, 9000)
                            if rng.random() < 0.1:
                                beacon["error"] = "decode"
                            if beacon["ts"] < last:
                                events.append(beacon)
                    if ts < last and rng.random() < 0.6 and not ghost:
                        ts += rng.uniform(0, 20)
                        if ts < last:
                            events.append({"type": "view", "room_id": room, "user_id": user, "ts": ts,
                                           "action": "leave"})
                    ts += rng.uniform(1, 100)
            end = last + margin
            if rng.random() < 0.7:
                show_event(room, end, "end", **({"show_id": f"{room}-end-{s}"} if rng.random() < 0.3 else {}))
                ts0 = end + rng.uniform(100, 400)  # explicit end: the next show may come soon
            else:
                ts0 = end + rng.uniform(650, 900)  # ended by 10 minutes without events
            ts0 = max(ts0, end + 200)  # presences (90 s timeout) never cross two shows
    arrival = sorted(((e["ts"] + rng.uniform(0, disorder), i, e) for i, e in enumerate(events)),
                     key=lambda triple: triple[:2])
    return [e for _, _, e in arrival]


def run_engine(events, utc_offset=28800.0, advance_every=None):
    """Replay lines and show summaries. `advance_every`: after every so many events, invalid lines
    up to the next multiple of replay's CHUNK, so that replay advances the engine there (as a
    worker does all the time); the result must not change."""
    data = []
    for i, event in enumerate(events, 1):
        data.append(orjson.dumps(event))
        if advance_every and i % advance_every == 0:
            data += [b"not json"] * (-len(data) % CHUNK)
    shows = []
    lines = list(replay_lines(data, engine_config(utc_offset), shows=shows))
    return lines, shows


def check(events, utc_offset=28800.0, advance_every=None):
    lines, shows = run_engine(events, utc_offset, advance_every)
    got = {(line["room_id"], line["ts"]): line for line in lines}
    assert len(got) == len(lines), "two lines for one room and instant"
    want = reference_sales.timeline(events)
    assert set(got) == set(want), f"lines differ: {sorted(set(got) ^ set(want))[:5]}"
    for key in sorted(want):
        reference_sales.assert_line_matches(got[key], want[key], where=str(key))
    reference_sales.assert_summaries_match(shows, reference_sales.summaries(events, utc_offset=utc_offset))
    return lines, shows


def test_generator_covers_every_event_kind():
    events = generated_sales(0)
    kinds = {(e["type"], e.get("action") or e.get("target") or e.get("status")) for e in events}
    for kind in [("view", "enter"), ("view", "heartbeat"), ("view", "leave"), ("danmaku", None),
                 ("click", "product"), ("click", "cart"), ("click", "like"), ("click", "share"),
                 ("click", "follow"), ("order", "created"), ("order", "paid"), ("order", "refunded"),
                 ("health", "cdn-a"), ("health", "cdn-b")] + [("show", a) for a in (
                     "start", "end", "product", "pin", "unpin", "promo_start", "promo_end", "spend")]:
        if kind[0] == "health":
            assert any(e["type"] == "health" and e["cdn"] == kind[1] for e in events), kind
        elif kind[0] == "danmaku":
            assert any(e["type"] == "danmaku" for e in events)
        else:
            assert kind in kinds, kind
    # Arrival is out of ts order, by less than the lateness.
    assert any(a["ts"] > b["ts"] for a, b in zip(events, events[1:]))
    assert reference.accept(events) == events
    # The reference's instants are those of tests/reference.py (SPEC §6), its presences the same.
    assert set(reference_sales.timeline(events)) == set(reference.timeline(events))
    rooms = reference_sales.group_rooms(events, 5.0, 90.0, 600.0)
    for room in rooms.values():
        views = [e for e in room.events if e["type"] == "view"]
        assert sorted(reference.presences(views, 90.0)) == sorted(p[:3] for p in room.presences)


@pytest.mark.parametrize("seed", range(4))
def test_generated_shows_match_the_reference(seed):
    lines, shows = check(generated_sales(seed))
    assert any(line["by"]["source"] for line in lines)
    assert any(line["products"] for line in lines)
    assert len(shows) == 4  # two rooms, two shows each


@pytest.mark.parametrize("seed, size", [(201, {}), (302, {"users": 30, "span": 400.0, "fresh_users": True})])
def test_results_do_not_depend_on_when_replay_advances(seed, size):
    # Replay advances the engine every CHUNK lines (invalid ones included), as a worker does all
    # the time: here after every 10 or 20 events.
    check(generated_sales(seed, **size), advance_every=10 if size else 20)


def run_engine_live(events, every, live=True, utc_offset=28800.0):
    """The engine driven as a worker drives it: after every `every` events the instants past the
    watermark are made final, then (with `live`) every room's live snapshot is taken; a room keeps
    it, and an instant's final snapshot is its live one when nothing of it or before came since.
    (final lines by (room, ts), show summaries, live snapshots taken)."""
    engine = Engine(engine_config(utc_offset))
    lines, shows, taken = [], [], 0
    for i, event in enumerate(events, 1):
        engine.ingest(decode(orjson.dumps(event))[0])
        if i % every == 0:
            lines += engine.advance()
            taken += len(engine.live_snapshots()) if live else 0
            shows += engine.take_summaries()
    lines += engine.finish()
    shows += engine.take_summaries()
    keyed = {(line["room_id"], line["ts"]): line for line in lines}
    assert len(keyed) == len(lines), "two lines for one room and instant"
    return keyed, sorted(shows, key=orjson.dumps), taken


@pytest.mark.parametrize("seed, every", [(3, 1), (5, 7), (8, 40), (13, 2)])
def test_final_snapshots_are_the_same_with_live_snapshots_taken_between(seed, every):
    # Live snapshots taken as often as after every event, or seldom: the finals and summaries
    # match the reference, and equal those of the same engine taking none.
    events = generated_sales(seed, disorder=4.9)
    got, shows, taken = run_engine_live(events, every)
    assert taken > len(events) // every
    want = reference_sales.timeline(events)
    assert set(got) == set(want)
    for key in sorted(want):
        reference_sales.assert_line_matches(got[key], want[key], where=str(key))
    assert (got, shows) == run_engine_live(events, every, live=False)[:2]


def test_show_boundaries_out_of_order():
    # Events a fraction of a second from a show's start or end, arriving on either side of it:
    # which show an event belongs to is a matter of its ts only.
    check(generated_sales(21, users=15, margin=0.5))


def test_other_utc_offset_and_one_busy_room():
    check(generated_sales(11, rooms=1, users=35, shows=1, span=300.0), utc_offset=-5 * 3600.0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 110))
def test_longer_generated_shows_match_the_reference(seed):
    # Over 2000 lines: replay advances the engine on its own along the way.
    rng = random.Random(seed)
    check(generated_sales(seed, rooms=3, users=60, shows=3, span=900.0, fresh_users=rng.random() < 0.5),
          utc_offset=rng.choice([28800.0, 0.0, -3 * 3600.0, 19800.0]))
