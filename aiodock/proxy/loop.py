"""The daemon's event loop: asyncio's selector loop on an epoll selector that also runs the proxy's relays inline.

A datagram or a small TCP message through a published port is two hops for the proxy (client to container,
container to client), and on asyncio's own loop each hop costs a whole loop iteration: the selector builds its
event list, the loop queues a Handle and runs it through a context. That dispatch, not the forwarding, is most of
the proxy's user time per message, and it made a one-in-flight UDP round trip slower than docker-proxy's goroutines.

``RelaySelector`` is a complete ``selectors.BaseSelector`` (asyncio registers its sockets with it as with any
selector) that also takes *relays*: reader and writer callbacks on descriptors of the same epoll set, registered
with asyncio's own method names (``add_reader``, ``remove_reader``, ``add_writer``, ``remove_writer``) so a
forwarder uses the loop or the selector alike. A relay's callback runs as soon as epoll reports its descriptor,
inside ``select()``; while only relays are ready, ``select()`` polls again with what is left of asyncio's timeout
instead of returning to the loop. asyncio still gets every event of its own descriptors and every timer at its
time, and ``select(0)`` (callbacks pending) polls once.

A relay callback must be short and non-blocking: plain socket reads and writes. Should one schedule asyncio work
(``call_soon``, a timer, a future's result), the RelayEventLoop marks it and ``select()`` returns at once so that
the loop runs it. An exception from a relay is logged and the descriptor's relays are dropped. On any other loop
``relay_selector()`` answers None and the forwarders use the loop's ``add_reader`` and ``add_writer``.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import select
import selectors
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVarTuple, Unpack

from aiodock.log import get_logger

log = get_logger("aiodock.proxy")

Relay = Callable[[], object]


class Watcher(Protocol):
    """What the forwarders register their sockets with: the RelaySelector, or any asyncio loop."""

    def add_reader(self, fd: int, callback: Relay, /) -> None: ...
    def remove_reader(self, fd: int, /) -> bool: ...
    def add_writer(self, fd: int, callback: Relay, /) -> None: ...
    def remove_writer(self, fd: int, /) -> bool: ...


FileObj = Any  # what selectors accept: an int descriptor or an object with fileno()

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_Ts = TypeVarTuple("_Ts")


def _fd(fileobj: FileObj) -> int:
    fd = fileobj if isinstance(fileobj, int) else int(fileobj.fileno())
    if fd < 0:
        raise ValueError(f"invalid file descriptor: {fd}")
    return fd


def _epoll_mask(events: int) -> int:
    return (_IN if events & selectors.EVENT_READ else 0) | (_OUT if events & selectors.EVENT_WRITE else 0)


class _KeyMap(Mapping[FileObj, selectors.SelectorKey]):
    def __init__(self, keys: dict[int, selectors.SelectorKey]) -> None:
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[FileObj]:
        return iter(self._keys)

    def __getitem__(self, fileobj: FileObj) -> selectors.SelectorKey:
        try:
            return self._keys[_fd(fileobj)]
        except (ValueError, TypeError, AttributeError):  # e.g. a socket closed since: found by the object itself
            for key in self._keys.values():
                if key.fileobj is fileobj:
                    return key
            raise KeyError(fileobj) from None


class RelaySelector(selectors.BaseSelector):
    """An epoll selector for asyncio that runs registered relays inline (see the module's docstring)."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._keys: dict[int, selectors.SelectorKey] = {}
        self._relays: dict[int, list[Relay | None]] = {}  # fd -> [reader, writer]
        self._map = _KeyMap(self._keys)
        self.scheduled = False  # set by RelayEventLoop when a callback is scheduled: select() returns

    # --- selectors.BaseSelector, for asyncio ---

    def register(self, fileobj: FileObj, events: int, data: Any = None) -> selectors.SelectorKey:
        if not events or events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        fd = _fd(fileobj)
        if fd in self._keys or fd in self._relays:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        self._epoll.register(fd, _epoll_mask(events))
        key = self._keys[fd] = selectors.SelectorKey(fileobj, fd, events, data)
        return key

    def unregister(self, fileobj: FileObj) -> selectors.SelectorKey:
        key = self._map[fileobj]
        del self._keys[key.fd]
        try:
            self._epoll.unregister(key.fd)
        except OSError:  # already closed: the kernel dropped it from the set
            pass
        return key

    def modify(self, fileobj: FileObj, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._map[fileobj]
        if events != key.events:
            if not events or events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE):
                raise ValueError(f"Invalid events: {events!r}")
            self._epoll.modify(key.fd, _epoll_mask(events))
        key = self._keys[key.fd] = key._replace(events=events, data=data)
        return key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            wait, deadline = -1.0, 0.0
        elif timeout <= 0:
            wait, deadline = 0.0, 0.0
        else:  # epoll counts milliseconds: round up, or a timer due in 0.3 ms would spin
            wait, deadline = math.ceil(timeout * 1e3) * 1e-3, time.monotonic() + timeout
        poll, keys, relays = self._epoll.poll, self._keys, self._relays
        self.scheduled = False
        while True:
            try:
                events = poll(wait, len(keys) + len(relays) or 1)
            except InterruptedError:
                return []
            ready: list[tuple[selectors.SelectorKey, int]] = []
            for fd, event in events:
                relay = relays.get(fd)
                if relay is not None:
                    self._run(fd, event, relay)
                    continue
                key = keys.get(fd)
                if key is not None:
                    mask = (selectors.EVENT_WRITE if event & ~_IN else 0) | (selectors.EVENT_READ if event & ~_OUT else 0)
                    ready.append((key, mask & key.events))
            if ready or not events or wait == 0 or self.scheduled:
                return ready
            if wait > 0:  # only relays were ready: poll again with what is left of asyncio's timeout
                left = deadline - time.monotonic()
                if left <= 0:
                    return ready
                wait = math.ceil(left * 1e3) * 1e-3

    def close(self) -> None:
        self._keys.clear()
        self._relays.clear()
        self._epoll.close()

    def get_map(self) -> Mapping[FileObj, selectors.SelectorKey]:
        return self._map

    # --- relays ---

    def _run(self, fd: int, event: int, relay: list[Relay | None]) -> None:
        """The reader on input, error or hang-up, then the writer (if the reader left it) on output, error or
        hang-up: asyncio's own reading of an epoll event."""
        try:
            reader = relay[0]
            if reader is not None and event & ~_OUT:
                reader()
            writer = relay[1]
            if writer is not None and event & ~_IN and self._relays.get(fd) is relay:
                writer()
        except Exception:
            log.exception("relay failed, dropped", fd=fd)
            self._drop(fd)

    def _watch(self, fd: int, slot: int, callback: Relay) -> None:
        if fd in self._keys:
            raise KeyError(f"FD {fd} is already registered")
        relay = self._relays.get(fd)
        if relay is None:
            self._epoll.register(fd, _IN if slot == 0 else _OUT)
            self._relays[fd] = relay = [None, None]
        elif relay[slot] is None:
            self._epoll.modify(fd, _IN | _OUT)
        relay[slot] = callback

    def _unwatch(self, fd: int, slot: int) -> bool:
        relay = self._relays.get(fd)
        if relay is None or relay[slot] is None:
            return False
        relay[slot] = None
        other = relay[1 - slot]
        try:
            if other is None:
                del self._relays[fd]
                self._epoll.unregister(fd)
            else:
                self._epoll.modify(fd, _IN if slot == 1 else _OUT)  # what the other callback wants
        except OSError:  # already closed: the kernel dropped it from the set
            pass
        return True

    def _drop(self, fd: int) -> None:
        if self._relays.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass

    def add_reader(self, fd: int, callback: Relay, /) -> None:
        """Run ``callback`` inline whenever ``fd`` is readable (level-triggered: until it has read what is queued)."""
        self._watch(fd, 0, callback)

    def remove_reader(self, fd: int, /) -> bool:
        return self._unwatch(fd, 0)

    def add_writer(self, fd: int, callback: Relay, /) -> None:
        """Run ``callback`` inline whenever ``fd`` is writable."""
        self._watch(fd, 1, callback)

    def remove_writer(self, fd: int, /) -> bool:
        return self._unwatch(fd, 1)

    def relay_count(self) -> int:
        """Descriptors with a relay."""
        return len(self._relays)


class RelayEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector event loop on a RelaySelector: what the daemon runs on."""

    def __init__(self) -> None:
        self.relays = RelaySelector()
        super().__init__(self.relays)

    def call_soon(self, callback: Callable[[Unpack[_Ts]], object], *args: *_Ts,
                  context: contextvars.Context | None = None) -> asyncio.Handle:
        self.relays.scheduled = True
        return super().call_soon(callback, *args, context=context)

    def call_at(self, when: float, callback: Callable[[Unpack[_Ts]], object], *args: *_Ts,
                context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        self.relays.scheduled = True
        return super().call_at(when, callback, *args, context=context)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop factory for ``asyncio.Runner``."""
    return RelayEventLoop()


def relay_selector(loop: asyncio.AbstractEventLoop) -> RelaySelector | None:
    """The loop's RelaySelector, or None on a loop that has none."""
    return loop.relays if isinstance(loop, RelayEventLoop) else None


def watcher(loop: asyncio.AbstractEventLoop) -> Watcher:
    """Where a forwarder registers its sockets: the loop's RelaySelector (inline), else the loop itself."""
    return relay_selector(loop) or loop
