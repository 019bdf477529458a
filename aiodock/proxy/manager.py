"""The in-process port proxy: one registry of published ports for the whole daemon (no docker-proxy processes).

With ``dnat`` given (dockerd's --userland-proxy=false), the host sockets are only bound to reserve the ports (as
dockerd's dummy proxy does) and the traffic goes through iptables DNAT rules that ``dnat`` programs: it is called
(blocking, in a thread) with the whole table of published ports whenever it changes.

``publish`` binds every host socket of a container first and starts forwarding only when all bound, so a port in
use fails the whole call and leaves nothing half set up. Bound mappings carry the real host port (ephemeral ports
resolved), so the engine can persist them and rebind the very same ports after a daemon restart.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiodock.errors import InternalError, InvalidArgument
from aiodock.log import get_logger
from aiodock.proxy.tcp import TCPForwarder
from aiodock.proxy.udp import UDPForwarder

log = get_logger("aiodock.proxy")


@dataclass(frozen=True, slots=True)
class PortRequest:
    """One wanted binding: host port range [host_port, host_port_end] (0/0 = ephemeral)."""

    proto: str
    container_port: int
    host_ip: str = ""
    host_port: int = 0
    host_port_end: int = 0


@dataclass(frozen=True, slots=True)
class PortMapping:
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int

    def to_json(self) -> dict[str, object]:
        return {"proto": self.proto, "host_ip": self.host_ip, "host_port": self.host_port,
                "container_ip": self.container_ip, "container_port": self.container_port}

    @staticmethod
    def from_json(raw: dict[str, object]) -> PortMapping:
        return PortMapping(proto=str(raw["proto"]), host_ip=str(raw["host_ip"]), host_port=int(str(raw["host_port"])),
                           container_ip=str(raw["container_ip"]), container_port=int(str(raw["container_port"])))


class Reserved:
    """DNAT mode: a bound host socket that keeps the port reserved; the kernel's DNAT serves the traffic."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._sock.close()


Forwarder = TCPForwarder | UDPForwarder | Reserved
DnatProgrammer = Callable[[Sequence[tuple[PortMapping, str]]], None]


def _bind(proto: str, host_ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind((host_ip or "0.0.0.0", port))
        if proto == "tcp":
            sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_error(proto: str, host_ip: str, port: int, exc: OSError) -> InternalError:
    where = f"{host_ip or '0.0.0.0'}:{port}"
    reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc)).lower()
    return InternalError(f"driver failed programming external connectivity: Error starting userland proxy: "
                         f"listen {proto}4 {where}: bind: {reason}")


class PortProxy:
    def __init__(self, dnat: DnatProgrammer | None = None) -> None:
        self._published: dict[str, list[tuple[PortMapping, Forwarder]]] = {}
        self._bridges: dict[str, str] = {}  # DNAT mode: container -> its bridge
        self._dnat = dnat
        self._lock = asyncio.Lock()

    @property
    def dnat(self) -> bool:
        return self._dnat is not None

    async def _program(self) -> None:
        if self._dnat is not None:
            table = [(m, self._bridges.get(key, "")) for key, entries in self._published.items() for m, _ in entries]
            await asyncio.to_thread(self._dnat, table)

    async def sync(self) -> None:
        """Program the DNAT rules for what is published now (daemon start: drops stale rules)."""
        async with self._lock:
            await self._program()

    def mappings(self, key: str) -> list[PortMapping]:
        return [m for m, _ in self._published.get(key, [])]

    async def publish(self, key: str, container_ip: str, requests: list[PortRequest],
                      bridge: str = "") -> list[PortMapping]:
        """Bind all of ``requests`` for ``key`` (a container id) and forward them to ``container_ip`` (on
        ``bridge``, for the DNAT rules)."""
        async with self._lock:
            if key in self._published:
                raise InvalidArgument(f"ports of {key} are already published")
            bound: list[tuple[PortMapping, socket.socket]] = []
            try:
                for req in requests:
                    if req.proto not in ("tcp", "udp"):
                        raise InvalidArgument(f"invalid proto: {req.proto}")
                    first = req.host_port
                    last = max(req.host_port_end, first)
                    for port in range(first, last + 1):
                        try:
                            sock = _bind(req.proto, req.host_ip, port)
                        except OSError as exc:
                            if port < last:
                                continue
                            raise _bind_error(req.proto, req.host_ip, port, exc) from exc
                        real_port = int(sock.getsockname()[1])
                        bound.append((PortMapping(req.proto, req.host_ip or "0.0.0.0", real_port, container_ip,
                                                  req.container_port), sock))
                        break
            except BaseException:
                for _, sock in bound:
                    sock.close()
                raise
            started: list[tuple[PortMapping, Forwarder]] = []
            try:
                for mapping, sock in bound:
                    fwd: Forwarder
                    if self._dnat is not None:
                        fwd = Reserved(sock)
                    elif mapping.proto == "tcp":
                        fwd = TCPForwarder(sock, container_ip, mapping.container_port)
                    else:
                        fwd = UDPForwarder(sock, container_ip, mapping.container_port)
                    await fwd.start()
                    started.append((mapping, fwd))
            except BaseException:
                for _, fwd in started:
                    await fwd.close()
                for _, sock in bound[len(started):]:
                    sock.close()
                raise
            self._published[key] = started
            if started and self._dnat is not None:
                self._bridges[key] = bridge
                try:
                    await self._program()
                except BaseException:
                    del self._published[key]
                    self._bridges.pop(key, None)
                    for _, fwd in started:
                        await fwd.close()
                    await self._program()
                    raise
            if started:
                log.info("ports published", container=key, ports=[m.to_json() for m, _ in started],
                         mode="dnat" if self._dnat is not None else "proxy")
            return [m for m, _ in started]

    async def unpublish(self, key: str) -> None:
        async with self._lock:
            entries = self._published.pop(key, [])
            self._bridges.pop(key, None)
            if entries and self._dnat is not None:
                try:
                    await self._program()
                except OSError as exc:
                    log.error("removing DNAT rules failed", container=key, error=str(exc))
        for _, fwd in entries:
            await fwd.close()

    async def close(self) -> None:
        for key in list(self._published):
            await self.unpublish(key)
