"""Issue #5: the proxy's TCP and UDP forwarders by themselves, on loopback, against servers in this test's loop.

The published-port tests in test_network.py go through real containers; these look at what only shows at this
level: byte-exact bulk copies in both directions (the spliced path), half-close in the middle of a bulk transfer,
no file descriptor or callback left after many short connections, a connect to the container that is refused, one
still in progress after the accept callback (completed later, or timed out), and the UDP flow table's expiry.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator

import pytest

from aiodock.proxy.loop import relay_selector
from aiodock.proxy.tcp import TCPForwarder
from aiodock.proxy.udp import UDPForwarder

pytestmark = pytest.mark.relay_loop  # each test on asyncio's loop and on the daemon's

BULK = 48 << 20


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def echo_until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo everything, then half-close after the client's EOF (its digest of what it saw comes last)."""
    seen = hashlib.sha256()
    while data := await reader.read(1 << 20):
        seen.update(data)
        writer.write(data)
        await writer.drain()
    writer.write(seen.digest())
    writer.write_eof()
    await writer.drain()
    writer.close()


@pytest.fixture
async def forwarder() -> AsyncIterator[tuple[TCPForwarder, int]]:
    """A TCPForwarder on an ephemeral loopback port in front of echo_until_eof."""
    server = await asyncio.start_server(echo_until_eof, "127.0.0.1", 0)
    target = server.sockets[0].getsockname()[1]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    fwd = TCPForwarder(listener, "127.0.0.1", target)
    await fwd.start()
    try:
        yield fwd, listener.getsockname()[1]
    finally:
        await fwd.close()
        server.close()
        await server.wait_closed()


def pattern(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(4, "big")).digest() * (1 << 15)  # 1 MiB, different for each i


async def test_bulk_copy_both_ways_is_byte_exact_and_spliced(forwarder: tuple[TCPForwarder, int]) -> None:
    fwd, port = forwarder
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = hashlib.sha256()
    spliced = {"up": False, "down": False}

    async def send() -> None:
        for i in range(BULK >> 20):
            data = pattern(i)
            sent.update(data)
            writer.write(data)
            await writer.drain()
            for relay in fwd._relays:
                spliced["up"] |= relay.up.pipe is not None
                spliced["down"] |= relay.down.pipe is not None
        writer.write_eof()  # half-close while the echo is still streaming back

    async def receive() -> bytes:
        chunks = []
        while data := await reader.read(1 << 20):
            chunks.append(data)
        return b"".join(chunks)

    async with asyncio.timeout(60):
        _, echoed = await asyncio.gather(send(), receive())
    writer.close()
    assert len(echoed) == BULK + 32
    assert hashlib.sha256(echoed[:BULK]).digest() == sent.digest(), "the echo came back altered"
    assert echoed[BULK:] == sent.digest(), "the server saw other bytes than were sent"
    assert spliced == {"up": True, "down": True}, "bulk data should go through splice(2) both ways"


async def test_small_exchanges_copy_and_connections_leave_nothing(forwarder: tuple[TCPForwarder, int]) -> None:
    fwd, port = forwarder
    loop = asyncio.get_running_loop()
    before = open_fds()
    for i in range(200):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        message = f"ping {i}".encode()
        writer.write(message)
        writer.write_eof()
        async with asyncio.timeout(5):
            answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        assert answer == message + hashlib.sha256(message).digest()
    async with asyncio.timeout(5):
        while fwd._relays:
            await asyncio.sleep(0.01)
    assert open_fds() <= before, "a connection left file descriptors open"
    registered = {key.fd for key in loop._selector.get_map().values()}  # type: ignore[attr-defined]
    assert registered <= {int(fd) for fd in before}, "a connection left a callback registered"
    relays = relay_selector(loop)
    if relays is not None:  # the daemon's loop: the listener's relay only
        assert relays.relay_count() == 1, "a connection left a relay registered"


async def test_connection_refused_by_the_container_closes_the_client() -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    fwd, listener = await forwarder_to(dead.getsockname()[1])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        async with asyncio.timeout(5):
            try:
                assert await reader.read() == b""
            except ConnectionResetError:
                pass
        writer.close()
        assert not fwd._relays
    finally:
        await fwd.close()
        dead.close()


class UDPEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"echo:" + data, addr)  # type: ignore[attr-defined]


