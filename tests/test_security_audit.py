"""Dependency audit of the installed environment against PyPI's advisory data, by two routes.

1. `pip-audit`, which asks PyPI for the advisories of each installed release
   (https://pypi.org/pypi/NAME/VERSION/json). Its results are kept for every dependency it audited.
2. For the dependencies pip-audit could not audit (some networks answer that per-release URL with
   404 while the per-project one works), PyPI's per-project JSON (https://pypi.org/pypi/NAME/json):
   its "vulnerabilities" are those of the project's LATEST release only. So a dependency installed
   at exactly its latest release is audited that way; one held below it (or not on PyPI) cannot be,
   and is named in a warning in the report instead of failing the test.

Any known vulnerability fails the test, naming package, version and advisory ids. The test is
skipped, with the reasons, only if neither route audited anything: it never passes silently.
"""

import importlib.util
import json
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

import pytest
import requests
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

SITE_PACKAGES = [p for p in sys.path if p.endswith("site-packages")]
PROJECT = "liveroom-monitor"  # the editable install of this repository: not a dependency


def installed_dependencies():
    return {canonicalize_name(d.metadata["Name"]): d.version
            for d in metadata.distributions(path=SITE_PACKAGES)
            if canonicalize_name(d.metadata["Name"]) != PROJECT}


def pip_audit():
    """Route 1: {name: (version, advisory ids)} for what pip-audit audited, and why it did not do more."""
    if importlib.util.find_spec("pip_audit") is None:
        return {}, "pip-audit is not installed (pip install -e '.[test]')"
    paths = [arg for p in SITE_PACKAGES for arg in ("--path", p)]
    try:
        run = subprocess.run([sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off",
                              "--skip-editable", "--timeout", "5", *paths], capture_output=True, text=True, timeout=40)
        dependencies = json.loads(run.stdout)["dependencies"]
    except subprocess.TimeoutExpired:
        return {}, "pip-audit timed out"
    except (json.JSONDecodeError, KeyError):
        return {}, f"pip-audit failed: {run.stderr.strip()[-300:]}"
    audited = {canonicalize_name(d["name"]): (d["version"], [v["id"] for v in d["vulns"]])
               for d in dependencies if "skip_reason" not in d}
    skipped = [d["skip_reason"] for d in dependencies if "skip_reason" in d and d["name"] != PROJECT]
    return audited, f"pip-audit could not audit {len(skipped)}" + (f" (e.g. {skipped[0]})" if skipped else "")


def pypi_latest(name, version):
    """Route 2: (advisory ids, None) if `version` is the latest release on PyPI, else (None, reason)."""
    try:
        response = requests.get(f"https://pypi.org/pypi/{name}/json", timeout=(3, 10))
        response.raise_for_status()
        project = response.json()
        latest = project["info"]["version"]
        if Version(version) != Version(latest):
            return None, f"installed {version}, latest {latest}"
    except (requests.RequestException, ValueError, KeyError, InvalidVersion) as error:
        return None, f"PyPI lookup failed: {error}"
    return [v["id"] for v in project.get("vulnerabilities", []) if not v.get("withdrawn")], None


def test_no_known_vulnerabilities_in_installed_dependencies():
    started = time.monotonic()
    installed = installed_dependencies()
    by_pip_audit, pip_audit_note = pip_audit()
    rest = {name: version for name, version in installed.items() if name not in by_pip_audit}
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = dict(zip(rest, pool.map(pypi_latest, rest, rest.values())))
    by_pypi = {name: (rest[name], ids) for name, (ids, _) in answers.items() if ids is not None}
    unaudited = {name: f"{rest[name]}: {reason}" for name, (_, reason) in answers.items() if reason}

    print(f"\ndependency audit of {len(installed)} installed distributions in {time.monotonic() - started:.1f} s: "
          f"{len(by_pip_audit)} by pip-audit ({pip_audit_note}), {len(by_pypi)} by PyPI's latest-release "
          f"advisories, {len(unaudited)} not audited")
    if unaudited:
        warnings.warn("dependencies not audited: " + "; ".join(f"{n} {r}" for n, r in sorted(unaudited.items())))
    if not by_pip_audit and not by_pypi:
        pytest.skip(f"dependency audit not performed: {pip_audit_note}; by PyPI's per-project JSON: "
                    + "; ".join(f"{n} {r}" for n, r in sorted(unaudited.items())[:3]))
    vulnerable = {f"{name} {version}": ids for name, (version, ids) in {**by_pypi, **by_pip_audit}.items() if ids}
    assert not vulnerable, f"known vulnerabilities: {vulnerable}"
