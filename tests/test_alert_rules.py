"""Rule files: the shipped ones are valid, and mistakes are reported with file, line and field."""

import textwrap

import pytest
from click.testing import CliRunner

from livemon.alerting.config import load_config
from livemon.alerting.rules import load_rules
from livemon.alerting.schema import ConfigError, parse_duration
from livemon.cli import cli

DEFAULT_RULES = {"RoomHighStallRatio", "RoomHighLatencyP95", "RoomPlaybackErrorSpike", "RoomSlowStarts",
                 "CdnDegradedStall", "CdnDegradedErrors", "CdnDegradedLatency", "CdnSlowStarts", "ViewerDrop",
                 "InteractionCollapse", "OrdersStopped", "PinnedProductPaymentsStopped", "GmvBehindPace"}


def test_default_rule_set_covers_live_commerce():
    config = load_config("alerts/alerting.yml")
    rules = {r.name: r for r in config.rules}
    assert set(rules) == DEFAULT_RULES
    assert rules["RoomHighStallRatio"].threshold == 0.05          # the common QoE alarm line
    # The degradations move viewers; slow starts alone only notify (the viewers playing are fine).
    assert {r.name for r in rules.values() if "failover" in r.actions} == {
        "CdnDegradedStall", "CdnDegradedErrors", "CdnDegradedLatency"}
    # Every stream threshold rule reads the 10 s window beside the 60 s one.
    assert {r.name for r in rules.values() if r.short} == {
        r.name for r in rules.values() if r.metric in ("stall_ratio", "latency_p95_ms", "error_rate", "fast_start_ratio")}
    assert all(r.short == f"{r.metric}_10s" for r in rules.values() if r.short)
    assert all(r.volume_metric and r.volume_min > 0 for r in rules.values())
    assert all("summary" in r.annotations and r.annotations.get("runbook_url", "").startswith("docs/ALERTING.md#")
               for r in rules.values())
    assert config.failover is not None and config.failover.cooldown == 300


def write(tmp_path, text, name="rules.yml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("body, line, field, words", [
    ("""\
     rules:
       - name: A
         metric: stall_ratio
         threshold: high
     """, 4, "rules[0].threshold", "expected a number"),
    ("""\
     rules:
       - name: A
         metric: stall_ratio
         threshold: 0.05
       - name: B
         metric: stal_ratio
         threshold: 1
     """, 6, "rules[1].metric", "unknown room metric 'stal_ratio'"),
    ("""\
     rules:
       - name: A
         metric: stall_ratio
         threshold: 0.05
         for: 30 seconds
     """, 5, "rules[0].for", "expected a duration"),
    ("""\
     rules:
       - name: A
         metric: stall_ratio
         threshold: 0.05
         clear: 0.07
     """, 5, "rules[0].clear", "healthy side"),
    ("""\
     rules:
       - name: A
         metric: stall_ratio
         threshold: 0.05
         actions: [notify, failover]
     """, 5, "rules[0].actions", "scope: cdn"),
    ("""\
     rules:
       - name: A
         metric: stall_ratio
         threshold: 0.05
         annotations:
           summary: "{roomm} stalls"
     """, 6, "rules[0].annotations.summary", "unknown template field"),
    ("""\
     rules:
       - name: A
         metric: online
         anomaly: {direction: down, min_change: 0.3}
     """, 4, "rules[0].anomaly.direction", "expected one of drop, spike"),
    ("""\
     rules:
       - name: A
         metric: online
         threshold: 1
         severity: page
     """, 5, "rules[0].severity", "expected one of critical"),
    ("""\
     rules:
       - name: A
         metric: online
         threshold: 1
         treshold: 2
     """, 5, "rules[0].treshold", "unknown field"),
    ("""\
     rules:
       - name: A
         metric: online
         threshold: 1
       - name: A
         metric: online
         threshold: 2
     """, 5, "rules[1].name", "duplicate rule name"),
    ("""\
     rules:
       - name: A
         metric: [online
     """, 4, "", "invalid YAML"),
])
def test_errors_name_file_line_and_field(tmp_path, body, line, field, words):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as error:
        load_rules(path)
    assert error.value.file == str(path)
    assert error.value.line == line
    assert error.value.field == field
    assert words in str(error.value)
    assert str(error.value).startswith(f"{path}:{line}: ")


def test_service_config_errors_and_env(tmp_path, monkeypatch):
    write(tmp_path, "rules:\n  - {name: C, scope: cdn, metric: error_rate, threshold: 0.1, "
                    "actions: [failover]}\n")
    path = write(tmp_path, """\
        rule_files: [rules.yml]
        delivery:
          webhooks:
            - name: ops
              url: ${HOOK_URL}
              secret: ${HOOK_SECRET:-}
        """, "alerting.yml")
    with pytest.raises(ConfigError, match=r"alerting.yml:5: delivery.webhooks\[0\].url: "
                                          r"environment variable HOOK_URL is not set"):
        load_config(path)
    monkeypatch.setenv("HOOK_URL", "http://127.0.0.1:1/hook")
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    config = load_config(path)
    assert config.webhooks[0].url == "http://127.0.0.1:1/hook"
    assert config.webhooks[0].secret == "s3cret"
    assert "s3cret" not in repr(config)               # secrets stay out of reprs and logs
    monkeypatch.setenv("HOOK_URL", "")
    assert load_config(path).webhooks == ()            # an empty URL disables the receiver


def test_durations():
    assert parse_duration("90s") == 90
    assert parse_duration("1m30s") == 90
    assert parse_duration("1h") == 3600
    assert parse_duration("500ms") == 0.5
    assert parse_duration(15) == 15
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_rules_check_command(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli, ["rules", "check", "alerts/alerting.yml", "alerts/rules.yml",
                             "alerts/alertmanager.yml"])
    assert ok.exit_code == 0, ok.output
    assert f"alerts/rules.yml: {len(DEFAULT_RULES)} rules OK" in ok.output
    assert "alertmanager.yml: Alertmanager configuration OK" in ok.output
    bad = write(tmp_path, "rules:\n  - name: A\n    metric: online\n    threshold: x\n")
    result = runner.invoke(cli, ["rules", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:4: rules[0].threshold: expected a number" in result.output
    assert "Traceback" not in result.output