async def test_udp_flows_expire_when_idle() -> None:
    """The UDP forwarder's flow table on loopback: one flow per client, dropped after the idle timeout
    (90 s in the daemon; shortened here)."""
    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(UDPEcho, local_addr=("127.0.0.1", 0))
    target = server.get_extra_info("sockname")[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    fwd = UDPForwarder(sock, "127.0.0.1", target, idle_timeout=0.3)
    await fwd.start()
    try:
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for i, c in enumerate(clients):
            c.setblocking(False)
            await loop.sock_sendto(c, f"c{i}".encode(), sock.getsockname())
            async with asyncio.timeout(2):
                assert (await loop.sock_recv(c, 100)) == f"echo:c{i}".encode()
        assert fwd.flow_count() == 2
        await asyncio.sleep(0.6)
        assert fwd.flow_count() == 0
        for c in clients:
            c.close()
    finally:
        await fwd.close()
        server.close()


async def test_udp_bursts_from_several_clients_come_back_to_each() -> None:
    """Datagrams sent flat out by three clients at once all reach the container and each reply goes back to its
    own client (one datagram per readiness event on the daemon's loop, where every socket is a relay). 150 in
    flight: a default receive buffer holds about 250 small datagrams, and the echo server's must not overflow."""
    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(UDPEcho, local_addr=("127.0.0.1", 0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    fwd = UDPForwarder(sock, "127.0.0.1", server.get_extra_info("sockname")[1])
    await fwd.start()
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for c in clients:
            c.setblocking(False)
            c.connect(sock.getsockname())
        for n in range(50):
            for i, c in enumerate(clients):
                c.send(f"{i}:{n}".encode())
        for i, c in enumerate(clients):
            got = []
            async with asyncio.timeout(5):
                while len(got) < 50:
                    got.append(await loop.sock_recv(c, 100))
            assert got == [f"echo:{i}:{n}".encode() for n in range(50)]
        assert fwd.flow_count() == 3
        relays = relay_selector(loop)
        if relays is not None:
            assert relays.relay_count() == 1 + 3
    finally:
        for c in clients:
            c.close()
        await fwd.close()
        server.close()
    if relays is not None:
        assert relays.relay_count() == 0


async def forwarder_to(target_port: int) -> tuple[TCPForwarder, socket.socket]:
    """A started TCPForwarder on an ephemeral loopback port in front of ``target_port``, and its listener."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    fwd = TCPForwarder(listener, "127.0.0.1", target_port)
    await fwd.start()
    return fwd, listener


def full_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A listener whose accept queue is full (listen(0) queues one connection, which is never accepted): a SYN to it
    is dropped, so a connect stays in progress until the queue has room again (the SYN is retransmitted after 1 s)."""
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen(0)
    filler = socket.socket()
    filler.setblocking(False)
    filler.connect_ex(target.getsockname())
    return target, [filler]


async def test_connect_still_in_progress_completes_later() -> None:
    """The container does not answer the SYN at once: the relay waits for the connect's writer callback instead of
    the accept callback's quick check, and the client's bytes sent meanwhile still arrive."""
    target, fillers = full_listener()
    fwd, listener = await forwarder_to(target.getsockname()[1])
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        writer.write(b"sent before the container answered")
        writer.write_eof()
        await asyncio.sleep(0.3)
        assert len(fwd._relays) == 1 and not next(iter(fwd._relays)).up.reading  # still connecting
        target.setblocking(False)
        for _ in fillers:  # make room: the retransmitted SYN gets through
            (await loop.sock_accept(target))[0].close()
        async with asyncio.timeout(10):
            server, _ = await loop.sock_accept(target)
            received = b""
            while chunk := await loop.sock_recv(server, 1024):
                received += chunk
        assert received == b"sent before the container answered"
        server.close()
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # the container's close reaches the client
        writer.close()
    finally:
        await fwd.close()
        for filler in fillers:
            filler.close()
        target.close()


async def test_connect_that_never_completes_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiodock.proxy.tcp as tcp

    monkeypatch.setattr(tcp, "CONNECT_TIMEOUT", 0.5)
    target, fillers = full_listener()
    fwd, listener = await forwarder_to(target.getsockname()[1])
    before = open_fds()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        async with asyncio.timeout(5):
            try:
                assert await reader.read() == b""  # closed by the proxy after the timeout
            except ConnectionResetError:
                pass
        writer.close()
        await writer.wait_closed()
        assert not fwd._relays
        assert open_fds() <= before
    finally:
        await fwd.close()
        for filler in fillers:
            filler.close()
        target.close()
