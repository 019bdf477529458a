"""The daemon's event loop (aiodock.proxy.loop): asyncio's own machinery on the RelaySelector, and relays run
inline without starving asyncio's descriptors and timers."""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from aiodock.proxy.loop import RelaySelector, new_event_loop, relay_selector

pytestmark = pytest.mark.relay_loop


only_relay_loop = pytest.mark.asyncio(loop_factories=["relay-loop"])


def on_relay_loop() -> RelaySelector:
    relays = relay_selector(asyncio.get_running_loop())
    assert relays is not None
    return relays


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_streams_timers_threads_subprocesses_and_signals_work() -> None:
    """What the daemon does on its loop, done on it: a TCP server and client, timers in order, a thread's wake-up,
    a subprocess's pipes and exit, and a signal handler."""
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"x" * 300_000)
    await writer.drain()
    writer.write_eof()
    assert await reader.read() == b"x" * 300_000
    writer.close()
    server.close()
    await server.wait_closed()

    fired: list[int] = []
    loop.call_later(0.03, fired.append, 2)
    loop.call_later(0.01, fired.append, 1)
    await asyncio.sleep(0.05)
    assert fired == [1, 2]

    assert await loop.run_in_executor(None, lambda: 6 * 7) == 42
    done = asyncio.Event()
    loop.call_soon_threadsafe(done.set)
    await asyncio.wait_for(done.wait(), 1)

    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1])",
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(b"olleh")
    assert (out, proc.returncode) == (b"hello\n", 0)

    got = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, got.set)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.wait_for(got.wait(), 1)
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


@only_relay_loop
async def test_relay_runs_inline_and_is_removed(pair: tuple[socket.socket, socket.socket]) -> None:
    """A reader relay runs at each input; a second add_reader replaces the first (as asyncio's does); asyncio
    cannot register a relay's descriptor; once removed, the relay runs no more."""
    relays = on_relay_loop()
    a, b = pair
    seen: list[bytes] = []
    relays.add_reader(a.fileno(), lambda: seen.append(b"replaced"))
    relays.add_reader(a.fileno(), lambda: seen.append(a.recv(100)))
    try:
        with pytest.raises(KeyError):
            asyncio.get_running_loop().add_reader(a.fileno(), lambda: None)
        for word in (b"one", b"two"):
            b.send(word)
            deadline = time.monotonic() + 1
            while word not in seen and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
        assert seen == [b"one", b"two"]
    finally:
        assert relays.remove_reader(a.fileno())
    assert not relays.remove_reader(a.fileno())
    b.send(b"three")
    await asyncio.sleep(0.05)
    assert seen == [b"one", b"two"] and a.recv(100) == b"three"


@only_relay_loop
async def test_reader_and_writer_relays_on_one_descriptor(pair: tuple[socket.socket, socket.socket]) -> None:
    """A writer relay runs while the socket is writable, a reader relay on the same descriptor while it is
    readable; removing one leaves the other (as asyncio's add_writer/add_reader do)."""
    relays = on_relay_loop()
    a, b = pair
    calls: list[str] = []

    def writable() -> None:
        calls.append("w")
        relays.remove_writer(a.fileno())  # once

    relays.add_reader(a.fileno(), lambda: calls.append(a.recv(10).decode()))
    relays.add_writer(a.fileno(), writable)
    try:
        assert relays.relay_count() == 1
        await asyncio.sleep(0.01)
        assert calls == ["w"]
        b.send(b"r")
        deadline = time.monotonic() + 1
        while "r" not in calls and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        assert calls == ["w", "r"]
        assert not relays.remove_writer(a.fileno())
    finally:
        assert relays.remove_reader(a.fileno())
    assert relays.relay_count() == 0


