"""The default rules on the simulator's shows: quiet on a normal show, as `livemon replay` computes it."""

import json
import subprocess
import sys

import pytest

from livemon.alerting.config import load_config
from livemon.alerting.evaluator import Evaluator
from livemon.ingest.events import encode
from livemon.simulator.core import generate


@pytest.fixture(scope="module")
def normal_timeline(tmp_path_factory):
    """A 9-minute normal show of 3 rooms, replayed into a metric timeline by `livemon replay`."""
    folder = tmp_path_factory.mktemp("normal-show")
    events = folder / "events.jsonl"
    with open(events, "wb") as f:
        for message in generate("normal", rooms=3, seed=7, duration=540, rate=200, bad_fraction=0,
                            end_show=False):
            for event in message.events:
                f.write(encode(event) + b"\n")
    timeline = folder / "timeline.jsonl"
    subprocess.run([sys.executable, "-m", "livemon", "replay", str(events), "--out", str(timeline)],
                   check=True, timeout=120)
    return [json.loads(line) for line in timeline.read_text().splitlines()]


def test_default_rules_stay_quiet_on_a_normal_show(normal_timeline):
    rules = load_config("alerts/alerting.yml").rules
    evaluator = Evaluator(rules)
    transitions = [tr.record() for snapshot in normal_timeline for tr in evaluator.evaluate(snapshot)]
    rooms = {s["room_id"] for s in normal_timeline}
    assert len(rooms) == 3 and len(normal_timeline) > 3 * 500
    # The rooms are big enough for every rule's minimum volume, so the silence means something.
    assert max(s["metrics"]["viewers"] for s in normal_timeline) > 200
    firing = [(t["rule"], t["room_id"], t["cdn"], t["value"]) for t in transitions
              if t["state"] == "firing"]
    assert firing == []
