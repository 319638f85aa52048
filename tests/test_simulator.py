"""The traffic generator core: determinism, contract-valid output, bad input, and the player model."""

import functools
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from livemon.ingest import events as ev
from livemon.simulator import Simulation, TraceError, generate, load_traces
from livemon.simulator.cli import simulate

TRACES = Path("/work/shared/data/bandwidth-traces")
START = 1_700_000_000.0


def run(scenario="normal", **options):
    options = {"rooms": 3, "seed": 7, "start": START, "duration": 60, "rate": 500, **options}
    return list(generate(scenario, **options))


def all_events(messages):
    return [event for message in messages for event in message.events]


def health_stats(events, room=None, cdn=None, since=0.0, until=1e18):
    """(stall ratio, error rate, beacons) over the matching beacons: the SPEC §5 definitions."""
    beacons = [e for e in events if isinstance(e, ev.Health) and (room is None or e.room_id == room)
               and (cdn is None or e.cdn == cdn) and since <= e.ts - START < until]
    played = sum(e.play_ms + e.stall_ms for e in beacons)
    stall = sum(e.stall_ms for e in beacons) / played if played else None
    errors = sum(e.error is not None for e in beacons) / len(beacons) if beacons else None
    return stall, errors, len(beacons)


def test_same_seed_same_bytes_other_seed_other_show():
    first = [(m.topic, m.key, m.value) for m in run("normal,bad-input,cdn-outage", duration=20)]
    again = [(m.topic, m.key, m.value) for m in run("normal,bad-input,cdn-outage", duration=20)]
    other = [(m.topic, m.key, m.value) for m in run("normal,bad-input,cdn-outage", duration=20, seed=8)]
    assert first == again
    assert first != other


def test_every_message_decodes_to_exactly_its_events_on_its_topic():
    late_or_future = (ev.LATE, ev.FUTURE)
    for message in run("normal,bad-input,surge", duration=40):
        decoded, rejections = ev.decode(message.value, message.topic)
        # decode accepts late and future events: only the engine, knowing the clock, rejects them
        out_of_time = {raw for reason, raw in message.rejected if reason in late_or_future}
        in_time = [e for e in decoded if ev.encode(e) not in out_of_time]
        assert [ev.encode(e) for e in in_time] == [ev.encode(e) for e in message.events]
        assert Counter(r.reason for r in rejections) == Counter(
            reason for reason, _ in message.rejected if reason not in late_or_future)
        for event in message.events:
            assert ev.TOPIC_OF_TYPE[ev.event_type(event)] == message.topic
            assert event.room_id == message.key


def test_envelopes_hold_at_most_the_envelope_size_and_size_one_sends_objects():
    for message in run(duration=15, envelope=7):
        assert 1 <= len(message.events) <= 7
        assert message.value.startswith(b"[")
    for message in run(duration=15, envelope=1):
        assert message.value.startswith(b"{") and len(message.events) == 1


def test_bad_input_gives_every_rejection_reason_and_late_events_are_late():
    messages = run("normal,bad-input", duration=40)
    reasons = Counter(reason for m in messages for reason, _ in m.rejected)
    assert set(reasons) == set(ev.REJECT_REASONS)
    # Some bad events ride inside envelopes that also carry good events.
    assert any(m.events and m.rejected for m in messages)
    newest: dict[str, float] = {}
    for message in messages:
        for reason, raw in message.rejected:
            if reason in (ev.LATE, ev.FUTURE):
                (event,), _ = ev.decode(raw)
                if reason == ev.LATE:
                    assert event.ts < newest[event.room_id] - 5.0  # older than the watermark
                else:
                    assert event.ts > newest[event.room_id] + 600
        for event in message.events:
            newest[event.room_id] = max(newest.get(event.room_id, 0.0), event.ts)
    # Without the scenario, nothing is bad.
    assert not any(m.rejected for m in run(duration=20))


