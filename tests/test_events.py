"""Ingestion (SPEC §2): `decode` never raises; every input is a valid event or a rejection with a
reason and its raw bytes; one bad event in a batch envelope rejects that event only, and the valid
ones are counted exactly. Property-based (hypothesis) on arbitrary bytes and mutated valid events,
plus one classification case per rejection reason."""

import json

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livemon.engine import Engine, EngineConfig
from livemon.ingest import events as ev
from livemon.ingest.events import (BAD_VALUE, FUTURE, INVALID_JSON, LATE, MAX_EVENT_BYTES, MISSING_FIELD,
                                   REJECT_REASONS, TOO_LARGE, TOPIC_OF_TYPE, UNKNOWN_TYPE, WRONG_TOPIC,
                                   WRONG_TYPE, Rejection, decode, encode, event_type)

T0 = 1_700_000_000.0
EVENT_CLASSES = (ev.View, ev.Danmaku, ev.Click, ev.Order, ev.Health, ev.Show)

# ---- valid events, as the JSON objects producers send ----

ids = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)
small_ids = st.sampled_from(["u1", "u2", "u3", "user.4", "user:5", "user-6_x"])
rooms = st.sampled_from(["room-1", "room-2"])
times = st.floats(T0, T0 + 20, allow_nan=False).map(lambda t: round(t, 3))
non_negative = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
counts = st.integers(0, 100_000)


def _event(kind, **fields):
    return st.fixed_dictionaries({"type": st.just(kind), "room_id": rooms, "user_id": small_ids, "ts": times,
                                  **fields})


def _optional(strategies):
    """Optional fields: each present or absent."""
    return st.fixed_dictionaries({}, optional=strategies)


def _with_optional(required, optional):
    return st.tuples(required, _optional(optional)).map(lambda pair: {**pair[0], **pair[1]})


VALID = {
    "view": _with_optional(_event("view", action=st.sampled_from(["enter", "heartbeat", "leave"])), {
        "source": st.sampled_from(["organic", "paid", "social", "search", "follow", "other"]),
        "device": st.sampled_from(["mobile", "pc", "tv", "other"]),
        "region": st.text(min_size=1, max_size=32), "age_band": st.sampled_from(["18-23", "24-30", "31-40", "41-50", "50+"]),
        "gender": st.sampled_from(["female", "male", "other"]), "follower": st.booleans()}),
    "danmaku": _event("danmaku", text=st.text(max_size=500)),
    "click": st.one_of(
        _event("click", target=st.sampled_from(["like", "share", "follow"])),
        _event("click", target=st.sampled_from(["product", "cart"]), product_id=ids)),
    "order": _event("order", order_id=st.sampled_from(["o1", "o2", "o3", "o4"]), product_id=ids,
                    amount=non_negative, status=st.sampled_from(["created", "paid", "refunded"])),
    "health": _with_optional(
        _event("health", cdn=st.sampled_from(["cdn-a", "cdn-b"]), play_ms=counts, stall_ms=counts,
               stall_count=st.integers(0, 50)),
        {"latency_ms": non_negative, "bitrate_kbps": non_negative, "fps": non_negative,
         "dropped_frames": non_negative, "startup_ms": non_negative,
         "error": st.from_regex(r"[A-Z_0-9]{1,64}", fullmatch=True)}),
    "show": st.one_of(
        _with_optional(st.fixed_dictionaries({"type": st.just("show"), "room_id": rooms, "ts": times,
                                              "action": st.sampled_from(["start", "end"])}),
                       {"show_id": ids, "title": st.text(max_size=200), "user_id": small_ids}),
        _with_optional(st.fixed_dictionaries({"type": st.just("show"), "room_id": rooms, "ts": times,
                                              "action": st.just("product"), "product_id": ids}),
                       {"title": st.text(max_size=200), "category": st.text(min_size=1, max_size=32),
                        "price": non_negative}),
        st.fixed_dictionaries({"type": st.just("show"), "room_id": rooms, "ts": times,
                               "action": st.just("pin"), "product_id": ids}),
        st.fixed_dictionaries({"type": st.just("show"), "room_id": rooms, "ts": times, "action": st.just("unpin")}),
        _with_optional(st.fixed_dictionaries({"type": st.just("show"), "room_id": rooms, "ts": times,
                                              "action": st.just("promo_start"), "promo_id": ids,
                                              "promo_type": st.sampled_from(["seckill", "discount", "coupon",
                                                                             "gift", "lottery", "other"])}),
                       {"product_id": ids}),
        st.fixed_dictionaries({"type": st.just("show"), "room_id": rooms, "ts": times,
                               "action": st.just("promo_end"), "promo_id": ids}),
        _with_optional(st.fixed_dictionaries({"type": st.just("show"), "room_id": rooms, "ts": times,
                                              "action": st.just("spend"), "amount": non_negative,
                                              "channel": st.sampled_from(["organic", "paid", "social",
                                                                          "search", "follow", "other"])}),
                       {"campaign": ids})),
}
valid_events = st.sampled_from(sorted(VALID)).flatmap(lambda kind: VALID[kind])

