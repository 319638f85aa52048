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
        assert row["engine_vs_raw"] > 0
    assert report["throughput"]["1"]["faust"] > 0
    assert report["ratio_vs_faust"] > 0
    assert report["scale_out"]["ratio"] > 0
    assert report["e2e"]["probes"] > 0 and report["e2e"]["p99_s"] >= report["e2e"]["p50_s"] > 0
    assert report["memory"]["viewers"] > 0 and report["memory"]["bytes_per_viewer"] > 0
    assert report["render"]["rooms"] == 10_000 and report["render"]["render_s"] > 0
    assert {"events_per_s_100", "ratio_vs_faust", "e2e_p99_s", "bytes_per_viewer", "render_s"} <= set(report["targets"])
    text = out.read_text()
    assert "machine:" in text and "| envelope |" in text and "## Targets" in text
