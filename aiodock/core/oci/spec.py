"""Docker's default OCI runtime spec (runtime-spec 1.0.2, as runc 1.1 accepts it) as a JSON-able dict.

The engine starts from :func:`default_spec` and applies the ``with_*`` functions of :mod:`aiodock.core.oci.opts`.
"""

from __future__ import annotations

import glob
from typing import Any

from aiodock.core.oci.capabilities import DEFAULT_CAPABILITIES
from aiodock.core.oci.seccomp import default_profile

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Docker's masked paths (bind-mounted over with /dev/null, or an empty read-only tmpfs for directories).
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


def _char_device_rule(major: int | None, minor: int | None, *, allow: bool = True) -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": allow, "type": "c"}
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    rule["access"] = "rwm"
    return rule


def default_device_rules() -> list[dict[str, Any]]:
    """Deny every device, then allow null, zero, full, urandom, random, tty, the pty master and slaves; no fuse."""
    return [
        {"allow": False, "access": "rwm"},
        _char_device_rule(1, 5),  # /dev/zero
        _char_device_rule(1, 3),  # /dev/null
        _char_device_rule(1, 9),  # /dev/urandom
        _char_device_rule(1, 8),  # /dev/random
        _char_device_rule(5, 0),  # /dev/tty
        _char_device_rule(5, 1),  # /dev/console
        _char_device_rule(5, 2),  # /dev/ptmx
        _char_device_rule(136, None),  # /dev/pts/*
        _char_device_rule(10, 229, allow=False),  # /dev/fuse
    ]


def default_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["ro", "nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
    ]


def _thermal_throttle_paths() -> list[str]:
    """Per-CPU thermal_throttle directories leak host state; Docker masks those present (GHSA-6fw5-f8r9-fgfm)."""
    return sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle"))


def default_spec(container_id: str, *, cgroups_path: str) -> dict[str, Any]:
    """Docker's defaults for a container: the 14 default capabilities, masked/readonly paths, seccomp default.

    ``hostname`` defaults to the first 12 characters of the container id, as Docker does.
    """
    capabilities = list(DEFAULT_CAPABILITIES)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH_ENV],
            "cwd": "/",
            "capabilities": {
                "bounding": list(capabilities),
                "effective": list(capabilities),
                "permitted": list(capabilities),
            },
            "noNewPrivileges": False,
            "oomScoreAdj": 0,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": container_id[:12],
        "mounts": default_mounts(),
        "linux": {
            "resources": {"devices": default_device_rules()},
            "cgroupsPath": cgroups_path,
            "namespaces": [
                {"type": "mount"},
                {"type": "network"},
                {"type": "uts"},
                {"type": "pid"},
                {"type": "ipc"},
            ],
            "seccomp": default_profile(capabilities),
            "maskedPaths": [*DEFAULT_MASKED_PATHS, *_thermal_throttle_paths()],
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }
