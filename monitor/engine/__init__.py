"""The pure metric engine (SPEC §3-5): events in, snapshots out; no I/O, no clock."""

from .config import RETENTION_HORIZONS, EngineConfig
from .engine import Engine, RoomBudget

METRIC_NAMES = (
    "online", "entries", "leaves", "viewers", "retention_30s", "retention_60s", "retention_180s",
    "avg_watch_seconds", "interaction_rate", "danmaku_per_min", "product_ctr", "conversion_rate",
    "orders_per_min", "gmv", "gmv_total", "uv_value", "gpm", "stall_ratio", "stalls_per_min",
    "latency_p50_ms", "latency_p95_ms", "error_rate",
)
CDN_METRIC_NAMES = ("viewers", "stall_ratio", "latency_p95_ms", "error_rate")

__all__ = ["Engine", "EngineConfig", "RoomBudget", "METRIC_NAMES", "CDN_METRIC_NAMES", "RETENTION_HORIZONS"]