REQUIRED = {
    "view": ["type", "room_id", "user_id", "ts", "action"],
    "danmaku": ["type", "room_id", "user_id", "ts", "text"],
    "click": ["type", "room_id", "user_id", "ts", "target"],
    "order": ["type", "room_id", "user_id", "ts", "order_id", "product_id", "amount", "status"],
    "health": ["type", "room_id", "user_id", "ts", "cdn", "play_ms", "stall_ms", "stall_count"],
    "show": ["type", "room_id", "ts", "action"],
}
STRING_FIELDS = {"room_id", "user_id", "text", "target", "product_id", "order_id", "status", "cdn", "action",
                 "source", "device", "region", "error", "show_id", "title", "age_band", "gender", "category",
                 "promo_id", "promo_type", "channel", "campaign"}
INT_FIELDS = {"play_ms", "stall_ms", "stall_count"}
FLOAT_FIELDS = {"ts", "amount", "latency_ms", "bitrate_kbps", "fps", "dropped_frames", "startup_ms"}
ENUM_FIELDS = {"action", "target", "status", "source", "device"}
ID_FIELDS = {"room_id", "user_id", "product_id", "order_id", "cdn", "show_id"}
NON_NEGATIVE_FIELDS = (INT_FIELDS | FLOAT_FIELDS) - {"ts"}


def raw(doc) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


@st.composite
def mutated(draw, envelope_element=False):
    """A valid event broken in one way: (raw bytes, the reason it must be rejected with, topic)."""
    doc = draw(valid_events)
    topic = TOPIC_OF_TYPE[doc["type"]]
    kinds = ["missing", "wrong_type", "bad_value", "unknown_type", "too_large", "not_object"]
    if not envelope_element:  # in an envelope: wrong topics are made apart, truncation breaks it all
        kinds += ["wrong_topic", "truncated"]
    kind = draw(st.sampled_from(kinds))
    if kind == "missing":
        del doc[draw(st.sampled_from(REQUIRED[doc["type"]]))]
        return raw(doc), MISSING_FIELD, topic
    if kind == "wrong_type":
        field = draw(st.sampled_from(sorted(set(doc) - {"type"})))
        if field in STRING_FIELDS:
            doc[field] = draw(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                                        st.booleans(), st.lists(st.integers(), max_size=2),
                                        st.just({"a": 1})))
        elif field in INT_FIELDS:  # a float, a string, a bool, a list
            doc[field] = draw(st.one_of(st.floats(0.5, 1e6).filter(lambda x: x != int(x)),
                                        st.text(max_size=5), st.booleans(), st.just([1])))
        else:
            doc[field] = draw(st.one_of(st.text(max_size=5), st.booleans(), st.just([1.0]), st.just({})))
        return raw(doc), WRONG_TYPE, topic
    if kind == "bad_value":
        candidates = sorted((set(doc) - {"type"}) & (ENUM_FIELDS | ID_FIELDS | NON_NEGATIVE_FIELDS | {"text", "title"}))
        field = draw(st.sampled_from(candidates))
        if field in ENUM_FIELDS:
            doc[field] = draw(st.text(max_size=10).filter(lambda s: s not in {
                "enter", "heartbeat", "leave", "product", "cart", "like", "share", "follow", "created", "paid",
                "refunded", "organic", "paid", "social", "search", "other", "mobile", "pc", "tv", "start", "end"}))
        elif field in ID_FIELDS:
            doc[field] = draw(st.one_of(st.just(""), st.just("x" * 65), st.just("has space"), st.just("直播间")))
        elif field in INT_FIELDS:
            doc[field] = draw(st.integers(max_value=-1))
        elif field in NON_NEGATIVE_FIELDS:
            doc[field] = draw(st.floats(max_value=-1e-9, min_value=-1e9))
        elif field == "text":
            doc[field] = "刷" * 501
        else:
            doc[field] = "t" * 201
        return raw(doc), BAD_VALUE, topic
    if kind == "unknown_type":
        doc["type"] = draw(st.one_of(st.text(max_size=8).filter(lambda s: s not in VALID), st.integers()))
        return raw(doc), UNKNOWN_TYPE, topic
    if kind == "wrong_topic":
        return raw(doc), WRONG_TOPIC, draw(st.sampled_from([t for t in TOPIC_OF_TYPE.values() if t != topic]))
    if kind == "too_large":
        doc["pad"] = "x" * (MAX_EVENT_BYTES + draw(st.integers(0, 2000)))
        return raw(doc), TOO_LARGE, topic
    if kind == "not_object":  # JSON, but not an event object
        shapes = [b"42", b'"666"', b"null", b"true", b"3.5"] + ([b"[]", b"[1]"] if envelope_element else [])
        return draw(st.sampled_from(shapes)), INVALID_JSON, topic
    value = raw(doc)  # truncated: cut anywhere before the end
    return value[:draw(st.integers(0, len(value) - 1))], INVALID_JSON, topic


