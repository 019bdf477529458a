"""UDP forwarding for one published port, with a flow table: each client address gets its own connected socket
to the container, so replies go back to the right client. Idle flows expire after 90 s (as Docker's proxy).

The sockets are read straight from the event loop's reader callbacks, a batch of datagrams per wake-up (asyncio's
datagram transport takes one per wake-up), and written with non-blocking sends: a datagram that finds a socket's
send buffer full, or a full flow table, is dropped, never queued.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import socket
import termios
import time

IDLE_TIMEOUT = 90.0
MAX_FLOWS = 1024
BATCH = 64  # datagrams read per wake-up, so one busy socket cannot starve the loop
MAX_DATAGRAM = 65535

Addr = tuple[str, int]


_NEXT_SIZE = array.array("i", [0])  # SIOCINQ's answer (the loop is single-threaded)


def _more_queued(fd: int) -> bool:
    """Whether another datagram waits on the socket (SIOCINQ: the size of the next one; 0 when none). Asked once
    per wake-up, after the first datagram: cheaper than the failing read that would find out, as one datagram per
    wake-up is the common case; a batch still ends on that failing read."""
    fcntl.ioctl(fd, termios.FIONREAD, _NEXT_SIZE, True)
    return _NEXT_SIZE[0] > 0


class _Flow:
    """One client's connected socket to the container; what comes back goes to that client."""

    def __init__(self, owner: UDPForwarder, client: Addr, sock: socket.socket) -> None:
        self.owner = owner
        self.client = client
        self.sock = sock
        self.last = time.monotonic()
        owner.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        view, fd, sock, reply, client = self.owner.view, self.sock.fileno(), self.sock, self.owner.reply, self.client
        for index in range(BATCH):
            try:
                size = sock.recv_into(view)
            except OSError:  # EAGAIN, or e.g. ICMP port unreachable from the container: keep the flow
                break
            reply(view[:size], client)
            if index == 0 and not _more_queued(fd):
                break
        self.last = time.monotonic()

    def send(self, data: memoryview) -> None:
        try:
            self.sock.send(data)
        except OSError:  # EAGAIN (buffer full) or an ICMP error: dropped
            pass

    def close(self) -> None:
        self.owner.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class UDPForwarder:
    def __init__(self, sock: socket.socket, target_ip: str, target_port: int, idle_timeout: float = IDLE_TIMEOUT):
        self._sock = sock
        self.target = (target_ip, target_port)
        self.idle_timeout = idle_timeout
        self._flows: dict[Addr, _Flow] = {}
        self.view = memoryview(bytearray(MAX_DATAGRAM))  # every datagram is read into this and sent on at once
        self._reaper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "UDPForwarder.start() first"
        return self._loop

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._readable)
        self._reaper = asyncio.create_task(self._reap())

    def _readable(self) -> None:
        now = time.monotonic()
        view, sock, fd, flows = self.view, self._sock, self._sock.fileno(), self._flows
        for index in range(BATCH):
            try:
                size, addr = sock.recvfrom_into(view)
            except OSError:  # EAGAIN
                return
            client = (addr[0], addr[1])
            flow = flows.get(client)
            if flow is None:
                flow = self._open_flow(client)
            if flow is not None:
                flow.last = now
                flow.send(view[:size])
            if index == 0 and not _more_queued(fd):
                return

    def _open_flow(self, client: Addr) -> _Flow | None:
        if len(self._flows) >= MAX_FLOWS:
            return None
        sock = socket.socket(socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(self.target)  # a UDP connect sends nothing: it only fixes the peer
        except OSError:
            sock.close()
            return None
        flow = self._flows[client] = _Flow(self, client, sock)
        return flow

    def reply(self, data: memoryview, client: Addr) -> None:
        try:
            self._sock.sendto(data, client)
        except OSError:  # EAGAIN (buffer full): dropped
            pass

    def flow_count(self) -> int:
        return len(self._flows)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(self.idle_timeout / 3, 30.0))
            now = time.monotonic()
            for client, flow in list(self._flows.items()):
                if now - flow.last >= self.idle_timeout:
                    flow.close()
                    del self._flows[client]

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        for flow in self._flows.values():
            flow.close()
        self._flows.clear()
        if self._loop is not None and self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