def test_a_show_has_the_traffic_of_a_live_room():
    events = all_events(run(duration=200, rooms=4, rate=400))
    kinds = Counter(ev.event_type(e) for e in events)
    assert set(kinds) == set(ev.EVENT_TYPES)
    views = Counter(e.action for e in events if isinstance(e, ev.View))
    assert views["enter"] > views["leave"] > 0 and views["heartbeat"] > views["enter"]
    # Some viewers vanish without a leave: presence has to time out for them.
    entered = {(e.room_id, e.user_id) for e in events if isinstance(e, ev.View) and e.action == "enter"}
    left = {(e.room_id, e.user_id) for e in events if isinstance(e, ev.View) and e.action == "leave"}
    assert 0.05 < len(entered - left) / len(entered) < 0.3
    # The hot room holds the largest audience.
    per_room = Counter(e.room_id for e in events)
    assert per_room.most_common(1)[0][0] == "room-001"
    # Orders: created then paid, some paid twice (retried callbacks), amounts >= 0.
    orders = [e for e in events if isinstance(e, ev.Order)]
    paid = Counter(e.order_id for e in orders if e.status == "paid")
    created = {e.order_id for e in orders if e.status == "created"}
    assert paid and set(paid) <= created
    assert any(count > 1 for count in paid.values())
    clicks = [e for e in events if isinstance(e, ev.Click)]
    assert {c.target for c in clicks} == {"product", "cart", "like", "share", "follow"}
    shows = [e for e in events if isinstance(e, ev.Show)]
    for i in range(1, 5):
        actions = [e.action for e in shows if e.room_id == f"room-00{i}"]
        assert actions[0] == "start" and actions[-1] == "end"
        assert actions.count("start") == actions.count("end") == 1
        assert {"product", "pin", "spend"} <= set(actions)
    # In arrival order, within the one-second tick the generator works in.
    stamps = [e.ts for e in events]
    assert all(b > a - 1.0 for a, b in zip(stamps, stamps[1:]))


def test_rate_sets_the_traffic():
    events = all_events(run(duration=90, rooms=5, rate=600))
    steady = [e for e in events if 40 <= e.ts - START < 90]
    assert 480 <= len(steady) / 50 <= 720


def test_surge_and_danmaku_flood_raise_their_traffic():
    base = all_events(run(duration=80, rate=300))
    surge = all_events(run("normal,surge", duration=80, rate=300))
    flood = all_events(run("normal,danmaku-flood", duration=80, rate=300))

    def count(events, kind, value=None):  # during the fault window, 24..56 s
        return sum(1 for e in events if ev.event_type(e) == kind and 24 <= e.ts - START < 56
                   and value in (None, getattr(e, "target", None), getattr(e, "action", None)))

    assert count(surge, "click", "product") > 3 * count(base, "click", "product")
    assert count(surge, "view", "enter") > 2.5 * count(base, "view", "enter")
    assert count(flood, "danmaku") > 10 * count(base, "danmaku")


def test_measured_3g_traces_stall_more_than_the_builtin_network():
    builtin, _, _ = health_stats(all_events(run(duration=120, rate=300)))
    traces = load_traces(TRACES / "hsdpa-3g")
    mobile, _, beacons = health_stats(all_events(run(duration=120, rate=300, traces=traces)))
    assert beacons > 1000
    assert mobile > 2 * builtin


def test_cdn_outage_degrades_that_cdn_and_failover_recovers_the_room():
    # Outage of the hot room's primary CDN from 30 s on; the viewers are failed over at 70 s.
    sim = Simulation("normal,cdn-outage", rooms=2, seed=3, start=START, duration=130, rate=400,
                     fault_at=30, fault_for=100)
    messages = []
    for message in sim.messages():
        if sim.now - START == 70 and not sim.failovers:
            assert sim.apply_failover("room-001", "cdn-b", from_cdn="cdn-a")
        messages.append(message)
    events = all_events(messages)
    before, before_errors, _ = health_stats(events, "room-001", "cdn-a", 0, 30)
    during, during_errors, _ = health_stats(events, "room-001", "cdn-a", 45, 70)
    assert during > 0.05 > before and during_errors > 0.1 > before_errors
    # The other room and the other CDNs of the hot room are unaffected.
    assert health_stats(events, "room-002", None, 45, 70)[0] < 0.02
    assert health_stats(events, "room-001", "cdn-b", 45, 70)[0] < 0.02
    # After the failover nobody plays on cdn-a any more, and the room's stall ratio recovers.
    assert health_stats(events, "room-001", "cdn-a", 71, 130)[2] == 0
    after, _, beacons = health_stats(events, "room-001", None, 80, 130)
    assert beacons > 500 and after < 0.02
    # An unknown room's command is not ours.
    assert not Simulation(rooms=1).apply_failover("room-999", "cdn-b")


