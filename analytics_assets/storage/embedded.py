"""The embedded MongoDB-compatible server of the local deployment: nx-27017 on loopback.

nx-27017 speaks MongoDB's wire protocol on top of SQLite, so the local deployment runs the
same pymongo code as production with nothing to install by hand. What differs from a real
MongoDB: validators are stored but not enforced, TTL indexes do not expire documents, and
filters on fields other than `_id` scan.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def _listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def ensure_embedded_mongo(data_dir: Path, port: int, host: str = "127.0.0.1") -> str:
    """Starts nx-27017 on `host:port` unless something already listens there; returns its URI."""
    uri = f"mongodb://{host}:{port}"
    if _listening(host, port):
        return uri
    data_dir.mkdir(parents=True, exist_ok=True)
    executable = shutil.which("nx-27017") or str(Path(sys.executable).parent / "nx-27017")
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - handed to the server process
    subprocess.Popen(
        [
            executable,
            "--data-dir",
            str(data_dir),
            "--host",
            host,
            "--port",
            str(port),
            "--log-file",
            str(data_dir / "nx-27017.log"),
            "--pid-file",
            str(data_dir / "nx-27017.pid"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Outlives the command that started it, like a database should.
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not _listening(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nx-27017 did not start on {uri}; see {data_dir / 'server.log'}")
        time.sleep(0.1)
    return uri
