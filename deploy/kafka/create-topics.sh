#!/bin/bash
# Creates the product's topics on a real Kafka with production settings; run once by the `topics`
# service of docker-compose.yml (and safe to run again: existing topics are left alone).
#   PARTITIONS  partitions of each event topic, liveroom.repartition and liveroom.checkpoints (same
#               number: a room's events and its checkpoint share a partition). Fixed for the life of the topics.
#   REPLICATION replication factor (3 on a real cluster; 1 in the single-broker compose stack).
set -euo pipefail
BOOTSTRAP=${BOOTSTRAP:-kafka:9092}
PARTITIONS=${PARTITIONS:-24}
REPLICATION=${REPLICATION:-1}
MIN_ISR=$(( REPLICATION > 1 ? 2 : 1 ))
TOPICS=/opt/kafka/bin/kafka-topics.sh

create() {  # name partitions config...
  local name=$1 partitions=$2; shift 2
  local args=()
  for config in "min.insync.replicas=$MIN_ISR" "$@"; do args+=(--config "$config"); done
  "$TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$name" \
    --partitions "$partitions" --replication-factor "$REPLICATION" "${args[@]}"
}

DAY=86400000
for topic in views danmaku clicks orders health shows; do
  # Raw events: kept 3 days, enough to replay a show after an incident (livemon replay).
  create "liveroom.$topic" "$PARTITIONS" "retention.ms=$((3 * DAY))"
done
# Events forwarded from the partition they arrived on to their room's (a producer without the
# room_id key): short-lived, a worker applies them within seconds.
create liveroom.repartition "$PARTITIONS" "retention.ms=$((1 * DAY))"
# Checkpoints: NOT compacted. One checkpoint is several `chunk` records under one key plus a
# `header`; compaction would keep only the last chunk. A reader needs only the newest checkpoint,
# so an hour of retention (hundreds of checkpoint intervals) with small segments is plenty.
create liveroom.checkpoints "$PARTITIONS" cleanup.policy=delete "retention.ms=3600000" segment.ms=600000
create liveroom.deadletter 1 "retention.ms=$((14 * DAY))"
create liveroom.snapshots 1 "retention.ms=$((1 * DAY))"
create liveroom.alerts 1 "retention.ms=$((30 * DAY))"
create liveroom.control 1 "retention.ms=$((7 * DAY))"
create liveroom.operator 1 "retention.ms=$((7 * DAY))"
# The workers' consumer-group leader topic (Faust), created here so it gets the replication factor.
create "${GROUP:-livemon}-__assignor-__leader" 1
"$TOPICS" --bootstrap-server "$BOOTSTRAP" --list