def test_stall_storm_raises_stalls_everywhere():
    events = all_events(run("normal,stall-storm", duration=100, rate=400))
    for room in ("room-001", "room-002"):
        assert health_stats(events, room, None, 40, 70)[0] > 3 * health_stats(events, room, None, 0, 30)[0]


def test_trace_errors_name_the_folder_file_and_line(tmp_path):
    with pytest.raises(TraceError, match="does not exist"):
        load_traces(tmp_path / "missing")
    with pytest.raises(TraceError, match="holds no trace files"):
        load_traces(tmp_path)
    (tmp_path / "a.tsv").write_text("0.0\t1.5\n0.5\tfast\n")
    with pytest.raises(TraceError, match=r"a\.tsv, line 2"):
        load_traces(tmp_path)
    (tmp_path / "a.tsv").write_text("0.0\t1.5\n")
    with pytest.raises(TraceError, match="at least two lines"):
        load_traces(tmp_path)
    (tmp_path / "a.tsv").write_text("0.0\t1.5\n1.0\t2.5\n")
    (trace,) = load_traces(tmp_path)
    assert trace.at(0.7) == 2.5 and trace.at(1.7) == 2.5  # it loops


def test_cli_errors_are_clear_and_without_traceback(tmp_path):
    runner = CliRunner()
    result = runner.invoke(simulate, ["--scenario", "normal,party"])
    assert result.exit_code == 2 and "unknown scenario party" in result.output
    result = runner.invoke(simulate, ["--traces", str(tmp_path)])
    assert result.exit_code == 1 and "holds no trace files" in result.output
    result = runner.invoke(simulate, ["--broker", "127.0.0.1:1", "--connect-timeout", "1"])
    assert result.exit_code == 1 and "cannot reach a Kafka broker at 127.0.0.1:1" in result.output
    assert "Traceback" not in result.output


# -- the show that sells (SPEC §2, §8-11) ---------------------------------------------------------

@functools.cache
def selling_show():
    """Half an hour of four rooms at a low rate (beacons every minute: more viewers for the
    events), shared by the tests below: (messages, events)."""
    messages = run(rooms=4, seed=4, duration=1800, rate=50, beacon_interval=60)
    return messages, all_events(messages)


def shows_of(events, action=None):
    return [e for e in events if isinstance(e, ev.Show) and action in (None, e.action)]


def enters(events):
    return [e for e in events if isinstance(e, ev.View) and e.action == "enter"]


def stretches(events):
    """{room: [(start, end, product_id)]}: the pinned stretches (SPEC §10 `segments`)."""
    out, current = {}, {}
    for e in shows_of(events):
        if e.action in ("pin", "unpin", "end") and e.room_id in current:
            start, product = current.pop(e.room_id)
            out.setdefault(e.room_id, []).append((start, e.ts, product))
        if e.action == "pin":
            current[e.room_id] = (e.ts, e.product_id)
    return out


def pinned_at(pins, room, ts):
    return next((product for start, end, product in pins.get(room, ()) if start <= ts < end), None)


