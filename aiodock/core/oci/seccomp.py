"""Seccomp profiles: aiodock's default allowlist and Docker-format profile templates -> OCI ``linux.seccomp``.

A template (our ``seccomp_default.json``, or a user's ``--security-opt seccomp=<file>`` in Docker's format) has
``defaultAction``, ``defaultErrnoRet``, ``archMap`` (or ``architectures``) and ``syscalls`` groups that may carry
``includes`` / ``excludes`` on ``caps``, ``arches`` and ``minKernel``. Rendering keeps the groups that apply to a
container's capabilities, the machine's architecture and the running kernel, and drops the template-only keys.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from aiodock.errors import InvalidArgument

DEFAULT_PROFILE_PATH = Path(__file__).with_name("seccomp_default.json")

#: Architecture spellings of ``uname -m``, Go (Docker profiles) and libseccomp, mapped to one name.
_ARCH_ALIASES: dict[str, str] = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "scmp_arch_x86_64": "x86_64",
    "x86": "x86",
    "i386": "x86",
    "i686": "x86",
    "386": "x86",
    "scmp_arch_x86": "x86",
    "x32": "x32",
    "scmp_arch_x32": "x32",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "scmp_arch_aarch64": "aarch64",
    "arm": "arm",
    "armv7l": "arm",
    "scmp_arch_arm": "arm",
    "ppc64le": "ppc64le",
    "scmp_arch_ppc64le": "ppc64le",
    "s390x": "s390x",
    "scmp_arch_s390x": "s390x",
    "riscv64": "riscv64",
    "scmp_arch_riscv64": "riscv64",
}

_TEMPLATE_ONLY_KEYS = ("comment", "comments", "includes", "excludes", "name")


def canonical_arch(arch: str) -> str:
    return _ARCH_ALIASES.get(arch.lower(), arch.lower())


@functools.cache
def _default_template() -> dict[str, Any]:
    with open(DEFAULT_PROFILE_PATH, encoding="utf-8") as fh:
        template: dict[str, Any] = json.load(fh)
    return template


def _kernel_version() -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _parse_kernel(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if match is None:
        raise InvalidArgument(f"invalid kernel version: {text}")
    return int(match.group(1)), int(match.group(2))


def _group_applies(group: dict[str, Any], caps: set[str], arch: str, kernel: tuple[int, int]) -> bool:
    includes: dict[str, Any] = group.get("includes") or {}
    excludes: dict[str, Any] = group.get("excludes") or {}
    include_arches = {canonical_arch(a) for a in includes.get("arches") or []}
    if include_arches and arch not in include_arches:
        return False
    if not set(includes.get("caps") or []) <= caps:
        return False
    min_kernel = includes.get("minKernel")
    if min_kernel and kernel < _parse_kernel(str(min_kernel)):
        return False
    if arch in {canonical_arch(a) for a in excludes.get("arches") or []}:
        return False
    return not set(excludes.get("caps") or []) & caps


def _architectures(template: dict[str, Any], arch: str) -> list[str]:
    if template.get("architectures"):
        return list(template["architectures"])
    for entry in template.get("archMap") or []:
        if canonical_arch(entry["architecture"]) == arch:
            return [entry["architecture"], *entry.get("subArchitectures", [])]
    return []


def render_profile(
    template: dict[str, Any],
    capabilities: list[str],
    arch: str | None = None,
    kernel: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A Docker-format profile template rendered to an OCI ``LinuxSeccomp`` dict for one container."""
    if "defaultAction" not in template:
        raise InvalidArgument("seccomp profile has no defaultAction")
    native = canonical_arch(arch or platform.machine())
    caps = set(capabilities)
    running_kernel = kernel or _kernel_version()
    profile: dict[str, Any] = {"defaultAction": template["defaultAction"]}
    if "defaultErrnoRet" in template:
        profile["defaultErrnoRet"] = template["defaultErrnoRet"]
    profile["architectures"] = _architectures(template, native)
    if template.get("flags"):
        profile["flags"] = list(template["flags"])
    syscalls: list[dict[str, Any]] = []
    for group in template.get("syscalls") or []:
        if not _group_applies(group, caps, native, running_kernel):
            continue
        rule = {k: copy.deepcopy(v) for k, v in group.items() if k not in _TEMPLATE_ONLY_KEYS}
        names = list(group.get("names") or [])
        if group.get("name"):
            names.append(group["name"])
        if not names:
            raise InvalidArgument("seccomp profile has a syscall group without names")
        rule["names"] = names
        syscalls.append(rule)
    profile["syscalls"] = syscalls
    return profile


def default_profile(capabilities: list[str], arch: str = platform.machine()) -> dict[str, Any]:
    """aiodock's default allowlist for a container holding ``capabilities`` (normalized CAP_* names)."""
    return render_profile(_default_template(), capabilities, arch)


def load_profile(text: str, capabilities: list[str], arch: str = platform.machine()) -> dict[str, Any]:
    """A user-supplied profile (JSON text of Docker's format or a plain OCI LinuxSeccomp) for one container."""
    try:
        template = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"Decoding seccomp profile failed: {err}") from err
    if not isinstance(template, dict):
        raise InvalidArgument("Decoding seccomp profile failed: not a JSON object")
    return render_profile(template, capabilities, arch)
