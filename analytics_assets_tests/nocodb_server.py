"""Starts the real NocoDB server (installed by scripts/nocodb/install.sh) on loopback.

Used by the test session and the benchmarks. Each start gets its own working folder, so its
SQLite metadata and data are fresh.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

NOCODB_HOME = Path(
    os.environ.get("NOCODB_HOME", Path.home() / ".cache" / "analytics-assets" / "nocodb-0.262.5")
)
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "Analytics-Test-1"  # NocoDB wants 8+ chars, upper case, digit, special
STARTUP_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class NocoDBServer:
    url: str
    token: str
    process: subprocess.Popen | None = None
    workdir: Path | None = None
    log_path: Path | None = None
    _log_handle: object = field(default=None, repr=False)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self._log_handle:
            self._log_handle.close()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _api_token(url: str) -> str:
    with httpx.Client(base_url=url, timeout=30) as http:
        signin = http.post(
            "/api/v1/auth/user/signin", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        signin.raise_for_status()
        created = http.post(
            "/api/v1/tokens",
            headers={"xc-auth": signin.json()["token"]},
            json={"description": "analytics-assets tests"},
        )
        created.raise_for_status()
        return created.json()["token"]


def _log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def start_nocodb() -> NocoDBServer:
    """Starts a fresh server, waits for its health check, returns its URL and an API token."""
    if not (NOCODB_HOME / "node_modules" / "nocodb").exists():
        raise RuntimeError(
            f"The NocoDB test server is not installed in {NOCODB_HOME}: run "
            "`bash scripts/nocodb/install.sh` (make test does it)."
        )
    workdir = Path(tempfile.mkdtemp(prefix="nocodb-"))
    (workdir / "node_modules").symlink_to(NOCODB_HOME / "node_modules")
    shutil.copy(Path(__file__).parents[1] / "scripts" / "nocodb" / "server.js", workdir)
    port = free_port()
    log_path = workdir / "nocodb.log"
    log_handle = open(log_path, "w")  # noqa: SIM115 - closed by NocoDBServer.stop
    env = {
        **os.environ,
        "PORT": str(port),
        "NC_DISABLE_TELE": "true",
        "NC_AUTH_JWT_SECRET": "analytics-assets-tests",
        "NC_ADMIN_EMAIL": ADMIN_EMAIL,
        "NC_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    env.pop("NC_DB", None)  # SQLite in the working folder
    process = subprocess.Popen(
        ["node", "server.js"], cwd=workdir, env=env, stdout=log_handle, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    server = NocoDBServer(url, "", process, workdir, log_path, log_handle)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            tail = _log_tail(log_path)
            server.stop()
            raise RuntimeError(f"NocoDB exited during start-up:\n{tail}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            tail = _log_tail(log_path)
            server.stop()
            raise RuntimeError(f"NocoDB not ready after {STARTUP_TIMEOUT_S}s:\n{tail}")
        time.sleep(1)
    server.token = _api_token(url)
    return server
