"""The core is type-checked: mypy over the engine, ingest, catalogue, topics and settings, with the
settings of pyproject.toml ([tool.mypy]); a module's path is its import path, so mypy finds them."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ("livemon.engine", "livemon.ingest", "livemon.catalogue", "livemon.topics", "livemon.settings")


def test_the_core_type_checks():
    args = [sys.executable, "-m", "mypy", "--no-incremental", *(a for p in CORE for a in ("-p", p))]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_module_paths_say_their_import_names():
    import livemon.agents.app
    import livemon.engine.engine

    assert Path(livemon.agents.app.__file__).relative_to(ROOT).as_posix() == "agents/livemon/agents/app.py"
    assert Path(livemon.engine.engine.__file__).relative_to(ROOT).as_posix() == "monitor/livemon/engine/engine.py"