def check_well_formed(value: bytes, events, rejections):
    for event in events:
        assert isinstance(event, EVENT_CLASSES)
    for rejection in rejections:
        assert isinstance(rejection, Rejection)
        assert rejection.reason in REJECT_REASONS
        assert isinstance(rejection.raw, bytes) and rejection.detail
        if rejection.reason == TOO_LARGE:
            assert rejection.raw == value or rejection.raw in value
        else:
            assert rejection.raw in value


# ---- properties ----

@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([None, *TOPIC_OF_TYPE.values()]))
def test_arbitrary_bytes_never_raise_and_are_accounted_for(value, topic):
    events, rejections = decode(value, topic)
    check_well_formed(value, events, rejections)
    try:
        doc = msgspec.json.decode(value)
    except msgspec.DecodeError:
        doc = None
    if isinstance(doc, list):
        assert len(events) + len(rejections) == len(doc)
    else:
        assert len(events) + len(rejections) == 1
        if rejections:
            assert rejections[0].raw == value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "room_id", "user_id", "ts", "action", "text", "target", "amount", "x"]),
        inner, max_size=5),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([None, *TOPIC_OF_TYPE.values()]))
def test_arbitrary_json_never_raises_and_is_accounted_for(doc, topic):
    value = json.dumps(doc).encode()
    events, rejections = decode(value, topic)
    check_well_formed(value, events, rejections)
    assert len(events) + len(rejections) == (len(doc) if isinstance(doc, list) else 1)


@settings(max_examples=300, deadline=None)
@given(valid_events)
def test_a_valid_event_decodes_to_itself(doc):
    value = raw(doc)
    events, rejections = decode(value, TOPIC_OF_TYPE[doc["type"]])
    assert rejections == []
    (event,) = events
    assert event_type(event) == doc["type"]
    decoded = msgspec.to_builtins(event)
    for name, field_value in doc.items():
        assert decoded[name] == field_value
    assert decode(encode(event), None) == ([event], [])  # and encodes back the same


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_a_mutated_event_is_rejected_with_its_reason_and_raw_bytes(case):
    value, reason, topic = case
    events, rejections = decode(value, topic)
    assert events == []
    assert [r.reason for r in rejections] == [reason], rejections
    assert rejections[0].raw == value  # the whole raw bytes, for the dead-letter topic


def _topic_envelopes():
    """A topic, and a mix of its valid events and bad elements (with their expected reasons)."""
    def for_topic(topic):
        kind = next(k for k, t in TOPIC_OF_TYPE.items() if t == topic)
        good = VALID[kind].map(lambda doc: (raw(doc), None))
        bad = mutated(envelope_element=True).map(lambda case: (case[0], case[1]))
        wrong_topic = st.sampled_from([k for k in VALID if k != kind]).flatmap(lambda k: VALID[k]).map(
            lambda doc: (raw(doc), WRONG_TOPIC))
        item = st.one_of(good, good, bad, wrong_topic)
        return st.tuples(st.just(topic), st.lists(item, min_size=1, max_size=12))
    return st.sampled_from(sorted(set(TOPIC_OF_TYPE.values()))).flatmap(for_topic)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_topic_envelopes())
