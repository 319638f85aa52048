"""Named operators: tokens hashed with scrypt in an operators file, checked in constant time, and the
operator's name on every action (acknowledgement, failover, target change) instead of a name the
request claims."""

import asyncio
import hashlib
import json

import pytest
import requests
from aiohttp import web
from click.testing import CliRunner

from livemon.cli import cli
from livemon.web import operators as ops
from livemon.web.hub import ControlRoomHub
from livemon.web.server import WebSettings, add_routes
from tests.fixtures.browser import TOKEN, ControlRoomServer, SyntheticShow

ACK = {"action": "ack", "room_id": "room-snacks", "rule": "cdn_stall_ratio_high", "cdn": "cdn-a"}


def add(path, name) -> str:
    result = CliRunner().invoke(cli, ["operators", "add", name, "--file", str(path)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def test_a_hash_line_is_salted_scrypt_and_checks_only_its_secret():
    line = ops.hash_secret("s3cret")
    n, r, p, salt, key = ops.parse_hash(line)
    assert (n, r, p, len(salt), len(key)) == (2 ** 14, 8, 1, 16, 32)
    # The standard library's scrypt, recomputed here from the line's own salt and parameters.
    assert hashlib.scrypt(b"s3cret", salt=salt, n=n, r=r, p=p, dklen=32) == key
    assert ops.hash_secret("s3cret") != line                  # a new salt every time
    assert ops.check_secret("s3cret", line) and not ops.check_secret("s3cret!", line)
    for bad in ("md5$abc", "scrypt$3$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "scrypt$16384$8$1$!!$!!",
                f"scrypt${2 ** 24}$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA=="):
        with pytest.raises(ops.OperatorsError):
            ops.parse_hash(bad)


def test_the_add_command_writes_a_hash_and_prints_the_token_once(tmp_path):
    path = tmp_path / "operators.toml"
    token = add(path, "lin")
    name, _, secret = token.partition(".")
    assert name == "lin" and len(secret) >= 43
    text = path.read_text()
    assert secret not in text and "[operators]" in text      # the file holds no token
    assert path.stat().st_mode & 0o077 == 0                    # readable by its owner only
    held = ops.read_file(path)
    assert list(held) == ["lin"] and ops.check_secret(secret, held["lin"])
    again = add(path, "lin")                                   # a new token replaces the old one
    assert again != token and ops.Operators(None, path).who(token) is None
    assert ops.Operators(None, path).who(again) == "lin"
    add(path, "wang")
    listed = CliRunner().invoke(cli, ["operators", "list", "--file", str(path)])
    assert listed.stdout.split() == ["lin", "wang"]
    removed = CliRunner().invoke(cli, ["operators", "remove", "wang", "--file", str(path)])
    assert removed.exit_code == 0 and list(ops.read_file(path)) == ["lin"]
    # JSON works the same; names are checked; the shared token's name is taken.
    token = add(tmp_path / "ops.json", "zhao")
    assert json.loads((tmp_path / "ops.json").read_text())["operators"].keys() == {"zhao"}
    assert ops.Operators(None, tmp_path / "ops.json").who(token) == "zhao"
    for bad in ("a b", "operator", "x" * 65, "张三"):
        result = CliRunner().invoke(cli, ["operators", "add", bad, "--file", str(path)])
        assert result.exit_code != 0 and "Error" in result.output
    hashed = CliRunner().invoke(cli, ["operators", "hash", "li"])
    token_line, hash_line = hashed.stdout.splitlines()
    token = token_line.split()[-1]
    assert ops.check_secret(token.partition(".")[2], hash_line.split('"')[1])


def test_bad_operators_files_are_refused_saying_why(tmp_path):
    cases = {"missing.toml": None, "a.toml": "[operators]\nlin = 'plain-token'\n", "b.json": '{"operators": [1]}',
             "c.toml": "[operators]\n'bad name' = 'x'\n", "d.toml": "lin = 1\n", "e.json": "{not json"}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(ops.OperatorsError, match=name):
            ops.read_file(path)


def test_named_tokens_act_under_their_name_and_the_shared_one_as_operator(tmp_path, monkeypatch):
    path = tmp_path / "operators.toml"
    lin = add(path, "lin")
    monkeypatch.setenv("LIVEMON_OPERATORS_FILE", str(path))
    server = ControlRoomServer(tmp_path / "data")
    try:
        show = SyntheticShow()
        for i in range(5):
            server.feed_step(show.step(show.start + i))
        for rec in show.outage("room-snacks", "cdn-a", show.start + 4):
            server.feed_alert(rec)
        url = server.url + "/api/actions"
        # A name the body claims changes nothing: the token says who acts.
        assert requests.post(url, json={**ACK, "by": "boss"}, headers={"Authorization": f"Bearer {lin}"},
                             timeout=10).status_code == 202
        assert requests.post(url, json={"action": "failover", "room_id": "room-snacks", "to_cdn": "cdn-b"},
                             headers={"X-Livemon-Token": TOKEN}, timeout=10).status_code == 202
        name, _, secret = lin.partition(".")
        for wrong in (f"lin.{secret[:-1]}x", f"wang.{secret}", secret, "lin."):   # 4: the back-off starts at 5
            assert requests.post(url, json=ACK, headers={"Authorization": f"Bearer {wrong}"},
                                 timeout=10).status_code == 401
        sent = [json.loads(value) for _, _, value in server.published]
        assert [(s["action"], s["by"]) for s in sent] == [("ack", "lin"), ("failover", "operator")]
        # The page's view: the alert acknowledged by lin, the operator log naming both.
        view = requests.get(server.url + "/api/rooms/room-snacks", timeout=5).json()
        assert view["alerts_active"][0]["acknowledged_by"] == "lin"
        assert [(o["action"], o["by"]) for o in view["operator"]] == [("failover", "operator"), ("ack", "lin")]
        # A target change records its operator too, in the log and the recording.
        changed = requests.post(server.url + "/api/targets", json={"room_id": "room-snacks", "gmv": 50000},
                                headers={"Authorization": f"Bearer {lin}"}, timeout=10)
        assert changed.status_code == 200
        view = requests.get(server.url + "/api/rooms/room-snacks", timeout=5).json()
        assert view["operator"][0] == {**view["operator"][0], "action": "target", "by": "lin",
                                       "target": {"gmv": 50000}, "kind": "operator"}
        # An operator added while running counts at once; one removed stops at once.
        wang = add(path, "wang")
        assert requests.post(url, json=ACK, headers={"Authorization": f"Bearer {wang}"}, timeout=10).status_code == 202
        assert json.loads(server.published[-1][2])["by"] == "wang"
        CliRunner().invoke(cli, ["operators", "remove", "lin", "--file", str(path)])
        assert requests.post(url, json=ACK, headers={"Authorization": f"Bearer {lin}"}, timeout=10).status_code == 401
        # The recording (the audit log of the show) holds every action with its operator.
        def recorded():
            return [r for show in server.store.shows("room-snacks") for r in server.store.records(show["key"])]
        records = server.call(asyncio.to_thread(recorded))
        assert {(r.get("action"), r.get("by")) for r in records if r.get("kind") == "operator"} == {
            ("ack", "lin"), ("failover", "operator"), ("target", "lin"), ("ack", "wang")}
    finally:
        server.close()


def test_a_bad_operators_file_stops_the_start(tmp_path):
    path = tmp_path / "operators.toml"
    path.write_text("[operators]\nlin = 'not a hash'\n")
    with pytest.raises(ValueError, match="operator lin"):
        add_routes(web.Application(), ControlRoomHub(), token=TOKEN, settings=WebSettings(operators_file=str(path)))
