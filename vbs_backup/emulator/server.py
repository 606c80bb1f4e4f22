"""Serve an emulator app over a real socket: uvicorn in a background thread.

    with EmulatorServer(create_app(fleet=...)) as server:
        httpx.get(server.url + "/_emulator/state")

`port=0` picks a free port; the socket is bound before uvicorn starts, so `url` is known and the port
cannot be taken in between. `start()` returns once uvicorn accepts connections.

Bound beyond loopback (`0.0.0.0`, a LAN address, a host name), `start()` logs one WARNING: the emulator's
cloud API takes its well-known example credentials from anyone who can reach it. (Its control API still
answers only loopback Host names and the bind address, if the app was built with `create_app(hosts=...)`.)
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """`127.0.0.0/8`, `::1` or `localhost`: only this machine can connect."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


class EmulatorServer:
    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.log_level = log_level
        self.url: str | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        if self._thread is not None:
            raise RuntimeError("the emulator server is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this. Without it, a socket handed to uvicorn answers each keep-alive
        # request ~40 ms late (Nagle's algorithm meets the client's delayed ACK): 15x slower tests.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        if not is_loopback(self.host):
            logger.warning(
                "the emulator listens on %s:%s, beyond loopback: anyone who can reach it can use its cloud"
                " API with the fleet's example credentials; bind 127.0.0.1 unless you need it elsewhere",
                self.host,
                self.port,
            )
        config = uvicorn.Config(
            self.app,
            log_level=self.log_level,
            access_log=False,
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="vbs-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start listening on {self.host}:{self.port}")
            time.sleep(0.01)
        host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self.url = f"http://{host}:{self.port}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