def test_one_bad_event_in_an_envelope_rejects_that_event_only(case):
    topic, items = case
    value = b"[" + b",".join(part for part, _ in items) + b"]"
    events, rejections = decode(value, topic)
    check_well_formed(value, events, rejections)
    bad = [(reason, part) for part, reason in items if reason is not None]
    good = [part for part, reason in items if reason is None]
    # Every element is accounted for: the bad ones by reason and raw bytes, in order.
    expected_raw = [part for _, part in bad]
    assert [(r.reason, r.raw) for r in rejections] == [(reason, raw_) for (reason, _), raw_ in zip(bad, expected_raw)]
    # The valid ones are exactly those of the valid-only envelope, in order.
    valid_only, none_rejected = decode(b"[" + b",".join(good) + b"]", topic)
    assert none_rejected == []
    assert events == valid_only
    # And the engine counts them exactly as it counts the valid-only input.
    with_bad, without_bad = Engine(EngineConfig()), Engine(EngineConfig())
    assert with_bad.ingest(events) == without_bad.ingest(valid_only)
    assert with_bad.finish() == without_bad.finish()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(VALID)).flatmap(lambda kind: VALID[kind]), st.booleans()),
                min_size=1, max_size=40))
def test_envelopes_from_many_messages_count_like_single_events(items):
    # The same events sent one per message or in one envelope (with bad elements mixed in) give
    # the same engine result: nothing valid is lost or counted twice.
    singles, envelope_parts = [], []
    for doc, add_bad in items:
        singles.extend(decode(raw(doc))[0])
        envelope_parts.append(raw(doc))
        if add_bad:
            envelope_parts.append(raw({**doc, "ts": "not a number"}))
    events, rejections = decode(b"[" + b",".join(envelope_parts) + b"]")
    assert len(rejections) == sum(add_bad for _, add_bad in items)
    assert all(r.reason == WRONG_TYPE for r in rejections)
    assert events == singles
    one, other = Engine(), Engine()
    one.ingest(singles)
    other.ingest(events)
    assert one.finish() == other.finish()


# ---- classification, one case per reason ----

VIEW = {"type": "view", "room_id": "room-1", "user_id": "u1", "ts": T0, "action": "enter"}
HEALTH = {"type": "health", "room_id": "room-1", "user_id": "u1", "ts": T0, "cdn": "cdn-a", "play_ms": 1000,
          "stall_ms": 0, "stall_count": 0}


def reason_of(value, topic=None):
    events, rejections = decode(value if isinstance(value, bytes) else raw(value), topic)
    assert events == [] and len(rejections) == 1, (events, rejections)
    return rejections[0].reason


@pytest.mark.parametrize("value", [b"", b"   ", b"{", b'{"type": "view"', b"not json", b"\xff\xfe\x00",
                                   b"42", b'"666"', b"null", b"true", b"[{"])
def test_invalid_json(value):
    assert reason_of(value) == INVALID_JSON


@pytest.mark.parametrize("doc", [
    {k: v for k, v in VIEW.items() if k != "user_id"},
    {k: v for k, v in VIEW.items() if k != "ts"},
    {k: v for k, v in VIEW.items() if k != "room_id"},
    {k: v for k, v in VIEW.items() if k != "action"},
    {k: v for k, v in VIEW.items() if k != "type"},
    {k: v for k, v in HEALTH.items() if k != "stall_count"},
    {"type": "order", "room_id": "r", "user_id": "u", "ts": T0, "order_id": "o1", "product_id": "p", "status": "paid"},
])
def test_missing_field(doc):
    assert reason_of(doc) == MISSING_FIELD


@pytest.mark.parametrize("doc", [
    {**VIEW, "ts": "1700000000"}, {**VIEW, "ts": None}, {**VIEW, "ts": True}, {**VIEW, "room_id": 10086},
    {**VIEW, "user_id": ["u"]}, {**HEALTH, "play_ms": 1.5}, {**HEALTH, "stall_ms": "0"},
    {**HEALTH, "latency_ms": "fast"}, {**VIEW, "action": 1},
])
def test_wrong_type(doc):
    assert reason_of(doc) == WRONG_TYPE


