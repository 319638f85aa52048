"""Access and secrets, on real processes: what listens where, who may act, what never leaks.

See docs/SECURITY.md for the threat model these tests stand behind.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from livemon.broker import free_port
from livemon.web import server
from tests.fixtures.worker import simulate

TOKEN = "tok-Zq81-control-room-5b7e-9c2d-41af"
HOOK_SECRET = "whsec-4f0b9e-oncall"
VENDOR_SECRET = "cdn-vendor-7d2c-secret"
URL_TOKEN = "urlkey-55aa"  # a credential in a receiver URL's query string


# ---- listeners --------------------------------------------------------------------------------

def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (children may start sessions of their own)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= new
        grew = bool(new)
    return sorted(tree)


def listening_addresses(pids, with_ports: bool = False) -> set:
    """Local addresses of the TCP sockets in LISTEN state that these processes hold."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table, size in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:
                hex_ip, port = parts[1].split(":")
                if size == 8:
                    address = ".".join(str(int(hex_ip[i:i + 2], 16)) for i in (6, 4, 2, 0))
                else:
                    address = "::1" if hex_ip == "0" * 24 + "01000000" else hex_ip
                found.add((address, int(port, 16)) if with_ports else address)
    return found


def test_worker_listens_on_loopback_only(broker, start_worker):
    worker = start_worker(broker, "--no-alerts", group="security-listen")
    assert listening_addresses(process_tree(worker.process.pid)) == {"127.0.0.1"}


def test_embedded_broker_listens_on_loopback_only(make_broker):
    bootstrap = make_broker()
    port = int(bootstrap.rsplit(":", 1)[1])
    tansu = [pid for pid in Path("/proc").iterdir() if pid.name.isdigit()
             and f"tcp://127.0.0.1:{port}".encode() in (pid / "cmdline").read_bytes()]
    assert tansu and listening_addresses([int(p.name) for p in tansu]) == {"127.0.0.1"}


