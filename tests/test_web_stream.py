"""The live event stream under many readers: one encoding per step shared by all, a cap on readers,
a reader that stops reading is cut off, and the grid holds the top rooms plus those asked for."""

import socket
import threading
import time

import orjson
import pytest
import requests

from tests.fixtures.browser import ControlRoomServer, SyntheticShow


@pytest.fixture
def make_room(tmp_path, monkeypatch):
    made = []

    def make(**env):
        for name, value in env.items():
            monkeypatch.setenv(f"LIVEMON_WEB_{name.upper()}", str(value))
        made.append(ControlRoomServer(tmp_path / f"data-{len(made)}"))
        return made[-1]
    yield make
    for room in made:
        room.close()


def open_stream(room, query: str = "", rcvbuf: int | None = None) -> socket.socket:
    conn = socket.socket()
    if rcvbuf:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    conn.settimeout(5)
    conn.connect(("127.0.0.1", room.port))
    conn.sendall(f"GET /api/stream{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return conn


def read_until(conn: socket.socket, count: int, marker: bytes = b"event: grid", limit: float = 10) -> bytes:
    buffer, started = b"", time.monotonic()
    while buffer.count(marker) < count:
        chunk = conn.recv(1 << 20)
        assert chunk, buffer[:300]
        buffer += chunk
        assert time.monotonic() - started < limit
    return buffer


def grid_frames(buffer: bytes) -> list[bytes]:
    return [part.split(b"\n", 1)[0] for part in buffer.split(b"event: grid\ndata: ")[1:]]


def test_every_reader_gets_the_same_bytes_encoded_once(make_room):
    room = make_room()
    show = SyntheticShow()
    builds = []
    real_grid = room.hub.grid
    room.hub.grid = lambda *args: builds.append(1) or real_grid(*args)
    readers = [open_stream(room) for _ in range(8)]
    try:
        for reader in readers:
            read_until(reader, 1)
        builds.clear()
        buffers = [b""] * len(readers)
        for i in range(4):
            room.feed_step(show.step(show.start + i))
            time.sleep(0.4)
        time.sleep(1.2)
        room.feed_step(show.step(show.start + 4))   # the last step: every reader has it within a second
        time.sleep(0.6)
        for n, reader in enumerate(readers):
            reader.settimeout(0.3)
            try:
                while chunk := reader.recv(1 << 20):
                    buffers[n] += chunk
            except TimeoutError:
                pass
        frames = [{orjson.loads(f)["version"]: f for f in grid_frames(b)} for b in buffers]
        versions = set().union(*frames)
        newest = max(versions)
        assert all(newest in f for f in frames)
        # Same version, same bytes, whoever reads it; built once per version, not once per reader.
        for version in versions:
            assert len({f[version] for f in frames if version in f}) == 1
        assert 0 < len(builds) <= len(versions), (len(builds), len(versions))
    finally:
        for reader in readers:
            reader.close()


def test_readers_beyond_the_cap_get_503_with_retry_after(make_room):
    room = make_room(max_streams=2)
    first, second = open_stream(room), open_stream(room)
    try:
        read_until(first, 1), read_until(second, 1)
        refused = requests.get(room.url + "/api/stream", timeout=5)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert "default-src 'none'" in refused.headers["Content-Security-Policy"]
        assert "streams" in refused.json()["error"]
        first.close()
        deadline = time.monotonic() + 5
        while True:   # the closed reader's slot is free once its next write fails (at most a second)
            with requests.get(room.url + "/api/stream", stream=True, timeout=5) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.3)
    finally:
        first.close()
        second.close()


def test_a_reader_that_stops_reading_is_cut_off_and_its_slot_freed(make_room):
    room = make_room(max_streams=1, write_timeout=0.5, grid_rooms=400)
    show = SyntheticShow(rooms=[f"room-{i:03d}" for i in range(400)])   # frames of about half a megabyte
    room.feed_step(show.step(show.start))
    stalled = open_stream(room, rcvbuf=4096)
    read_until(stalled, 1)   # it has its first frame, and reads nothing more
    stop = threading.Event()

    def steps():
        i = 1
        while not stop.is_set():
            room.feed_step(show.step(show.start + i))
            i += 1
            time.sleep(0.2)
    feeder = threading.Thread(target=steps, daemon=True)
    feeder.start()
    try:
        assert requests.get(room.url + "/api/stream", timeout=5).status_code == 503   # the one slot is taken
        deadline = time.monotonic() + 20
        while True:
            with requests.get(room.url + "/api/stream", stream=True, timeout=5) as answer:
                if answer.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the stalled reader still holds its slot"
            time.sleep(0.5)
        # Its connection was aborted: what the kernel had buffered is readable, then it ends.
        stalled.settimeout(5)
        try:
            while stalled.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
    finally:
        stop.set()
        feeder.join(5)
        stalled.close()


def test_the_grid_holds_the_top_rooms_and_those_asked_for(make_room):
    room = make_room(grid_rooms=10)
    names = [f"room-{i:03d}" for i in range(60)]
    show = SyntheticShow(rooms=names)
    room.feed_step(show.step(show.start))
    everything = {s["room_id"]: s["metrics"]["online"] for s in show.step(show.start)["live"]}
    top = sorted(everything, key=lambda r: (-everything[r], r))[:10]
    smallest = min(everything, key=everything.get)

    grid = requests.get(room.url + "/api/rooms", timeout=5).json()
    assert [t["room_id"] for t in grid["rooms"]] == top and grid["total_rooms"] == 60
    asked = requests.get(room.url + f"/api/rooms?rooms={smallest},nowhere", timeout=5).json()
    assert [t["room_id"] for t in asked["rooms"]] == top + [smallest]
    assert requests.get(room.url + "/api/rooms?rooms=" + ",".join(names), timeout=5).status_code == 400

    stream = open_stream(room, f"?room={smallest}")
    try:
        buffer = read_until(stream, 1, b"event: room")
        [frame] = grid_frames(buffer)[:1]
        assert [t["room_id"] for t in orjson.loads(frame)["rooms"]] == top + [smallest]
    finally:
        stream.close()


