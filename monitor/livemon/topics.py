"""Every Kafka topic of the product, in one place: names, which are partitioned by room, and
their settings on a broker that the product creates them on.

Event topics (SPEC §2) carry the producers' events, keyed by `room_id`. Partition p of each
input topic and of the checkpoint topic holds the same rooms, so one worker owns all of them.
"""

from __future__ import annotations

# SPEC §2: the topic of each event type.
TOPIC_OF_TYPE = {
    "view": "liveroom.views",
    "danmaku": "liveroom.danmaku",
    "click": "liveroom.clicks",
    "order": "liveroom.orders",
    "health": "liveroom.health",
    "show": "liveroom.shows",
}
TYPE_OF_TOPIC = {topic: kind for kind, topic in TOPIC_OF_TYPE.items()}
EVENT_TOPICS = tuple(TOPIC_OF_TYPE.values())

DEADLETTER_TOPIC = "liveroom.deadletter"  # rejected input with its reason (SPEC §2)
# Events that arrived on another room's partition, forwarded to their own (see ingest/routing.py).
REPARTITION_TOPIC = "liveroom.repartition"
# Worker checkpoints: engine state of one partition's rooms with the offsets it reflects.
CHECKPOINT_TOPIC = "liveroom.checkpoints"
SNAPSHOTS_TOPIC = "liveroom.snapshots"  # each worker's live and final snapshots, every step
# The header of a step record on SNAPSHOTS_TOPIC (keyed by its worker): a worker's own control
# room reads its step records in process and skips these without decoding them.
STEP_RECORD_HEADER = ("livemon-record", b"step")
ALERTS_TOPIC = "liveroom.alerts"  # alert transitions, failover decisions, incidents
CONTROL_TOPIC = "liveroom.control"  # CDN failover commands
OPERATOR_TOPIC = "liveroom.operator"  # operator actions from the web page

# What a worker consumes: partition p of each, all owned by the same worker.
INPUT_TOPICS = (*EVENT_TOPICS, REPARTITION_TOPIC)
# Topics whose partition p must match the event topics' partition p.
PARTITIONED_TOPICS = (*INPUT_TOPICS, CHECKPOINT_TOPIC)
# Topics where one partition is enough and keeps a single total order for readers.
SINGLE_TOPICS = (DEADLETTER_TOPIC, SNAPSHOTS_TOPIC, ALERTS_TOPIC, CONTROL_TOPIC, OPERATOR_TOPIC)
ALL_TOPICS = PARTITIONED_TOPICS + SINGLE_TOPICS

DEFAULT_PARTITIONS = 8
# Brokers without log compaction (Tansu) keep checkpoints by time only; an hour is many times
# the checkpoint interval, and a reader only ever needs the newest one.
TOPIC_CONFIGS = {
    CHECKPOINT_TOPIC: {"retention.ms": str(3600 * 1000)},
    SNAPSHOTS_TOPIC: {"retention.ms": str(3600 * 1000)},
    REPARTITION_TOPIC: {"retention.ms": str(24 * 3600 * 1000)},
}
