"""A persisted IPv4 address allocator for one network: <dir>/<network>.json, written atomically. Blocking.

The gateway and the network/broadcast addresses are never handed out. Allocation goes round-robin from the
last address given (as Docker's IPAM does), so a freed address is not reused at once. A fixed address (--ip) is
reserved for its container for as long as the container exists (running or not) and is never handed to anybody
else; it is allocated to the container while it runs.
"""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path
from typing import Any

from aiodock.errors import Conflict, FailedPrecondition, InvalidArgument
from aiodock.util import atomicfile


class Pool:
    def __init__(self, path: Path, subnet: str, gateway: str) -> None:
        self.path = path
        self.network = ipaddress.IPv4Network(subnet, strict=False)
        self.gateway = ipaddress.IPv4Address(gateway)
        if self.gateway not in self.network:
            raise InvalidArgument(f"no matching subnet for gateway {gateway}")
        self._lock = threading.Lock()
        self._owners: dict[str, str] = {}
        self._reserved: dict[str, str] = {}  # fixed address -> owner
        self._last = int(self.gateway)
        self._load()

    def _load(self) -> None:
        try:
            raw: dict[str, Any] = atomicfile.read_json(self.path)
        except (FileNotFoundError, ValueError):
            return
        if raw.get("subnet") != str(self.network):
            return  # the network was re-addressed: old allocations are meaningless
        self._owners = {str(k): str(v) for k, v in (raw.get("allocated") or {}).items()}
        self._reserved = {str(k): str(v) for k, v in (raw.get("reserved") or {}).items()}
        self._last = int(ipaddress.IPv4Address(raw.get("last") or str(self.gateway)))

    def _save(self) -> None:
        atomicfile.write_json(self.path, {"subnet": str(self.network), "gateway": str(self.gateway),
                                          "last": str(ipaddress.IPv4Address(self._last)), "allocated": self._owners, "reserved": self._reserved})

    def _check_fixed(self, owner: str, want: str) -> str:
        """Docker's errors for a requested address: not IPv4 / outside the subnet (400), taken (403)."""
        try:
            addr = ipaddress.IPv4Address(want)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {want}") from None
        if addr not in self.network:
            raise InvalidArgument(f"Invalid address {want}: It does not belong to any of this network's subnets")
        text = str(addr)
        if (addr in (self.gateway, self.network.network_address, self.network.broadcast_address)
                or self._owners.get(text, owner) != owner or self._reserved.get(text, owner) != owner):
            raise Conflict("Address already in use")
        return text

    def reserve(self, owner: str, want: str) -> str:
        """Keep ``want`` for ``owner`` (its --ip) until :meth:`unreserve`; the address may not be in use."""
        with self._lock:
            text = self._check_fixed(owner, want)
            changed = self._reserved.get(text) != owner or any(
                w == owner and a != text for a, w in self._reserved.items())
            if changed:
                self._reserved = {a: w for a, w in self._reserved.items() if w != owner}
                self._reserved[text] = owner
                self._save()
            return text

    def unreserve(self, owner: str) -> None:
        with self._lock:
            keep = {a: w for a, w in self._reserved.items() if w != owner}
            if keep != self._reserved:
                self._reserved = keep
                self._save()

    def reserved(self) -> dict[str, str]:
        with self._lock:
            return dict(self._reserved)

    def retain_reserved(self, owners: set[str]) -> None:
        """Drop every reservation whose owner is not in ``owners``."""
        with self._lock:
            keep = {a: w for a, w in self._reserved.items() if w in owners}
            if keep != self._reserved:
                self._reserved = keep
                self._save()

    def allocate(self, owner: str, want: str | None = None) -> str:
        """An address for ``owner``: ``want`` (a fixed one) or the next free one."""
        with self._lock:
            if want:
                text = self._check_fixed(owner, want)
                self._owners = {a: w for a, w in self._owners.items() if w != owner}
                self._owners[text] = owner
                self._save()
                return text
            for addr, who in self._owners.items():
                if who == owner:
                    return addr
            first = int(self.network.network_address) + 1
            last = int(self.network.broadcast_address) - 1
            size = last - first + 1
            for step in range(1, size + 1):
                candidate = first + (self._last - first + step) % size
                text = str(ipaddress.IPv4Address(candidate))
                if candidate == int(self.gateway) or text in self._owners or \
                        self._reserved.get(text, owner) != owner:
                    continue
                self._owners[text] = owner
                self._last = candidate
                self._save()
                return text
        raise FailedPrecondition(f"no available IPv4 addresses on this network's address pools: {self.network}")

    def release(self, owner: str) -> None:
        with self._lock:
            keep = {a: w for a, w in self._owners.items() if w != owner}
            if keep != self._owners:
                self._owners = keep
                self._save()

    def owners(self) -> dict[str, str]:
        with self._lock:
            return dict(self._owners)

    def retain(self, owners: set[str]) -> None:
        """Free every address whose owner is not in ``owners``."""
        with self._lock:
            keep = {a: w for a, w in self._owners.items() if w in owners}
            if keep != self._owners:
                self._owners = keep
                self._save()