@pytest.mark.parametrize("value", [
    raw({**VIEW, "action": "teleport"}), raw({**VIEW, "user_id": "user with spaces"}), raw({**VIEW, "room_id": ""}),
    raw({**VIEW, "room_id": "r" * 65}), raw({**HEALTH, "play_ms": -1}), raw({**HEALTH, "latency_ms": -0.5}),
    raw({**HEALTH, "error": ""}), raw({**VIEW, "source": "tiktok"}),
    raw({"type": "danmaku", "room_id": "r", "user_id": "u", "ts": T0, "text": "好" * 501}),
    raw({"type": "order", "room_id": "r", "user_id": "u", "ts": T0, "order_id": "o", "product_id": "p",
         "amount": -0.01, "status": "paid"}),
    raw({"type": "order", "room_id": "r", "user_id": "u", "ts": T0, "order_id": "o", "product_id": "p",
         "amount": 1, "status": "cancelled"}),
    raw({"type": "click", "room_id": "r", "user_id": "u", "ts": T0, "target": "product", "product_id": None}),
    raw({"type": "click", "room_id": "r", "user_id": "u", "ts": T0, "target": "gift"}),
    b'{"type": "view", "room_id": "r", "user_id": "u", "ts": 1e400, "action": "enter"}',  # not finite
])
def test_bad_value(value):
    assert reason_of(value) == BAD_VALUE


@pytest.mark.parametrize("kind", ["gift", "VIEW", "", 7])
def test_unknown_type(kind):
    assert reason_of({**VIEW, "type": kind}) == UNKNOWN_TYPE


def test_wrong_topic_single_and_in_an_envelope():
    assert reason_of(VIEW, "liveroom.health") == WRONG_TOPIC
    events, rejections = decode(raw([VIEW, HEALTH]), "liveroom.health")
    assert [r.reason for r in rejections] == [WRONG_TOPIC] and len(events) == 1
    assert rejections[0].raw == raw(VIEW)
    assert decode(raw(VIEW), None)[1] == []  # no topic (a recorded file): no topic check


def test_a_click_on_a_product_without_product_id_is_rejected():
    for target in ("product", "cart"):
        doc = {"type": "click", "room_id": "r", "user_id": "u", "ts": T0, "target": target}
        assert reason_of(doc) in (MISSING_FIELD, BAD_VALUE)
    like = {"type": "click", "room_id": "r", "user_id": "u", "ts": T0, "target": "like"}
    assert decode(raw(like))[1] == []


def test_a_show_needs_no_user_id():
    events, rejections = decode(raw({"type": "show", "room_id": "r", "ts": T0, "action": "start"}), "liveroom.shows")
    assert rejections == [] and events[0].user_id is None


def _padded(size):
    """A valid view event of exactly `size` bytes (an unknown field pads it)."""
    base = raw({**VIEW, "pad": ""})
    return raw({**VIEW, "pad": "x" * (size - len(base))})


def test_too_large_is_more_than_64_kib():
    assert len(_padded(MAX_EVENT_BYTES)) == MAX_EVENT_BYTES
    assert decode(_padded(MAX_EVENT_BYTES), "liveroom.views")[1] == []
    value = _padded(MAX_EVENT_BYTES + 1)
    events, rejections = decode(value, "liveroom.views")
    assert events == [] and [r.reason for r in rejections] == [TOO_LARGE]
    assert value.startswith(rejections[0].raw)


def test_too_large_element_rejects_only_itself_and_a_large_envelope_of_small_events_is_fine():
    big = _padded(MAX_EVENT_BYTES + 10)
    events, rejections = decode(b"[" + raw(VIEW) + b"," + big + b"," + raw({**VIEW, "user_id": "u2"}) + b"]")
    assert [e.user_id for e in events] == ["u1", "u2"]
    assert [r.reason for r in rejections] == [TOO_LARGE]
    many = [{**VIEW, "user_id": f"u{i}"} for i in range(2000)]
    value = raw(many)
    assert len(value) > MAX_EVENT_BYTES
    events, rejections = decode(value, "liveroom.views")
    assert rejections == [] and len(events) == 2000


def test_late_and_future_are_the_engines_reasons():
    engine = Engine()
    wall = T0 + 100
    (newest,), _ = decode(raw({**VIEW, "ts": T0 + 100}))
    (late,), _ = decode(raw({**VIEW, "user_id": "u2", "ts": T0 + 94}))
    (future,), _ = decode(raw({**VIEW, "user_id": "u3", "ts": wall + 3600}))
    assert engine.ingest([newest, late, future], wall=wall) == [(late, LATE), (future, FUTURE)]
    assert {LATE, FUTURE} <= set(REJECT_REASONS)
