"""A persisted IPv4 address allocator for one network: <dir>/<network>.json, written atomically. Blocking.

The gateway and the network/broadcast addresses are never handed out. Allocation goes round-robin from the
last address given (as Docker's IPAM does), so a freed address is not reused at once.
"""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path
from typing import Any

from aiodock.errors import FailedPrecondition, InvalidArgument
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
        self._last = int(ipaddress.IPv4Address(raw.get("last") or str(self.gateway)))

    def _save(self) -> None:
        atomicfile.write_json(self.path, {"subnet": str(self.network), "gateway": str(self.gateway),
                                          "last": str(ipaddress.IPv4Address(self._last)), "allocated": self._owners})

    def allocate(self, owner: str) -> str:
        with self._lock:
            for addr, who in self._owners.items():
                if who == owner:
                    return addr
            first = int(self.network.network_address) + 1
            last = int(self.network.broadcast_address) - 1
            size = last - first + 1
            for step in range(1, size + 1):
                candidate = first + (self._last - first + step) % size
                text = str(ipaddress.IPv4Address(candidate))
                if candidate == int(self.gateway) or text in self._owners:
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
