"""The embedded DNS server Docker gives every container on a user-defined network: 127.0.0.11:53, UDP and TCP,
inside the container's network namespace, served by the daemon's event loop.

The sockets are made in a worker thread that enters the container's namespace for the duration of the bind
(a socket stays in the namespace it was created in) and are then handed to asyncio. The container's names (its
name, network aliases, short id) are answered from a :class:`Zone` the engine supplies; every other question is
forwarded from the daemon's (host) namespace to the container's external servers, over UDP with a TCP retry when
the answer is truncated. A minimal DNS message codec of our own (RFC 1035) is all that is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiodock.log import get_logger
from aiodock.network import netns

log = get_logger("aiodock.network.dns")

ADDRESS = "127.0.0.11"
PORT = 53
TTL = 600  # Docker's answers carry a TTL of 600 seconds
FORWARD_TIMEOUT = 3.0
TCP_IDLE = 10.0

TYPE_A, TYPE_PTR, TYPE_AAAA, TYPE_OPT = 1, 12, 28, 41
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
_QR, _AA, _TC, _RD, _RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080


class FormatError(ValueError):
    """A message that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    name: str  # lower case, no trailing dot
    qtype: int
    qclass: int
    question: bytes  # the question section as received (echoed in answers)
    udp_size: int  # the asker's UDP payload limit (512, or its EDNS0 size)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF


@dataclass(frozen=True, slots=True)
class Zone:
    """What one container may resolve locally: ``lookup(name)`` gives the IPv4 addresses of a name on a network
    the container is on (None: not a local name), ``reverse(ip)`` the name of such an address, ``upstreams()`` the
    external servers other questions go to."""

    lookup: Callable[[str], list[str] | None]
    reverse: Callable[[str], str | None]
    upstreams: Callable[[], list[str]]


# ---- codec ------------------------------------------------------------------------------------------------------

