"""A real `redis-server` (Debian's package, installed by e2e/node/install-prerequisites.sh) on a
free loopback port, in memory only; stop and start it again on the same port to play an outage.

    with RedisServer() as redis:
        url = redis.url
"""

from __future__ import annotations

import shutil
import socket
import time

from sage_harness.net import free_port
from sage_harness.process import ManagedProcess


def redis_binary() -> str | None:
    return shutil.which("redis-server", path="/usr/local/bin:/usr/bin:/usr/sbin:/bin")


class RedisServer(ManagedProcess):
    def __init__(self, binary: str = "redis-server", port: int = 0) -> None:
        super().__init__("redis-server")
        self.binary = binary
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not self.running():
                raise self.failure("exited")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise self.failure("never answered PING")
