"""UDP forwarding for one published port, with a flow table: each client address gets its own connected socket
to the container, so replies go back to the right client. Idle flows expire after 90 s (as Docker's proxy).

On the daemon's loop (proxy/loop.py) the sockets are relays: epoll's readiness runs the read-and-send inline,
without a pass through asyncio's loop; on any other loop they are the loop's reader callbacks (correct, slower).
A socket read once per readiness event costs no failing read or queue probe per datagram, which is what a lone
datagram (a request and its answer) wants; a socket made ready again within BURST_GAP_NS of its last event is in a
burst, and that event drains what is queued (up to BATCH). Datagrams are written with non-blocking sends: one
that finds a socket's send buffer full, or a full flow table, is dropped, never queued.
"""

from __future__ import annotations

import asyncio
import socket
import time

from aiodock.proxy.loop import Watcher, watcher

IDLE_TIMEOUT = 90.0
MAX_FLOWS = 1024
MAX_DATAGRAM = 65535
BATCH = 64  # datagrams read per event in a burst, so one busy socket cannot starve the others
BURST_GAP_NS = 50_000  # readiness events closer than this on one socket: a burst

Addr = tuple[str, int]


class _Flow:
    """One client's connected socket to the container; what comes back goes to that client."""

    def __init__(self, owner: UDPForwarder, client: Addr, sock: socket.socket) -> None:
        self.owner = owner
        self.client = client
        self.sock = sock
        self.last = time.monotonic_ns()
        self.ready_at = 0  # the last readiness event, to tell a burst
        owner.io.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        now = time.monotonic_ns()
        count = BATCH if now - self.ready_at < BURST_GAP_NS else 1
        self.ready_at = self.last = now
        view, recv_into, reply, client = self.owner.view, self.sock.recv_into, self.owner.reply, self.client
        for _ in range(count):
            try:
                size = recv_into(view)
            except OSError:  # EAGAIN, or e.g. ICMP port unreachable from the container: keep the flow
                return
            reply(view[:size], client)

    def send(self, data: memoryview) -> None:
        try:
            self.sock.send(data)
        except OSError:  # EAGAIN (buffer full) or an ICMP error: dropped
            pass

    def close(self) -> None:
        self.owner.io.remove_reader(self.sock.fileno())
        self.sock.close()


class UDPForwarder:
    def __init__(self, sock: socket.socket, target_ip: str, target_port: int, idle_timeout: float = IDLE_TIMEOUT):
        self._sock = sock
        self.target = (target_ip, target_port)
        self.idle_timeout = idle_timeout
        self._flows: dict[Addr, _Flow] = {}
        self.view = memoryview(bytearray(MAX_DATAGRAM))  # every datagram is read into this and sent on at once
        self._reaper: asyncio.Task[None] | None = None
        self._ready_at = 0
        self._io: Watcher | None = None

    @property
    def io(self) -> Watcher:
        assert self._io is not None, "UDPForwarder.start() first"
        return self._io

    async def start(self) -> None:
        self._io = watcher(asyncio.get_running_loop())
        self._sock.setblocking(False)
        self._io.add_reader(self._sock.fileno(), self._readable)
        self._reaper = asyncio.create_task(self._reap())

    def _readable(self) -> None:
        now = time.monotonic_ns()
        count = BATCH if now - self._ready_at < BURST_GAP_NS else 1
        self._ready_at = now
        view, recvfrom_into, flows = self.view, self._sock.recvfrom_into, self._flows
        for _ in range(count):
            try:
                size, addr = recvfrom_into(view)
            except OSError:  # EAGAIN
                return
            client = (addr[0], addr[1])
            flow = flows.get(client)
            if flow is None:
                flow = self._open_flow(client)
                if flow is None:
                    continue
            flow.last = now
            flow.send(view[:size])

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
            oldest = time.monotonic_ns() - int(self.idle_timeout * 1e9)
            for client, flow in list(self._flows.items()):
                if flow.last <= oldest:
                    flow.close()
                    del self._flows[client]

    async def close(self) -> None:
        if self._reaper is not None:  # started
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
            for flow in self._flows.values():
                flow.close()
            self._flows.clear()
            self.io.remove_reader(self._sock.fileno())
        self._sock.close()
