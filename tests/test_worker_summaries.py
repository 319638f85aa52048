"""Show summaries (SPEC §10) from real workers: a worker SIGKILLed mid-show, and the recorded
summaries still equal `livemon replay --shows` of what was sent; the web API serves them.

One combined scenario (~60 s): two workers on a private embedded broker, nine shows in eight rooms
(one room has two shows in a row) sent in real time, built by the simulator (viewers with source,
device, region, age, gender and follower; health beacons with start-up; danmaku, likes, shares,
follows, product and cart clicks; the catalogue, pins, ad spend) with what a short simulated show
rarely has added on top: promotions (one on a product, one on everything, never ended), an unpin
and a second pin, paid orders (some paid twice) and refunds. The worker holding more rooms is
The worker holding room sc-001 is killed while
most shows go on, about when sc-001's first show has its summary; the other worker resumes its
partitions from their checkpoints.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time

from livemon.ingest.events import TOPIC_OF_TYPE, Click, Order, Show, encode, event_type
from livemon.replay import replay_lines
from livemon.simulator import Simulation

ARGS = ("--no-alerts", "--checkpoint-interval", "2", "--summary-interval", "2")
KILL_AT = 18.0        # seconds into the shows: sc-001's first show is over, the others go on
LEAD = 3.0            # the shows start this long after the events are built
SLOT = 0.25           # events are sent in slots of this much event time, each once its time came


def _shows(t0: float) -> list[Simulation]:
    """(prefix, rooms, rate, duration, start offset): shows ending at different times, and a
    room `sc-001` with a second show just after its first."""
    plan = [("sa-", 4, 160.0, 22.0, 0.0, 11), ("sb-", 3, 90.0, 16.0, 0.0, 12),
            ("sc-", 1, 50.0, 9.0, 0.0, 13), ("sc-", 1, 50.0, 12.0, 11.0, 14)]
    return [Simulation("normal,surge", rooms=rooms, seed=seed, start=t0 + offset, duration=duration, rate=rate,
                       room_prefix=prefix) for prefix, rooms, rate, duration, offset, seed in plan]


def _commerce(events: list, rng: random.Random) -> list:
    """What a show of a few seconds rarely has, added within each show: promotions, an unpin and a
    second pin, paid orders (some paid twice) and refunds of product clicks."""
    added = []
    starts = {}
    for event in events:
        if isinstance(event, Show) and event.action == "start":
            starts[event.room_id] = event.ts
        elif isinstance(event, Show) and event.action == "end":
            start, end = starts.pop(event.room_id), event.ts
            products = [e.product_id for e in events if isinstance(e, Show) and e.action == "product"
                        and e.room_id == event.room_id and start <= e.ts <= end]
            room = event.room_id
            added += [Show(room, round(start + 3.0, 3), "promo_start", promo_id=f"{room}-{start:.0f}-a",
                           promo_type="seckill", product_id=products[0]),
                      Show(room, round(start + 5.5, 3), "promo_start", promo_id=f"{room}-{start:.0f}-b",
                           promo_type="coupon"),
                      Show(room, round(start + 6.5, 3), "unpin"),
                      Show(room, round(start + 8.0, 3), "promo_end", promo_id=f"{room}-{start:.0f}-a"),
                      Show(room, round(start + 8.5, 3), "pin", product_id=products[-1])]
            clicks = [e for e in events if isinstance(e, Click) and e.target == "product" and e.room_id == room
                      and start <= e.ts <= end - 4.0]
            for n, click in enumerate(clicks):
                if rng.random() > 0.4:
                    continue
                order_id = f"o-{room}-{start:.0f}-{n}"
                amount = round(rng.uniform(9.9, 299.0), 2)
                at = click.ts
                added.append(Order(room, click.user_id, round(at + 0.5, 3), order_id=order_id,
                                   product_id=click.product_id, amount=amount, status="created"))
                added.append(Order(room, click.user_id, round(at + 1.5, 3), order_id=order_id,
                                   product_id=click.product_id, amount=amount, status="paid"))
                if rng.random() < 0.15:  # the payment callback retried
                    added.append(Order(room, click.user_id, round(at + 2.0, 3), order_id=order_id,
                                       product_id=click.product_id, amount=amount, status="paid"))
                if rng.random() < 0.25 and at + 3.5 < end:
                    added.append(Order(room, click.user_id, round(at + 3.5, 3), order_id=order_id,
                                       product_id=click.product_id, amount=amount, status="refunded"))
    return added


def build_events(t0: float) -> list:
    events = []
    for simulation in _shows(t0):
        for message in simulation.messages():
            events.extend(message.events)
    events += _commerce(events, random.Random(7))
    events.sort(key=lambda e: e.ts)
    return events


def slots(events: list) -> list[tuple[float, list[tuple[str, str, list]]]]:
    """(send at, [(topic, room, events)]) per SLOT of event time, in time order."""
    out: dict[int, dict[tuple[str, str], list]] = {}
    for event in events:
        batch = out.setdefault(math.floor(event.ts / SLOT), {})
        batch.setdefault((TOPIC_OF_TYPE[event_type(event)], event.room_id), []).append(event)
    return [((n + 1) * SLOT, [(topic, room, batch) for (topic, room), batch in groups.items()])
            for n, groups in sorted(out.items())]


def close(got, want, path="") -> list[str]:
    """Where two summaries differ (floats to 1e-9, relative for large ones)."""
    if isinstance(want, dict) and isinstance(got, dict):
        bad = [f"{path}.{k}: missing" for k in want if k not in got] + [f"{path}.{k}: extra" for k in got if k not in want]
        return bad + [d for k in want if k in got for d in close(got[k], want[k], f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(got)} items, not {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in close(g, w, f"{path}[{i}]")]
    if isinstance(want, float) or isinstance(got, float):
        if isinstance(want, (int, float)) and isinstance(got, (int, float)) and \
                abs(got - want) <= 1e-9 * max(1.0, abs(want)):
            return []
        return [f"{path}: {got!r} != {want!r}"]
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]


async def send_in_real_time(bootstrap: str, plan, during) -> list[bytes]:
    """Send each slot once its time came; `during(seconds into the shows)` runs between slots.
    Returns the lines sent, in order (for the replay)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    lines = []
    try:
        for at, groups in plan:
            await asyncio.sleep(max(0.0, at - time.time()))
            for topic, room, batch in groups:
                await producer.send(topic, encode(batch), key=room.encode())
                lines.extend(encode(event) for event in batch)
            during(at)
        await producer.flush()
    finally:
        await producer.stop()
    return lines


