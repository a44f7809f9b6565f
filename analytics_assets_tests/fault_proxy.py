"""An HTTP proxy on loopback that forwards to a real server and injects faults on schedule.

Faults: 429 with and without Retry-After, 500/502/503, a response slower than the client's
timeout, a connection reset, and a body cut short of its Content-Length.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

FAULTS = (
    "429_retry_after",
    "429",
    "500",
    "502",
    "503",
    "timeout",
    "reset",
    "truncated",
)
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-encoding",
    "content-length",
}


class FaultProxy:
    """Forwards every request to `upstream`; request n gets `plan[n]` (None = pass through)."""

    def __init__(self, upstream: str, plan: Iterable[str | None], *, slow_response_s: float = 1.5):
        self.upstream = upstream.rstrip("/")
        self._plan = iter(plan)
        self._lock = threading.Lock()
        self._closed = False
        self.slow_response_s = slow_response_s
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        self._http = httpx.Client(base_url=self.upstream, timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_POST(self) -> None:
                proxy._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def _next_fault(self) -> str | None:
        with self._lock:
            return next(self._plan, None)

    def _forward(self, handler: BaseHTTPRequestHandler) -> httpx.Response:
        if self._closed:
            # A stalled request wakes after the proxy closed (its client gave up long ago):
            # forwarding on the closed client printed a traceback into whatever ran next.
            raise ConnectionAbortedError("the proxy is closed")
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in {"host"}}
        return self._http.request(handler.command, handler.path, content=body, headers=headers)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        fault = self._next_fault()
        if fault:
            self.injected[fault] += 1
        try:
            if fault in ("429_retry_after", "429", "500", "502", "503"):
                status = int(fault[:3])
                handler.send_response(status)
                if fault == "429_retry_after":
                    handler.send_header("Retry-After", "1")
                payload = b'{"msg":"injected fault"}'
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(payload)))
                handler.end_headers()
                handler.wfile.write(payload)
                return
            if fault == "reset":
                # SO_LINGER 0 makes close() send a TCP RST instead of a clean FIN.
                handler.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                handler.connection.close()
                return
            if fault == "timeout":
                time.sleep(self.slow_response_s)
            response = self._forward(handler)
            with self._lock:
                self.forwarded += 1
            body = response.content
            handler.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in HOP_HEADERS:
                    handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if fault == "truncated":
                handler.wfile.write(body[: max(1, len(body) // 2)])
                handler.wfile.flush()
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client gave up (timeout) or we cut it off on purpose


def every_fault_between_successes(rounds: int = 2) -> Iterable[str | None]:
    """Each fault kind, `rounds` times, each followed by a clean request so paging proceeds."""
    for fault in itertools.chain.from_iterable(itertools.repeat(FAULTS, rounds)):
        yield fault
        yield None
