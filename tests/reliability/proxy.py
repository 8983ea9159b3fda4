"""A loopback TCP proxy that injects network faults between a real driver and a real server.

Modes (switchable while it runs): ``pass`` forwards bytes; ``slow`` delays every chunk the
server sends by ``delay`` seconds; ``cut`` closes both sockets once ``cut_after`` bytes of a
connection's server→client stream have gone through (the connection drops mid-result).
Every accepted connection is counted and time-stamped, so a test sees each retry and its
backoff.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

__all__ = ["FaultProxy", "closed_port"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FaultProxy:
    """``with FaultProxy(port) as proxy:`` then connect to ``127.0.0.1:proxy.port``."""

    upstream_port: int
    upstream_host: str = "127.0.0.1"
    mode: str = "pass"
    delay: float = 0.0
    delay_after: int = 0  # slow: bytes of a connection that still pass at full speed
    cut_after: int = 0
    times: int | None = None  # cut: how many connections to cut before passing again
    accepted: list[float] = field(default_factory=list)  # time.monotonic() of each connection
    cuts: int = 0

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port = int(self._server.getsockname()[1])
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()

    def set(self, mode: str, *, delay: float = 0.0, delay_after: int = 0, cut_after: int = 0,
            times: int | None = None) -> None:
        """Switch the fault for connections and chunks from now on; resets the counters."""
        with self._lock:
            self.mode, self.delay, self.delay_after = mode, delay, delay_after
            self.cut_after, self.times = cut_after, times
            self.accepted, self.cuts = [], 0

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.accepted.append(time.monotonic())
            try:
                upstream = socket.create_connection((self.upstream_host, self.upstream_port), 5)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _cut_now(self, total: int) -> bool:
        with self._lock:
            if self.mode != "cut" or total <= self.cut_after:
                return False
            if self.times is not None and self.cuts >= self.times:
                return False
            self.cuts += 1
            return True

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        sent = 0
        try:
            while not self._stop.is_set():
                chunk = src.recv(16384)
                if not chunk:
                    break
                if from_server and self.mode == "slow" and sent >= self.delay_after:
                    time.sleep(self.delay)
                if from_server and self._cut_now(sent + len(chunk)):
                    dst.sendall(chunk[: max(0, self.cut_after - sent)])
                    break
                dst.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