@only_relay_loop
async def test_a_relay_that_is_always_ready_starves_neither_timers_nor_other_sockets(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """A relay that makes its own descriptor readable again each time (a flood that never ends): asyncio's timers
    still fire on time and its other sockets are still served."""
    relays = on_relay_loop()
    loop = asyncio.get_running_loop()
    a, b = pair
    runs = 0

    def ping_pong() -> None:
        nonlocal runs
        runs += 1
        a.recv(1)
        b.send(b".")  # ... to itself: readable again at once

    b.send(b".")
    relays.add_reader(a.fileno(), ping_pong)
    c, d = socket.socketpair()
    c.setblocking(False)
    try:
        started = time.monotonic()
        await asyncio.sleep(0.05)
        assert time.monotonic() - started < 0.5
        assert runs > 10
        d.send(b"hi")
        assert await asyncio.wait_for(loop.sock_recv(c, 10), 1) == b"hi"
    finally:
        relays.remove_reader(a.fileno())
        c.close()
        d.close()


@only_relay_loop
async def test_work_a_relay_schedules_runs_at_once(pair: tuple[socket.socket, socket.socket]) -> None:
    """A relay that sets an asyncio Event (which schedules its waiters): the loop runs them at once, not at
    select()'s next return (here the wait_for timer, 2 s away)."""
    relays = on_relay_loop()
    a, b = pair
    got = asyncio.Event()

    def wake() -> None:
        a.recv(10)
        got.set()

    relays.add_reader(a.fileno(), wake)
    try:
        started = time.monotonic()
        asyncio.get_running_loop().call_later(0.02, b.send, b"x")
        await asyncio.wait_for(got.wait(), 2)
        assert time.monotonic() - started < 0.5
    finally:
        relays.remove_reader(a.fileno())


@only_relay_loop
async def test_a_failing_relay_is_logged_and_dropped(pair: tuple[socket.socket, socket.socket]) -> None:
    relays = on_relay_loop()
    a, b = pair

    def broken() -> None:
        raise ValueError("broken relay")

    relays.add_reader(a.fileno(), broken)
    b.send(b"x")
    deadline = time.monotonic() + 1
    while relays.relay_count() and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    assert relays.relay_count() == 0
    assert await asyncio.wait_for(asyncio.get_running_loop().sock_recv(a, 10), 1) == b"x"


def test_selector_keys_follow_the_selectors_contract(pair: tuple[socket.socket, socket.socket]) -> None:
    """The BaseSelector behaviour asyncio relies on: keys by descriptor or object, KeyError for twice or unknown,
    modify keeps the key current, and a descriptor closed before unregister is no error."""
    a, b = pair
    sel = RelaySelector()
    try:
        key = sel.register(a, selectors.EVENT_READ, "data")
        assert sel.get_key(a) is key and sel.get_key(a.fileno()) is key and len(sel.get_map()) == 1
        with pytest.raises(KeyError):
            sel.register(a.fileno(), selectors.EVENT_WRITE)
        with pytest.raises(KeyError):
            sel.get_key(b)
        with pytest.raises(ValueError):
            sel.register(b, 0)
        assert sel.select(0) == []
        key = sel.modify(a, selectors.EVENT_READ | selectors.EVENT_WRITE, "more")
        assert sel.select(0) == [(key, selectors.EVENT_WRITE)] and key.data == "more"
        b.send(b"x")
        assert sel.select(1) == [(key, selectors.EVENT_READ | selectors.EVENT_WRITE)]
        started = time.monotonic()
        sel.modify(a, selectors.EVENT_READ)
        a.recv(1)
        assert sel.select(0.05) == [] and time.monotonic() - started >= 0.05
        c, d = socket.socketpair()
        closed_key = sel.register(c, selectors.EVENT_READ)
        c.close()
        assert sel.unregister(c) == closed_key
        d.close()
        assert sel.unregister(a) is not None and len(sel.get_map()) == 0
    finally:
        sel.close()


def test_only_the_daemons_loop_has_relays() -> None:
    ours, default = new_event_loop(), asyncio.new_event_loop()
    try:
        assert isinstance(relay_selector(ours), RelaySelector)
        assert relay_selector(default) is None
    finally:
        ours.close()
        default.close()
