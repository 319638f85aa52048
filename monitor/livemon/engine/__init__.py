"""The pure metric engine (SPEC §3-5): events in, snapshots out; no I/O, no clock."""

from .. import catalogue
from .config import RETENTION_HORIZONS, EngineConfig
from .engine import Engine, RoomBudget

# The snapshot's names, as the catalogue declares them (a test holds the engine to them).
METRIC_NAMES = catalogue.ROOM_NAMES
CDN_METRIC_NAMES = catalogue.CDN_NAMES

__all__ = ["Engine", "EngineConfig", "RoomBudget", "METRIC_NAMES", "CDN_METRIC_NAMES", "RETENTION_HORIZONS"]
