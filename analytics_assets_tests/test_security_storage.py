"""The MongoDB connection under a security probe's findings: credentials a server cannot
check are one clear line, never a traceback or the password; a readiness ping has no side
effect (it never starts the embedded server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pymongo.errors import OperationFailure

from analytics_assets.storage import connection as connection_module
from analytics_assets.storage.connection import (
    MongoAuthenticationError,
    MongoConnection,
    _check_authentication,
)
from analytics_assets.storage.embedded import _listening
from analytics_assets_tests.nocodb_server import free_port

PASSWORD = "s3cr3t-Pa55word"


def _with_credentials(uri: str) -> str:
    return uri.replace("mongodb://", f"mongodb://analyst:{PASSWORD}@", 1) + "/"


@pytest.mark.parametrize("command", [["migrate"], ["migrate", "--status"], ["api-key", "list"]])
def test_credentials_the_server_cannot_check_are_one_clear_line(mongo_server, tmp_path, command):
    """nx-27017 has no SCRAM: pymongo used to fail inside the exchange with a bare
    `KeyError: 'payload'` and a traceback."""
    env = {
        **os.environ,
        "MONGODB_URI": _with_credentials(mongo_server),
        "ANALYTICS_LOCAL_DIR": str(tmp_path),
    }
    env.pop("ANALYTICS_DEPLOYMENT", None)
    done = subprocess.run(
        [sys.executable, "-m", "analytics_assets.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output and "KeyError" not in output
    assert PASSWORD not in output
    port = mongo_server.rsplit(":", 1)[1]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "authentication failed" in lines[0]
    assert "does not support SCRAM authentication" in lines[0]


@pytest.fixture
def fresh_settings():
    """The CLI reads the process's settings once (cached): read them again from this test's
    environment, and forget them afterwards, so no later test inherits its MONGODB_URI."""
    from analytics_assets.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_cli_reports_the_error_in_process(
    mongo_server, tmp_path, monkeypatch, capsys, fresh_settings
):
    from analytics_assets.cli import main

    monkeypatch.setenv("MONGODB_URI", _with_credentials(mongo_server))
    monkeypatch.setenv("ANALYTICS_LOCAL_DIR", str(tmp_path))
    monkeypatch.delenv("ANALYTICS_DEPLOYMENT", raising=False)
    assert main(["migrate", "--status"]) == 1
    captured = capsys.readouterr()
    assert "does not support SCRAM authentication" in captured.err
    assert PASSWORD not in captured.out + captured.err
    # The failed client is not kept: the next call checks again, and fails the same way.
    assert not [uri for uri in connection_module._clients if PASSWORD in uri]
    with pytest.raises(MongoAuthenticationError):
        MongoConnection(uri=_with_credentials(mongo_server)).db()


def test_a_key_made_without_scopes_reads_but_cannot_manage_webhooks(
    mongo_server, tmp_path, monkeypatch, capsys, fresh_settings
):
    """webhooks:manage makes the server post to any host a caller names: a key made without
    `--scope` had it, with every other scope."""
    from analytics_assets.api import keys
    from analytics_assets.cli import main

    monkeypatch.setenv("MONGODB_URI", mongo_server)
    monkeypatch.setenv("MONGODB_DATABASE", "scopes_default")
    monkeypatch.setenv("ANALYTICS_LOCAL_DIR", str(tmp_path))
    monkeypatch.delenv("ANALYTICS_DEPLOYMENT", raising=False)
    assert main(["api-key", "create"]) == 0
    assert main(["api-key", "create", "--scope", "webhooks:manage"]) == 0
    printed = capsys.readouterr().out
    made = [line for line in printed.splitlines() if line.startswith(keys.PREFIX)]
    db = MongoConnection(uri=mongo_server, database="scopes_default").db()
    (default, asked) = (keys.verify(db, key) for key in made)
    assert set(default.scopes) == {"conversations:read", "analytics:read", "users:read"}
    assert asked.scopes == ("webhooks:manage",)


class _RefusingClient:
    """What a real MongoDB does with a wrong password: OperationFailure, code 18."""

    def __init__(self, code: int):
        self.code = code
        self.admin = self
        self.topology_description = self

    def command(self, name: str):
        raise OperationFailure("Authentication failed.", code=self.code)

    def server_descriptions(self):
        return {("db.example.net", 27017): None}


def test_a_refused_login_says_authentication_failed():
    with pytest.raises(MongoAuthenticationError) as raised:
        _check_authentication(_RefusingClient(18))
    message = str(raised.value)
    assert message.startswith("MongoDB at db.example.net:27017: authentication failed")
    with pytest.raises(MongoAuthenticationError, match="does not support SCRAM"):
        _check_authentication(_RefusingClient(59))
    with pytest.raises(OperationFailure):  # not an authentication problem: left as it is
        _check_authentication(_RefusingClient(13))


# -- ping: readiness without side effects ----------------------------------------------------


def _children() -> set[int]:
    """This process's child processes (Linux /proc)."""
    mine = str(os.getpid())
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == mine:
            children.add(int(stat.parent.name))
    return children


def test_ping_never_starts_the_embedded_server(tmp_path):
    data_dir = tmp_path / "mongo"
    port = free_port()
    connection = MongoConnection(embedded_data_dir=str(data_dir), embedded_port=port)
    clients, threads, children = (
        dict(connection_module._clients),
        set(threading.enumerate()),
        _children(),
    )

    assert connection.ping() is False
    assert connection.ping(timeout_s=0.2) is False

    assert not data_dir.exists()
    assert not _listening("127.0.0.1", port)
    assert set(threading.enumerate()) == threads
    assert connection_module._clients == clients
    assert _children() == children

    # Normal use starts it; from then on the ping answers.
    try:
        connection.db()
        assert connection.ping() is True
    finally:
        pid = int((data_dir / "nx-27017.pid").read_text().strip())
        uri = f"mongodb://127.0.0.1:{port}"
        client = connection_module._clients.pop(uri, None)
        if client is not None:
            client.close()
        connection_module._migrated.discard((uri, connection.database))
        _stop(pid)


def _stop(pid: int) -> None:
    """The embedded server this test started: SIGTERM, then SIGKILL after 10 s."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        time.sleep(0.1)


def test_ping_of_a_uri(mongo_server):
    assert MongoConnection(uri=mongo_server).ping() is True
    assert MongoConnection(uri=f"mongodb://127.0.0.1:{free_port()}").ping(timeout_s=0.5) is False
    # Credentials the server cannot check: not ready, and no exception.
    assert MongoConnection(uri=_with_credentials(mongo_server)).ping() is False
