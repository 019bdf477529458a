"""Linux capability names: Docker's default set, the full table, and Docker's add/drop arithmetic."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from aiodock.errors import InvalidArgument

#: Capability names by number (linux/capability.h), up to CAP_CHECKPOINT_RESTORE (40).
CAPABILITY_NUMBERS: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

#: Docker's (and containerd's) 14 default capabilities, in Docker's order.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

ALL = "ALL"


def capability_mask(names: Iterable[str]) -> int:
    """The bit mask the kernel shows in /proc/<pid>/status (CapEff etc.) for these capabilities."""
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITY_NUMBERS[name]
    return mask


def normalize_capability(name: str) -> str:
    """``"net_admin"`` / ``"CAP_NET_ADMIN"`` -> ``"CAP_NET_ADMIN"``; ``"all"`` -> ``"ALL"``."""
    upper = name.strip().upper()
    if upper == ALL:
        return ALL
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in CAPABILITY_NUMBERS:
        raise InvalidArgument(f'unknown capability: "{upper}"')
    return upper


def normalize_capabilities(names: Iterable[str]) -> list[str]:
    normalized: list[str] = []
    for name in names:
        cap = normalize_capability(name)
        if cap not in normalized:
            normalized.append(cap)
    return normalized


def _status_mask(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1], 16)
    except OSError:
        return None
    return None


@functools.cache
def host_capabilities() -> tuple[str, ...]:
    """Every capability the running kernel knows that this daemon may still grant (its bounding set).

    Docker grants all capabilities up to ``cap_last_cap`` to privileged containers; a capability missing from
    our own bounding set could not be granted (runc's capset would fail), so it is left out.
    """
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as fh:
            last = int(fh.read().strip())
    except (OSError, ValueError):
        last = max(CAPABILITY_NUMBERS.values())
    bounding = _status_mask("CapBnd")
    return tuple(
        name
        for name, number in CAPABILITY_NUMBERS.items()
        if number <= last and (bounding is None or bounding & (1 << number))
    )


def tweak_capabilities(base: Iterable[str], add: Iterable[str], drop: Iterable[str]) -> list[str]:
    """Docker's cap-add / cap-drop arithmetic.

    ``add`` containing ALL: every host capability except the dropped ones. ``drop`` containing ALL: only the
    added ones. Otherwise: ``base`` minus ``drop``, plus ``add``.
    """
    adds = normalize_capabilities(add)
    drops = normalize_capabilities(drop)
    base_list = list(base)
    if not adds and not drops:
        return base_list
    if ALL in adds:
        return [cap for cap in host_capabilities() if cap not in drops]
    if ALL in drops:
        return adds
    result = [cap for cap in base_list if cap not in drops]
    for cap in adds:
        if cap not in result:
            result.append(cap)
    return result