def test_targets_file_and_compact_frames(make_room, tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text('[default]\nconversion = 0.12\n\n[rooms.room-beauty]\ngmv = 500000\nminutes = 180\n\n'
                       '[shows."room-beauty.evening"]\nonline = 100\n')
    room = make_room(targets=targets)
    show = SyntheticShow()
    for i in range(3):
        room.feed_step(show.step(show.start + i))
    held = requests.get(room.url + "/api/targets", timeout=5).json()
    assert held["rooms"]["room-beauty"] == {"gmv": 500000, "minutes": 180}
    grid = requests.get(room.url + "/api/rooms", timeout=5).json()
    beauty = next(t for t in grid["rooms"] if t["room_id"] == "room-beauty")
    assert beauty["target"] == {"conversion": 0.12, "gmv": 500000, "minutes": 180, "online": 100}
    assert beauty["levels"]["online"] == "ok" and beauty["gmv_progress"] > 0
    # Stream frames carry the latest values only, never a history.
    conn = open_stream(room)
    try:
        [frame] = grid_frames(read_until(conn, 1))[:1]
        assert all("spark" not in tile for tile in orjson.loads(frame)["rooms"])
    finally:
        conn.close()


def test_a_bad_targets_file_stops_the_start_saying_why(tmp_path):
    from livemon.web.server import load_targets

    bad = tmp_path / "targets.toml"
    bad.write_text("[rooms.r1]\nconversion = 4\n")
    with pytest.raises(ValueError, match="conversion must be a number from"):
        load_targets(bad)
    bad.write_text("[rooms.r1]\ngmv = 1\nspeed = 2\n")
    with pytest.raises(ValueError, match="unknown target 'speed'"):
        load_targets(bad)


def test_sales_frames_stay_bounded_whatever_the_audience():
    """A snapshot with 500 regions, 500 products and 100 CDNs: the grid tile carries the pinned product
    and the top source only, and the room frame the top 10 regions, 20 ranked products (the pinned one
    first) and 16 CDNs, with the counts of what was left out."""
    from livemon.web.hub import ControlRoomHub

    figures = {"viewers": 3, "entries": 1, "avg_watch_seconds": 40.0, "interaction_rate": 0.1, "product_ctr": 0.2,
               "conversion_rate": 0.5, "orders": 1, "gmv": 99.0, "uv_value": 33.0}
    by = {dim: {f"{dim}-{i}": {**figures, "viewers": i % 37} for i in range(n)}
          for dim, n in (("source", 7), ("device", 5), ("region", 500), ("age_band", 6), ("gender", 4), ("follower", 3))}
    products = {f"sku-{i:03d}": {"clickers": i % 13, "carts": 1, "orders": i % 7, "gmv": float(i), "ctr": 0.01,
                                 "conversion_rate": 0.5} for i in range(500)}
    snap = {"ts": 1_700_000_000, "room_id": "room-big",
            "metrics": {"online": 900, "viewers": 1000, "fast_start_ratio": 0.9},
            "cdn": {f"cdn-{i}": {"viewers": i, "fast_start_ratio": 0.9} for i in range(100)},
            "by": by, "products": products,
            "show": {"id": "s", "start": 1_699_999_000, "title": "t", "ended_at": None, "pinned": "sku-007",
                     "gmv": 1e6, "spend_total": 1e5, "refund_rate": 0.01, "top10_share": 0.4, "roi": 10.0,
                     "top_products": [f"sku-{i:03d}" for i in range(499, -1, -1)]}}
    hub = ControlRoomHub(clock=lambda: 1_700_000_000)
    hub.feed_step({"worker": "w1", "now": snap["ts"], "live": [snap]})
    grid = hub.grid_frame()
    assert len(grid) < 3000, len(grid)
    [tile] = orjson.loads(grid.split(b"data: ", 1)[1])["rooms"]
    assert tile["pinned"]["product_id"] == "sku-007" and tile["pinned"]["orders"] == 0
    assert tile["top_source"]["source"] == "source-6" and tile["metrics"]["fast_start_ratio"] == 0.9
    assert "by" not in tile and "products" not in tile
    frame, _ = hub.room_frame("room-big", None)
    assert len(frame) < 24_000, len(frame)
    view = orjson.loads(frame.split(b"data: ", 1)[1])
    sales, latest = view["sales"], view["latest"]
    assert "by" not in latest and "products" not in latest and len(latest["cdn"]) == 16
    assert len(latest["show"]["top_products"]) == 10
    assert len(sales["by"]["region"]) == 10 and sales["by_count"]["region"] == 500
    assert [v for v, _ in sales["by"]["region"]][:2] == ["region-110", "region-147"]   # most viewers (36), then by name
    assert len(sales["products"]) == 20 and sales["products_count"] == 500
    assert sales["products"][0] == {"product_id": "sku-007", **products["sku-007"], "pinned": True}
    assert [p["product_id"] for p in sales["products"][1:4]] == ["sku-499", "sku-498", "sku-497"]
    # Incremental room frames carry the same bounded cut.
    hub.feed_step({"worker": "w1", "now": snap["ts"] + 1, "live": [{**snap, "ts": snap["ts"] + 1}]})
    later, _ = hub.room_frame("room-big", snap["ts"])
    assert len(later) < 24_000
