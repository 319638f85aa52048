"""Where a room lives and how misrouted events get there: the partitioner agrees with the real
clients', forward records apply once, unreadable batches become markers, forwards keep order."""

from __future__ import annotations

import asyncio
import json

from aiokafka.record.memory_records import MemoryRecords
from confluent_kafka import Producer
from kafka import KafkaProducer

from livemon.agents.fetching import MARKER, _GuardedRecords, unreadable_batch
from livemon.agents.forwarding import Forwarder
from livemon.ingest.events import decode
from livemon.ingest.routing import ForwardMarks, Part, Partitioner, decode_forward, encode_forward
from tests.fixtures.rawkafka import KINDS, unreadable_batch as build_batch

ROOMS = [f"room-{i}" for i in range(40)] + ["直播间", "a", "Z" * 64]


def test_partitioner_agrees_with_librdkafka_murmur2_random_and_kafka_python(make_broker):
    bootstrap = make_broker(partitions=5)
    home = Partitioner(5)
    delivered = {}
    rdkafka = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for room in ROOMS:
        rdkafka.produce("liveroom.views", b"{}", key=room.encode(),
                        on_delivery=lambda error, message, room=room: delivered.__setitem__(room, message.partition()))
    assert rdkafka.flush(30) == 0
    assert delivered == {room: home(room) for room in ROOMS}
    java_like = KafkaProducer(bootstrap_servers=bootstrap)
    partitions = {room: java_like.send("liveroom.views", b"{}", key=room.encode()).get(30).partition for room in ROOMS}
    java_like.close()
    assert partitions == delivered
    assert len(set(partitions.values())) == 5


def _events(room: str, n: int, topic_type: str = "danmaku"):
    value = json.dumps([{"type": topic_type, "room_id": room, "user_id": f"u{i}", "ts": 100.0 + i, "text": "x"}
                        for i in range(n)]).encode()
    return decode(value, "liveroom.danmaku")[0]


def test_a_forward_record_applies_once_per_source_offset():
    parts = [Part("liveroom.danmaku", 7, _events("r", 2)), Part("liveroom.danmaku", 9, _events("r", 1))]
    forward, problem = decode_forward(encode_forward(3, parts))
    assert problem is None and forward.source == 3 and forward.parts == parts
    marks = ForwardMarks()
    assert [marks.accept(3, part) for part in forward.parts] == [True, True]
    # Sent again after a takeover, partly overlapping: only what follows offset 9 is new.
    again = [Part("liveroom.danmaku", 9, _events("r", 1)), Part("liveroom.danmaku", 12, _events("r", 1))]
    assert [marks.accept(3, part) for part in again] == [False, True]
    assert marks.accept(4, parts[0])  # another source partition has its own mark
    assert ForwardMarks(marks.marks).marks == {"liveroom.danmaku/3": 13, "liveroom.danmaku/4": 8}


def test_poison_on_the_repartition_topic_is_a_clear_rejection():
    for value in (None, b"", b"[1]", b'{"source": 1, "parts": [["liveroom.views", 1, []]]}',
                  encode_forward(1, [Part("liveroom.views", 1, _events("r", 1))])):  # events of another topic
        forward, problem = decode_forward(value)
        assert forward is None and problem.detail


def test_every_unreadable_batch_becomes_one_marker_and_the_records_after_it_are_read():
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    good = DefaultRecordBatchBuilder(magic=2, compression_type=3, is_transactional=0, producer_id=-1,
                                     producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for offset in range(3):
        good.append(offset, timestamp=1, key=None, value=b'{"ok": %d}' % offset, headers=[])
    good = bytearray(good.build())
    data, expected = b"", []
    for base, kind in enumerate(("unknown-codec", *KINDS)):
        batch = bytearray(build_batch(kind, [b'{"a": 1}' * 30] * 2))
        batch[0:8] = (base * 2).to_bytes(8, "big")  # base offset
        data += bytes(batch)
        expected.append(kind)
    good[0:8] = (len(expected) * 2).to_bytes(8, "big")
    data += bytes(good)
    records = _GuardedRecords(MemoryRecords(data), 0, "tp")
    seen = []
    while records.has_next():
        batch = records.next_batch()
        assert batch.validate_crc()
        seen.extend(batch)
    markers = [record for record in seen if record.headers and record.headers[0][0] == MARKER]
    reasons = [json.loads(record.headers[0][1])["reason"] for record in markers]
    assert reasons == ["codec", "corrupt", "corrupt", "codec", "crc"]
    assert len(markers) == len(expected)
    assert [record.offset for record in markers] == [2 * i + 1 for i in range(len(expected))]
    assert [record.value for record in seen[len(markers):]] == [b'{"ok": 0}', b'{"ok": 1}', b'{"ok": 2}']

    class Message:  # what the consumer hands on: the marker's headers
        headers = markers[0].headers
        value = None
    skipped = unreadable_batch(Message)
    assert (skipped.first, skipped.last) == (0, 1)


def test_forwards_are_delivered_in_order_and_a_failed_send_holds_back_later_rounds():
    async def run():
        sent, fail_first = [], {"left": 2}

        async def send(topic, value, partition, timestamp_ms):
            future = asyncio.get_running_loop().create_future()
            if fail_first["left"] and decode_forward(value)[0].parts[0].offset == 1:
                fail_first["left"] -= 1
                future.set_exception(ConnectionError("broker down"))
            else:
                sent.append((partition, decode_forward(value)[0].parts[0].offset))
                future.set_result(None)
            return future

        forwarder = Forwarder(send, "liveroom.repartition")
        for offset in (1, 2, 3):
            forwarder.queue(0, {5: [Part("liveroom.danmaku", offset, _events("r", 1))]}, 1000)
        await asyncio.wait_for(forwarder.delivered(0, forwarder.queued(0)), 10)
        await forwarder.close()
        return sent

    assert asyncio.run(run()) == [(5, 1), (5, 2), (5, 3)]
