"""The live-room traffic simulator: a pure, seeded generator of contract-valid events
(`core.generate`, `core.Simulation`), what the rooms sell and who watches them (`commerce`), the
player and network model behind its health beacons (`player`), measured throughput traces
(`traces`), and the `livemon simulate` Kafka edge (`cli`)."""

from .core import Message, Simulation, generate
from .scenarios import SCENARIOS, parse_scenarios
from .traces import TraceError, load_traces

__all__ = ["Message", "Simulation", "generate", "SCENARIOS", "parse_scenarios", "TraceError",
           "load_traces"]
