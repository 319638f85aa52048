"""`livemon demo`: live rooms within 30 s, and Ctrl-C leaves no process behind."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from livemon.demo import EMBEDDED_CHECKPOINT_INTERVAL, read_rooms


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode().split("\0")
    except OSError:
        return []


def descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_demo_shows_live_rooms_and_ctrl_c_stops_everything():
    demo = subprocess.Popen([sys.executable, "-m", "livemon", "demo", "--web-port", "0", "--no-summary",
                             "--rooms", "5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    try:
        url = None
        for line in demo.stdout:
            match = re.search(r"metrics\s+(http://127\.0\.0\.1:\d+/metrics)", line)
            if match:
                url = match.group(1)
                break
        assert url, "the demo printed no metrics URL"
        rows = []
        while time.monotonic() - started < 30:
            try:
                rows = [row for row in read_rooms(url) if row.get("online", 0) > 0]
            except OSError:
                pass
            if len(rows) >= 3:
                break
            time.sleep(1)
        assert len(rows) >= 3, rows
        children = descendants(demo.pid)
        assert len(children) >= 3  # broker, worker, simulator
        # On the memory-only broker the worker checkpoints less often: it keeps every checkpoint.
        commands = [cmdline(pid) for pid in children]
        (worker,) = [c for c in commands if c[2:4] == ["livemon", "worker"]]
        assert worker[worker.index("--checkpoint-interval") + 1] == str(EMBEDDED_CHECKPOINT_INTERVAL)
        with urllib.request.urlopen(url.replace("/metrics", "/"), timeout=5) as page:
            assert page.status == 200
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=40) == 0
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if alive(pid)]