def test_show_events_carry_the_catalogue_pins_promotions_and_spend():
    messages, events = selling_show()
    for message in messages:
        if message.topic == "liveroom.shows":
            decoded, rejections = ev.decode(message.value, message.topic)
            assert not rejections and len(decoded) == len(message.events)
            assert {e.room_id for e in decoded} == {message.key}
    shows = shows_of(events)
    assert {e.action for e in shows} == {"start", "end", "product", "pin", "unpin", "promo_start", "promo_end",
                                         "spend"}
    for room in {e.room_id for e in shows}:
        start = next(e for e in shows if e.room_id == room and e.action == "start")
        assert start.show_id and any("\u4e00" <= ch <= "\u9fff" for ch in start.title)
        catalogue = [e for e in shows if e.room_id == room and e.action == "product" and e.ts == start.ts]
        assert 20 <= len(catalogue) == len({e.product_id for e in catalogue}) <= 40
        for product in catalogue:
            assert product.category in ("美妆", "服饰", "食品", "家居", "数码", "母婴")
            assert 9.9 <= product.price <= 999 and any("\u4e00" <= ch <= "\u9fff" for ch in product.title)
        # Every pinned product is in the room's catalogue.
        listed = {e.product_id for e in shows if e.room_id == room and e.action == "product"}
        assert {e.product_id for e in shows if e.room_id == room and e.action == "pin"} <= listed
    prices = [e.price for e in shows_of(events, "product")]
    assert min(prices) < 50 and max(prices) > 300 and len(set(prices)) > 30
    # Products re-listed (again, at a live-room price) after the start.
    assert any(e.ts > START for e in shows_of(events, "product"))
    # Pins last minutes; every promotion ends; seckills run on a product, lotteries on the room.
    pins = [end - start for room in stretches(events).values() for start, end, _ in room]
    assert 60 <= sorted(pins)[len(pins) // 2] <= 240
    started = {e.promo_id: e for e in shows_of(events, "promo_start")}
    assert started.keys() == {e.promo_id for e in shows_of(events, "promo_end")}
    assert {e.promo_type for e in started.values()} >= {"seckill", "discount", "coupon", "lottery"}
    assert all(e.product_id for e in started.values() if e.promo_type == "seckill")
    assert not any(e.product_id for e in started.values() if e.promo_type == "lottery")
    # Spend every minute per bought channel, paid traffic first; campaigns on paid spend.
    spend = shows_of(events, "spend")
    channels = Counter(e.channel for e in spend)
    assert channels["paid"] >= 4 * 15 and {"paid", "social"} <= set(channels) <= {"paid", "social", "search"}
    assert all(e.amount > 0 for e in spend) and all(e.campaign for e in spend if e.channel == "paid")
    # Orders carry the product's price, or a multiple of it.
    price = {}
    for e in events:
        if isinstance(e, ev.Show) and e.action == "product":
            price[e.room_id, e.product_id] = e.price
        elif isinstance(e, ev.Order) and e.status == "created":
            quantity = e.amount / price[e.room_id, e.product_id]
            assert abs(quantity - round(quantity)) < 1e-6 and 1 <= round(quantity) <= 3


def test_viewer_attributes_have_plausible_mixes_and_are_kept_on_reentry():
    _, events = selling_show()
    entered = enters(events)
    assert len(entered) > 2000

    def share(field, value, among=entered):
        return sum(getattr(e, field) == value for e in among) / len(among)

    assert 0.8 < share("device", "mobile") < 0.9 and share("device", "pc") > share("device", "tv") > 0
    sources = Counter(e.source for e in entered)
    assert set(sources) == set(ev.SOURCES) and sources.most_common(1)[0][0] in ("organic", "paid")
    assert 0.1 < share("source", "paid") < 0.4 and share("source", "other") < 0.1
    regions = Counter(e.region for e in entered)
    assert len(regions) > 25 and "广东" in [r for r, _ in regions.most_common(3)]
    assert regions["广东"] > 5 * regions.get("西藏", 0)
    assert {e.age_band for e in entered} == set(ev.AGE_BANDS)
    assert share("age_band", "24-30") > share("age_band", "50+")
    assert share("gender", "female") > 0.5 > share("gender", "male") > share("gender", "other") > 0
    assert 0.1 < share("follower", True) < 0.45
    from_follow = [e for e in entered if e.source == "follow"]
    assert share("follower", True, from_follow) > 0.8 > 0.3 > share("follower", True, [
        e for e in entered if e.source == "paid"])
    # Back again: the same person (the source may differ: another way in).
    first, returns, other_source = {}, 0, 0
    for e in entered:
        key = (e.room_id, e.user_id)
        if key in first:
            returns += 1
            before = first[key]
            assert (e.device, e.region, e.age_band, e.gender) == (before.device, before.region, before.age_band,
                                                                  before.gender)
            assert e.follower or not before.follower
            other_source += e.source != before.source
        first.setdefault(key, e)
    assert returns > 50 and 0 < other_source < returns / 2


def test_paid_traffic_rises_with_spend():
    _, events = selling_show()
    spend = Counter()
    for e in shows_of(events, "spend"):
        if e.channel == "paid":
            spend[e.room_id, int((e.ts - START - 1) // 60)] += e.amount
    paid, entries = Counter(), Counter()
    for e in enters(events):
        minute = (e.room_id, int((e.ts - START) // 60))
        entries[minute] += 1
        paid[minute] += e.source == "paid"
    # Per room and minute: the more spent on paid traffic, the larger its share of the arrivals.
    minutes = [m for m in entries if entries[m] >= 10 and m[1] >= 1]
    ranked = sorted(minutes, key=lambda m: spend[m] / entries[m])
    low, high = ranked[:len(ranked) // 3], ranked[-(len(ranked) // 3):]
    share = lambda ms: sum(paid[m] for m in ms) / sum(entries[m] for m in ms)  # noqa: E731
    assert share(high) > 1.5 * share(low)
    # And about 1-3 yuan a paid visitor.
    assert 0.5 < sum(spend.values()) / sum(paid.values()) < 3.0


def test_pinned_products_get_the_clicks_and_orders_while_pinned():
    _, events = selling_show()
    pins = stretches(events)
    clicks = [e for e in events if isinstance(e, ev.Click) and e.target == "product"]
    during = [(e, pinned_at(pins, e.room_id, e.ts)) for e in clicks]
    during = [(e, product) for e, product in during if product]
    assert sum(e.product_id == product for e, product in during) > 0.7 * len(during)
    # Per pinned product: clicks, carts and paid orders a minute while pinned and while not.
    pinned_time = Counter()
    for room, stretch in pins.items():
        for start, end, product in stretch:
            pinned_time[room, product] += end - start
    show_time = 1800.0 * len(pins)

    def per_minute(kept):
        on = off = 0
        for e in kept:
            if (e.room_id, e.product_id) in pinned_time:
                if pinned_at(pins, e.room_id, e.ts) == e.product_id:
                    on += 1
                else:
                    off += 1
        pinned = sum(pinned_time.values())
        return on / pinned * 60, off / (show_time * len(pinned_time) / len(pins) - pinned) * 60

    for kept, factor in ((clicks, 10), ([e for e in events if isinstance(e, ev.Click) and e.target == "cart"], 5),
                         ([e for e in events if isinstance(e, ev.Order) and e.status == "paid"], 3)):
        on, off = per_minute(kept)
        assert on > factor * off, (kept[0], on, off)


def conversions(events):
    """{promo type or 'none': (product clicks, the share followed by a paid order of it by the
    clicker within 2 minutes)}, by the promotion running on the product at the click."""
    promos, ends = {}, {}
    for e in shows_of(events):
        if e.action == "promo_start":
            promos[e.promo_id] = (e.room_id, e.promo_type, e.product_id, e.ts)
        elif e.action == "promo_end":
            ends[e.promo_id] = e.ts
    paid = {}
    for e in events:
        if isinstance(e, ev.Order) and e.status == "paid":
            paid.setdefault((e.room_id, e.user_id, e.product_id), []).append(e.ts)
    counts = {}
    for e in events:
        if isinstance(e, ev.Click) and e.target == "product":
            kind = next((kind for promo, (room, kind, product, start) in promos.items()
                         if room == e.room_id and start <= e.ts < ends[promo] and product in (None, e.product_id)),
                        "none")
            bought = any(e.ts < ts < e.ts + 120 for ts in paid.get((e.room_id, e.user_id, e.product_id), ()))
            n, b = counts.get(kind, (0, 0))
            counts[kind] = (n + 1, b + bought)
    return {kind: (n, b / n) for kind, (n, b) in counts.items()}


def test_promotions_lift_conversion_a_seckill_most():
    _, events = selling_show()
    rates = conversions(events)
    none = rates.pop("none")
    assert none[0] > 500 and 0.02 < none[1] < 0.15
    promoted = sum(n * rate for n, rate in rates.values()) / sum(n for n, _ in rates.values())
    assert promoted > 1.3 * none[1]
    assert rates["seckill"][0] > 100 and rates["seckill"][1] > 2 * none[1]
    assert rates["seckill"][1] == max(rate for n, rate in rates.values() if n > 100)


def test_refunds_are_a_few_percent_and_followers_buy_more():
    _, events = selling_show()
    statuses = {}
    for e in events:
        if isinstance(e, ev.Order):
            statuses.setdefault(e.order_id, []).append(e.status)
    paid = [s for s in statuses.values() if "paid" in s]
    refunded = [s for s in paid if "refunded" in s]
    assert len(paid) > 200 and 0.01 < len(refunded) / len(paid) < 0.08
    assert all(s.index("paid") < s.index("refunded") for s in refunded)
    assert all("paid" in s for s in statuses.values() if "refunded" in s)
    # Conversion (buyers among viewers) of followers and of the others.
    follower = {(e.room_id, e.user_id): e.follower for e in enters(events)}
    buyers = {(e.room_id, e.user_id) for e in events if isinstance(e, ev.Order) and e.status == "paid"}
    rate = {f: sum(k in buyers for k, v in follower.items() if v == f) / sum(v == f for v in follower.values())
            for f in (True, False)}
    assert rate[True] > 1.2 * rate[False]
    # Tastes by age band and gender (what a click turns into): the tables behind the purchases.
    from livemon.simulator.commerce import TASTES
    assert TASTES["31-40", "female", "mobile", False]["母婴"] > 2 * TASTES["50+", "female", "mobile", False]["母婴"]
    assert TASTES["24-30", "male", "mobile", False]["数码"] > 2 * TASTES["24-30", "male", "mobile", False]["美妆"]


def startups(events, keep=lambda e: True):
    return sorted(e.startup_ms for e in events
                  if isinstance(e, ev.Health) and e.startup_ms is not None and keep(e))


def test_startup_ms_comes_with_the_first_beacon_of_a_play_and_follows_the_network(tmp_path):
    events = all_events(run(duration=60, rate=200))
    beacons = {}
    for e in events:
        if isinstance(e, ev.Health):
            beacons.setdefault((e.room_id, e.user_id), []).append(e)
    firsts = [b[0] for b in beacons.values()]
    assert sum(b.startup_ms is not None for b in firsts) > 0.9 * len(firsts)
    builtin = startups(events)
    assert len(builtin) < 1.2 * len(beacons)  # once a play, not on every beacon
    assert 200 < builtin[len(builtin) // 2] < 1000
    assert sum(ms <= 1000 for ms in builtin) > 0.85 * len(builtin)
    # A good and a bad measured network (trace files: seconds, Mbit/s).
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "good" / "a.tsv").write_text("0\t20\n10\t25\n20\t18\n30\t22\n")
    (tmp_path / "bad" / "a.tsv").write_text("0\t0.6\n10\t0.3\n20\t1.2\n30\t0.5\n")
    good = startups(all_events(run(duration=40, rate=200, traces=load_traces(tmp_path / "good"))))
    bad = startups(all_events(run(duration=40, rate=200, traces=load_traces(tmp_path / "bad"))))
    assert good[len(good) // 2] < 1000 and bad[len(bad) // 2] > 2 * good[len(good) // 2]
    assert sum(ms <= 1000 for ms in good) / len(good) > 3 * sum(ms <= 1000 for ms in bad) / len(bad)
    # A CDN outage: plays that start on the failing CDN start slowly; the others as before.
    events = all_events(run("normal,cdn-outage", duration=60, rate=200, fault_at=10, fault_for=50))
    failing = startups(events, lambda e: e.room_id == "room-001" and e.cdn == "cdn-a" and e.ts - START > 20)
    others = startups(events, lambda e: not (e.room_id == "room-001" and e.cdn == "cdn-a"))
    assert failing[len(failing) // 2] > 3000 > 3 * others[len(others) // 2]


def test_the_selling_show_is_the_same_for_the_same_seed():
    messages = run(rooms=2, seed=9, duration=400, rate=20)
    again = run(rooms=2, seed=9, duration=400, rate=20)
    assert [(m.topic, m.key, m.value) for m in messages] == [(m.topic, m.key, m.value) for m in again]
    assert {"pin", "promo_start", "spend"} <= {e.action for e in shows_of(all_events(messages))}
