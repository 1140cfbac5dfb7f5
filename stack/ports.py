"""Host/port parsing and port availability checks for the embedded stack."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass

from stack.errors import PortInUseError


def split_host_port(address: str) -> tuple[str, int]:
    """``"127.0.0.1:7233"`` -> ``("127.0.0.1", 7233)``; for a list, the first entry."""
    first = address.split(",")[0].strip()
    for prefix in ("PLAINTEXT://", "kafka://"):
        first = first.removeprefix(prefix)
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class PortClaim:
    """A port a component binds, and how a user would move it elsewhere."""

    component: str
    host: str
    port: int
    setting: str  # e.g. "kafka.bootstrap_servers"

    @property
    def env_var(self) -> str:
        return "ACCORD_" + self.setting.upper().replace(".", "__")

    def ensure_free(self) -> None:
        if not port_is_free(self.host, self.port):
            raise PortInUseError(self.component, self.host, self.port, self.setting, self.env_var)


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port.

    SO_REUSEADDR makes the bind ignore TIME_WAIT leftovers of a server we just stopped, so
    only a live listener counts as taken (Linux semantics).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return True
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError:
            return False
    return True


def pick_free_ports(count: int, host: str) -> list[int]:
    """``count`` distinct ports the OS considers free right now (for tests on shared machines)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def pick_free_ports_in(count: int, host: str, low: int, high: int) -> list[int]:
    """``count`` distinct free ports in ``[low, high]`` (some servers store ports in 16-bit
    signed columns: Temporal's membership table wants them below 32768, under the ephemeral
    range the OS hands out for port 0)."""
    sockets: list[socket.socket] = []
    candidates = random.sample(range(low, high + 1), k=min(high - low + 1, count * 50))
    try:
        for port in candidates:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
            if len(sockets) == count:
                return [s.getsockname()[1] for s in sockets]
        raise OSError(f"fewer than {count} free ports in {low}-{high} on {host}")
    finally:
        for sock in sockets:
            sock.close()