def test_demo_listens_on_loopback_only():
    demo = subprocess.Popen([sys.executable, "-m", "livemon", "demo", "--web-port", "0", "--duration", "60",
                             "--rooms", "2", "--rate", "100", "--no-summary"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, sockets = time.monotonic() + 60, set()
        while time.monotonic() < deadline and demo.poll() is None and len(sockets) < 2:
            time.sleep(0.5)  # the broker and the worker's web port (page and /metrics)
            sockets = listening_addresses(process_tree(demo.pid), with_ports=True)
        assert len(sockets) >= 2 and {address for address, _ in sockets} == {"127.0.0.1"}, sockets
    finally:
        for pid in process_tree(demo.pid):
            try:
                os.kill(pid, signal.SIGTERM) if pid != demo.pid else os.killpg(demo.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        demo.wait(30)


# ---- the token --------------------------------------------------------------------------------

def test_token_comparison_stays_constant_time():
    assert "compare_digest" in server.token_ok.__code__.co_names
    assert server.token_ok(TOKEN, TOKEN) and not server.token_ok(TOKEN[:-1], TOKEN)
    assert not server.token_ok("", TOKEN) and not server.token_ok("ü" * 8, TOKEN)


# ---- secrets never leak; actions need the token; bodies are bounded -----------------------------

RULES = """
rules:
  - name: AnyAudience
    scope: room
    metric: online
    op: ">="
    threshold: 1
    for: 0s
    severity: critical
    annotations: {summary: "room {room} has an audience"}
    actions: [notify]
  - name: AnyCdnErrors
    scope: cdn
    metric: viewers
    op: ">="
    threshold: 1
    for: 0s
    severity: critical
    actions: [notify, failover]
"""

CONFIG = """
rule_files: [rules.yml]
delivery:
  webhooks:
    - name: oncall
      url: "${LIVEMON_WEBHOOK_URL}"
      secret: "${LIVEMON_WEBHOOK_SECRET}"
  retry: {initial: 100ms, max: 500ms, timeout: 1s}
failover:
  enabled: true
  cooldown: 10s
  pools: {"*": [cdn-a, cdn-b, cdn-c]}
  endpoint:
    url: "${LIVEMON_FAILOVER_URL}"
    secret: "${LIVEMON_FAILOVER_SECRET}"
"""


def post(url: str, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_secrets_stay_out_of_logs_and_pages(broker, start_worker, tmp_path, monkeypatch):
    (tmp_path / "rules.yml").write_text(RULES)
    (tmp_path / "alerting.yml").write_text(CONFIG)
    down = free_port()  # nothing listens: every delivery fails and is logged
    monkeypatch.setenv("LIVEMON_TOKEN", TOKEN)
    monkeypatch.setenv("LIVEMON_WEBHOOK_URL", f"http://127.0.0.1:{down}/hook?key={URL_TOKEN}")
    monkeypatch.setenv("LIVEMON_WEBHOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("LIVEMON_FAILOVER_URL", f"http://user:{URL_TOKEN}@127.0.0.1:{down}/switch")
    monkeypatch.setenv("LIVEMON_FAILOVER_SECRET", VENDOR_SECRET)
    data = tmp_path / "data"
    worker = start_worker(broker, "--alerts-config", str(tmp_path / "alerting.yml"), "--log-level", "debug",
                          "--data-dir", str(data), "--recording-dir", str(tmp_path / "rec"), group="security")
    sim = simulate(broker, str(tmp_path / "events.jsonl"), "--rooms", "2", "--room-prefix", "sec-",
                   "--rate", "150", "--duration", "20")
    assert sim.wait(60) == 0
    log = Path(worker.log_path)
    deadline = time.monotonic() + 30
    while b"webhook-oncall: http://127.0.0.1" not in log.read_bytes() or b"/switch unreachable" not in log.read_bytes():
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.5)

    actions = worker.url + "/api/actions"
    ack = json.dumps({"action": "ack", "room_id": "sec-001", "rule": "AnyAudience"}).encode()
    assert post(actions, ack, {"Content-Type": "application/json"}) == 401
    assert post(actions, ack, {"Authorization": "Bearer " + TOKEN[:-1] + "x"}) == 401
    assert post(actions, ack, {"Authorization": "Bearer " + TOKEN}) == 202
    assert post(actions, b"{" + b" " * 5000 + b"}", {"X-Livemon-Token": TOKEN}) == 413
    assert post(worker.url + "/api/rooms", b"x" * (70 * 1024), {}) in (405, 413)

    pages = [worker.get(path)[1] for path in (
        "/", "/room/sec-001", "/review/", "/api/rooms", "/api/rooms/sec-001", "/api/alerts", "/api/shows",
        "/metrics", "/healthz", "/livez", "/static/grid.js")]
    with urllib.request.urlopen(worker.url + "/api/stream?room=sec-001", timeout=5) as stream:
        pages.append(stream.read(20000))
        csp = stream.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    worker.stop()
    stored = b"".join(p.read_bytes() for p in list(data.rglob("*")) + list((tmp_path / "rec").rglob("*"))
                      if p.is_file())
    everything = b"".join(pages) + log.read_bytes() + stored
    assert b"sec-001" in everything  # we did look at the right things
    for secret in (TOKEN, HOOK_SECRET, VENDOR_SECRET, URL_TOKEN):
        assert secret.encode() not in everything, secret


def test_every_page_sends_a_strict_csp(broker, start_worker):
    worker = start_worker(broker, "--no-alerts", group="security-csp")
    for path in ("/", "/room/x", "/review/", "/api/rooms", "/static/grid.js", "/nope"):
        try:
            headers = urllib.request.urlopen(worker.url + path, timeout=5).headers
        except urllib.error.HTTPError as error:
            headers = error.headers
        csp = headers["Content-Security-Policy"] or ""
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, path
        assert headers["X-Content-Type-Options"] == "nosniff", path
