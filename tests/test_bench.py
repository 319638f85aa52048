"""`livemon bench --quick`: runs end to end and reports every figure in the documented shape.

Never asserts timing: the figures depend on the machine. Marked slow (a minute of 2 cores)."""

import json

import pytest
from click.testing import CliRunner

from livemon.bench import bench


@pytest.mark.slow
def test_quick_bench_reports_every_figure(tmp_path):
    out = tmp_path / "BENCH.md"
    result = CliRunner().invoke(bench, ["--quick", "--write", str(out), "--log", str(tmp_path / "bench.log")])
    assert result.exit_code == 0, result.output
    line = [l for l in result.output.splitlines() if l.startswith("{")][-1]
    report = json.loads(line)
    assert report["mode"] == "quick" and report["seed"] == 0
    assert set(report["throughput"]) == {"1", "10", "100"}
    for envelope, row in report["throughput"].items():
        assert row["events"] > 0 and row["messages"] > 0
        assert row["raw"] > 0 and row["engine"] > 0
        assert row["rejected"] == 0, row["rejected_by_reason"]  # the whole backlog applied, none late
        assert row["engine_vs_raw"] > 0
    assert report["throughput"]["1"]["faust"] > 0
    assert report["throughput"]["1"]["quix"] > 0 and report["throughput"]["1"]["quix_late"] == 0
    assert report["ratio_vs_faust"] > 0
    assert report["scale_out"]["ratio"] > 0
    assert report["e2e"]["probes"] > 0 and report["e2e"]["p99_s"] >= report["e2e"]["p50_s"] > 0
    assert report["memory"]["viewers"] > 0 and report["memory"]["bytes_per_viewer"] > 0
    assert report["render"]["rooms"] == 10_000 and report["render"]["render_s"] > 0
    assert {"events_per_s_100", "ratio_vs_faust", "e2e_p99_s", "bytes_per_viewer", "render_s"} <= set(report["targets"])
    text = out.read_text()
    assert "machine:" in text and "| envelope |" in text and "## Targets" in text


@pytest.mark.parametrize("envelope", [1, 100])
def test_quix_peer_counts_every_event_of_each_room_in_its_window(make_broker, tmp_path, envelope):
    """The Quix Streams peer, a real Quix Streams application on the real broker, counts every
    event the bench sent, in the right room and the right 1 s window of the event's `ts`."""
    import asyncio
    from collections import Counter

    from livemon.bench import Child, _produce, pack, traffic
    from livemon.bench_peers import role_quix  # noqa: F401 - the child imports it: fail here first
    from livemon.ingest.events import decode

    bootstrap = make_broker()
    packed = pack(traffic(rooms=4, rate=1_500, duration=3, seed=1), envelope)
    asyncio.run(_produce(bootstrap, packed))
    expected = Counter()
    for topic, key, value, *_ in packed:
        events, rejected = decode(value, topic)
        assert not rejected
        for event in events:
            ts_ms = int(event.ts * 1000)
            expected[f"{key.decode()}|{ts_ms - ts_ms % 1000}"] += 1
    total = sum(expected.values())
    assert total > 500 and len({k.split("|")[0] for k in expected}) == 4

    with open(tmp_path / "bench.log", "ab") as log:
        result = Child({"role": "quix", "bootstrap": bootstrap, "max_events": total, "counts": True},
                       log).run(120)
    assert "error" not in result, (result, (tmp_path / "bench.log").read_text()[-2000:])
    assert result["late"] == 0 and result["events"] == total
    assert result["counts"] == dict(expected)
    assert result["last"] >= result["first"]