def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """A (possibly compressed) name at ``offset``: (dotted name, offset just past it in the message)."""
    labels: list[str] = []
    end = -1
    jumps = 0
    while True:
        if offset >= len(data):
            raise FormatError("name runs past the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data) or jumps > 32:
                raise FormatError("bad compression pointer")
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            jumps += 1
            continue
        if length & 0xC0:
            raise FormatError("bad label type")
        offset += 1
        if length == 0:
            break
        if offset + length > len(data):
            raise FormatError("label runs past the message")
        labels.append(data[offset:offset + length].decode("ascii", "replace"))
        offset += length
    return ".".join(labels), (end if end >= 0 else offset)


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.strip(".").split("."):
        if not label:
            continue
        raw = label.encode("ascii", "replace")[:63]
        out += bytes([len(raw)]) + raw
    return bytes(out) + b"\0"


def parse_query(data: bytes) -> Query:
    if len(data) < 12:
        raise FormatError("short header")
    qid, flags, qdcount, ancount, nscount, arcount = struct.unpack("!6H", data[:12])
    if qdcount != 1:
        raise FormatError("exactly one question is expected")
    name, offset = _read_name(data, 12)
    if offset + 4 > len(data):
        raise FormatError("short question")
    qtype, qclass = struct.unpack("!HH", data[offset:offset + 4])
    question = data[12:offset + 4]
    udp_size = 512
    try:  # an EDNS0 OPT record in the additional section raises the UDP limit
        pos = offset + 4
        for _ in range(ancount + nscount + arcount):
            _, pos = _read_name(data, pos)
            rtype, rclass, _ttl, rdlen = struct.unpack("!HHIH", data[pos:pos + 10])
            if rtype == TYPE_OPT:
                udp_size = max(512, rclass)
            pos += 10 + rdlen
    except (FormatError, struct.error):
        pass
    return Query(id=qid, flags=flags, name=name.lower().rstrip("."), qtype=qtype, qclass=qclass,
                 question=question, udp_size=udp_size)


def response(query: Query, rcode: int, answers: list[tuple[int, bytes]] | None = None, *,
             authoritative: bool = True) -> bytes:
    """An answer to ``query``: each answer is (type, rdata) for the question's name."""
    flags = _QR | (query.flags & (0x7800 | _RD)) | _RA | (rcode & 0xF)
    if authoritative:
        flags |= _AA
    answers = answers or []
    out = bytearray(struct.pack("!6H", query.id, flags, 1, len(answers), 0, 0))
    out += query.question
    for rtype, rdata in answers:
        out += b"\xc0\x0c" + struct.pack("!HHIH", rtype, CLASS_IN, TTL, len(rdata)) + rdata
    return bytes(out)


def truncated(query: Query) -> bytes:
    """The header and question only, with TC set: the asker retries over TCP."""
    flags = _QR | (query.flags & (0x7800 | _RD)) | _RA | _TC
    return struct.pack("!6H", query.id, flags, 1, 0, 0, 0) + query.question


def error(data: bytes, rcode: int) -> bytes | None:
    """An error answer to a message we could not parse (just its id and opcode); None when there is no header."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack("!HH", data[:4])
    if flags & _QR:
        return None
    return struct.pack("!6H", qid, _QR | (flags & (0x7800 | _RD)) | _RA | rcode, 0, 0, 0, 0)


def ptr_address(name: str) -> str | None:
    """The IPv4 address of a reverse name (4.3.2.1.in-addr.arpa), or None."""
    suffix = ".in-addr.arpa"
    if not name.endswith(suffix):
        return None
    parts = name[: -len(suffix)].split(".")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(parts))))
    except ValueError:
        return None


# ---- forwarding -------------------------------------------------------------------------------------------------

async def _forward_udp(server: str, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    with sock:
        sock.connect((server, PORT))
        await loop.sock_sendall(sock, data)
        async with asyncio.timeout(FORWARD_TIMEOUT):
            while True:
                reply = await loop.sock_recv(sock, 65535)
                if len(reply) >= 12 and reply[:2] == data[:2]:
                    return reply


async def _forward_tcp(server: str, data: bytes) -> bytes:
    async with asyncio.timeout(FORWARD_TIMEOUT):
        reader, writer = await asyncio.open_connection(server, PORT)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(length)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def forward(servers: list[str], data: bytes, tcp: bool) -> bytes | None:
    """The first answer of the external servers, tried in order (UDP, then TCP on truncation); None: no answer."""
    for server in servers[:3]:
        try:
            if not tcp:
                reply = await _forward_udp(server, data)
                if not struct.unpack("!H", reply[2:4])[0] & _TC:
                    return reply
            return await _forward_tcp(server, data)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error) as exc:
            log.debug("dns forward failed", server=server, error=str(exc))
    return None


# ---- answering --------------------------------------------------------------------------------------------------

async def answer(zone: Zone, data: bytes, tcp: bool) -> bytes | None:
    """The reply to one message (None: drop it)."""
    try:
        query = parse_query(data)
    except FormatError:
        return error(data, FORMERR)
    if query.flags & _QR:
        return None
    if query.opcode != 0:
        return response(query, NOTIMP)
    reply: bytes | None = None
    if query.qclass == CLASS_IN and query.qtype in (TYPE_A, TYPE_AAAA):
        found = zone.lookup(query.name)
        if found is not None:  # a container's name: its IPv4 addresses; no IPv6 ones (NOERROR, no answer)
            rdata = [(TYPE_A, ipaddress.IPv4Address(a).packed) for a in found] if query.qtype == TYPE_A else []
            reply = response(query, NOERROR, rdata)
    elif query.qclass == CLASS_IN and query.qtype == TYPE_PTR:
        address = ptr_address(query.name)
        name = zone.reverse(address) if address else None
        if name is not None:
            reply = response(query, NOERROR, [(TYPE_PTR, encode_name(name))])
    if reply is None:
        servers = zone.upstreams()
        if not servers:
            return response(query, REFUSED, authoritative=False)
        reply = await forward(servers, data, tcp)
        if reply is None:
            return response(query, SERVFAIL, authoritative=False)
    if not tcp and len(reply) > query.udp_size:
        return truncated(query)
    return reply


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._spawn(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await answer(self.server.zone, data, tcp=False)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


def bind_sockets(netns_path: Path | str) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets on 127.0.0.11:53 inside the namespace at ``netns_path``. Blocking."""
    with netns.entered(netns_path):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        for sock in (udp, tcp):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ADDRESS, PORT))
            sock.setblocking(False)
        tcp.listen(64)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


class DnsServer:
    """One container's resolver; ``start`` binds in its namespace, ``close`` closes every socket."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, netns_path: Path | str) -> None:
        udp, tcp = await asyncio.to_thread(bind_sockets, netns_path)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        self._udp = transport
        try:
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)
        except BaseException:
            tcp.close()
            await self.close()
            raise

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                reply = await answer(self.zone, data, tcp=True)
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