async def published_summaries(bootstrap: str) -> list[tuple]:
    """(room, start, worker) of every show summary on the snapshots topic."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer("liveroom.snapshots", bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out = []
    try:
        while batches := await consumer.getmany(timeout_ms=1000, max_records=5000):
            for messages in batches.values():
                for message in messages:
                    record = json.loads(message.value)
                    out += [(s["room_id"], s["start"], record["worker"]) for s in record.get("summaries") or ()]
    finally:
        await consumer.stop()
    return out


def api(worker, path: str) -> tuple[int, dict]:
    status, body = worker.get(path)
    return status, json.loads(body)


def test_summaries_survive_a_sigkill_and_equal_replay(make_broker, start_worker, tmp_path):
    started = time.monotonic()
    bootstrap = make_broker()
    workers = [start_worker(bootstrap, *ARGS, "--recording-dir", str(tmp_path / f"rec-{i}"), wait=False)
               for i in range(2)]
    for worker in workers:
        worker.wait_ready()
    t0 = time.time() + LEAD
    events = build_events(t0)
    kinds = {(event_type(e), getattr(e, "action", None) or getattr(e, "status", None) or getattr(e, "target", None))
             for e in events}
    for kind in [("show", a) for a in ("start", "end", "product", "pin", "unpin", "promo_start", "promo_end", "spend")] + \
            [("order", s) for s in ("created", "paid", "refunded")] + [("click", "product"), ("click", "cart")]:
        assert kind in kinds, kind
    seen: dict = {"killed": None, "provisional": None}

    def during(at: float):
        if seen["killed"] is None and at >= t0 + KILL_AT:
            owns = [worker.value("livemon_room_snapshot_timestamp_seconds", room="sc-001") is not None
                    for worker in workers]
            victim = owns.index(True)
            seen["rooms"] = workers[victim].value("livemon_rooms")
            workers[victim].kill()
            seen["killed"], seen["survivor"] = victim, workers[1 - victim]
        if seen["provisional"] is None and at >= t0 + 6:
            # (b) the live show's provisional summary, from a worker's web API
            status, body = api(seen.get("survivor") or workers[0], "/api/rooms/sa-001/summary")
            if status == 200:
                seen["provisional"] = body

    lines = asyncio.run(send_in_real_time(bootstrap, slots(events), during))
    survivor = seen["survivor"]
    assert seen["provisional"] is not None, "no provisional summary during the show"
    assert seen["provisional"]["provisional"] is True and seen["provisional"]["room_id"] == "sa-001"
    assert seen["provisional"]["totals"]["viewers"] > 0

    expected: list[dict] = []
    for _ in replay_lines(lines, shows=expected):
        pass
    assert len(expected) == 9, [(s["room_id"], s["start"]) for s in expected]
    assert sum(s["totals"]["orders"] for s in expected) > 20 and any(s["totals"]["refunds"] for s in expected)
    assert all(s["promos"] and s["segments"] and s["spend"] for s in expected)

    # (a) the survivor's recording has every show's summary, equal to the replay's
    keys: dict[tuple, str] = {}
    deadline = time.monotonic() + 40
    while True:
        status, listing = api(survivor, "/api/shows")
        keys = {(show["room_id"], show["start"]): show["key"] for show in listing["shows"]}
        got = {}
        for summary in expected:
            key = keys.get((summary["room_id"], summary["start"]))
            if key is not None:
                status, body = api(survivor, f"/api/shows/{key}/summary")
                if status == 200:
                    got[key] = body
        if len(got) == len(expected) or time.monotonic() > deadline:
            break
        time.sleep(1)
    missing = [(s["room_id"], s["start"]) for s in expected if keys.get((s["room_id"], s["start"])) not in got]
    assert not missing, (missing, sorted(keys), asyncio.run(published_summaries(bootstrap)))
    for summary in expected:
        body = dict(got[keys[(summary["room_id"], summary["start"])]])
        assert body.pop("show_key") == keys[(summary["room_id"], summary["start"])]
        assert body.pop("incidents") == []  # --no-alerts: none recorded
        assert close(body, summary) == [], (summary["room_id"], summary["start"])
    # The killed worker's partitions came back from their checkpoints.
    assert (survivor.value("livemon_checkpoints_restored_total") or 0) > 0

    # (b) the API's answers when there is nothing to give
    status, body = api(survivor, "/api/rooms/sa-001/summary")
    assert status == 404 and "no show going on" in body["error"]  # its show is over
    assert api(survivor, "/api/rooms/nowhere/summary")[0] == 404
    status, body = api(survivor, "/api/shows/nowhere/summary")
    assert status == 404 and body["error"] == "no such show"
    published = asyncio.run(published_summaries(bootstrap))
    print(f"\n{len(expected)} show summaries equal to replay after a SIGKILL of a worker with "
          f"{seen['rooms']:.0f} rooms; {len(lines)} events; summaries published (room, start, worker): "
          f"{sorted(published)}; {time.monotonic() - started:.1f} s")
