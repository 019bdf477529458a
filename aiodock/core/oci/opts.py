"""Spec options: functions that change a runtime-spec dict made by :func:`aiodock.core.oci.spec.default_spec`.

Each ``with_*`` function mutates ``spec`` in place and returns nothing. Invalid input raises
:class:`aiodock.errors.InvalidArgument` with Docker's wording.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

from aiodock.core.oci.capabilities import host_capabilities, tweak_capabilities
from aiodock.core.oci.seccomp import default_profile
from aiodock.errors import InvalidArgument

CPU_PERIOD_US = 100_000
MIN_MEMORY_BYTES = 6 * 1024 * 1024
MAX_ID = 2**31 - 1

#: Docker's ``--ulimit`` names -> OCI rlimit types.
ULIMIT_TYPES: dict[str, str] = {
    name: "RLIMIT_" + name.upper()
    for name in (
        "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
        "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
    )
}

#: Sysctls that are namespaced by the ipc namespace (besides the fs.mqueue.* prefix).
_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
        "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
    }
)


def _process(spec: dict[str, Any]) -> dict[str, Any]:
    process: dict[str, Any] = spec.setdefault("process", {})
    return process


def _linux(spec: dict[str, Any]) -> dict[str, Any]:
    linux: dict[str, Any] = spec.setdefault("linux", {})
    return linux


def _resources(spec: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = _linux(spec).setdefault("resources", {})
    return resources


def _capability_set(spec: dict[str, Any]) -> list[str]:
    caps: list[str] = _process(spec).get("capabilities", {}).get("bounding", [])
    return list(caps)


def _set_capabilities(spec: dict[str, Any], caps: list[str]) -> None:
    """Set bounding = effective = permitted; re-render the default seccomp profile if the spec carries it."""
    linux = _linux(spec)
    had_default_seccomp = linux.get("seccomp") is not None and linux["seccomp"] == default_profile(
        _capability_set(spec)
    )
    _process(spec)["capabilities"] = {
        "bounding": list(caps),
        "effective": list(caps),
        "permitted": list(caps),
    }
    if had_default_seccomp:
        linux["seccomp"] = default_profile(list(caps))


def with_process_args(spec: dict[str, Any], args: list[str]) -> None:
    if not args:
        raise InvalidArgument("No command specified")
    _process(spec)["args"] = list(args)


def with_env(spec: dict[str, Any], env: list[str]) -> None:
    """Merge ``KEY=value`` entries into the environment; a later entry replaces an earlier one of the same key."""
    merged: dict[str, str] = {}
    for entry in [*_process(spec).get("env", []), *env]:
        key = entry.split("=", 1)[0]
        if not key:
            raise InvalidArgument(f"invalid environment variable: {entry}")
        merged.pop(key, None)
        merged[key] = entry
    _process(spec)["env"] = list(merged.values())


def with_cwd(spec: dict[str, Any], cwd: str) -> None:
    if not cwd:
        cwd = "/"
    if not cwd.startswith("/"):
        raise InvalidArgument(f"the working directory '{cwd}' is invalid, it needs to be an absolute path")
    _process(spec)["cwd"] = cwd


def with_user(spec: dict[str, Any], uid: int, gid: int, additional_gids: list[int]) -> None:
    for value in (uid, gid, *additional_gids):
        if not 0 <= value <= MAX_ID:
            raise InvalidArgument(f"uids and gids must be in range 0-{MAX_ID}")
    user: dict[str, Any] = {"uid": uid, "gid": gid}
    if additional_gids:
        user["additionalGids"] = list(dict.fromkeys(additional_gids))
    _process(spec)["user"] = user


_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def with_hostname(spec: dict[str, Any], name: str) -> None:
    if len(name) > 64 or not _HOSTNAME.match(name):
        raise InvalidArgument(f'invalid hostname format: "{name}"')
    spec["hostname"] = name


def with_mounts(spec: dict[str, Any], mounts: list[dict[str, Any]]) -> None:
    """Add OCI mounts; a mount on the destination of an existing one replaces it (and anything below it).

    ``/dev/shm`` under a replaced ``/dev`` is dropped too, as runc mounts in order and a default below a user's
    mount would shadow it.
    """
    for mount in mounts:
        destination = mount.get("destination", "")
        if not destination.startswith("/"):
            raise InvalidArgument(f"invalid mount config: mount path must be absolute: {destination!r}")
    user_destinations = {os.path.normpath(m["destination"]) for m in mounts}

    def shadowed(existing: dict[str, Any]) -> bool:
        dest = os.path.normpath(existing["destination"])
        return any(dest == user or dest.startswith(user.rstrip("/") + "/") for user in user_destinations)

    kept = [m for m in spec.get("mounts", []) if not shadowed(m)]
    spec["mounts"] = kept + [dict(m) for m in mounts]


def with_tmpfs(spec: dict[str, Any], dest: str, options: list[str] | str) -> None:
    """``--tmpfs /dest:opts`` : Docker's defaults are ``noexec,nosuid,nodev`` unless overridden."""
    opts = [o for o in (options.split(",") if isinstance(options, str) else options) if o]
    merged = ["noexec", "nosuid", "nodev"]
    opposites = {"exec": "noexec", "suid": "nosuid", "dev": "nodev"}
    for opt in opts:
        if opt in opposites and opposites[opt] in merged:
            merged.remove(opposites[opt])
        if opt not in merged:
            merged.append(opt)
    with_mounts(spec, [{"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": merged}])


def with_capabilities(spec: dict[str, Any], add: list[str], drop: list[str]) -> None:
    """Docker's ``--cap-add`` / ``--cap-drop`` (names with or without CAP_, any case, ``ALL``)."""
    _set_capabilities(spec, tweak_capabilities(_capability_set(spec), add, drop))


def with_privileged(spec: dict[str, Any]) -> None:
    """``--privileged``: every capability, no masked/readonly paths, no seccomp, all devices, rw /sys."""
    linux = _linux(spec)
    linux.pop("seccomp", None)
    _set_capabilities(spec, list(host_capabilities()))
    linux["maskedPaths"] = []
    linux["readonlyPaths"] = []
    _resources(spec)["devices"] = [{"allow": True, "access": "rwm"}]
    for mount in spec.get("mounts", []):
        if mount.get("destination") in ("/sys", "/sys/fs/cgroup"):
            mount["options"] = [o for o in mount.get("options", []) if o != "ro"] + ["rw"]


def with_devices(spec: dict[str, Any], devices: list[tuple[str, str, str]]) -> None:
    """``--device host[:container[:perms]]`` as (PathOnHost, PathInContainer, CgroupPermissions): the device node
    made in the container (type, numbers, mode and owner from the host's node) and a cgroup rule allowing it. A
    directory adds every device node below it. Reads the host's /dev (blocking: build specs off the event loop)."""
    linux = _linux(spec)
    for host_path, container_path, permissions in devices:
        if not permissions or set(permissions) - set("rwm"):
            raise InvalidArgument(f"invalid device mode: {permissions}")
        found = _device_nodes(host_path, container_path or host_path)
        for path, st in found:
            kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
            nodes = linux.setdefault("devices", [])
            nodes[:] = [node for node in nodes if node.get("path") != path]
            nodes.append({"path": path, "type": kind, "major": major, "minor": minor,
                          "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
            _resources(spec).setdefault("devices", []).append(
                {"allow": True, "type": kind, "major": major, "minor": minor, "access": permissions})


def _device_nodes(host_path: str, container_path: str) -> list[tuple[str, os.stat_result]]:
    def failed(why: str) -> InvalidArgument:
        return InvalidArgument(f'error gathering device information while adding custom device "{host_path}": {why}')

    try:
        st = os.stat(host_path)
    except FileNotFoundError:
        raise failed("no such file or directory") from None
    except OSError as exc:
        raise failed(exc.strerror or str(exc)) from None
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return [(container_path, st)]
    if not stat.S_ISDIR(st.st_mode):
        raise failed("not a device node")
    found = []
    for root, _dirs, files in os.walk(host_path):
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                node = os.stat(full)
            except OSError:
                continue
            if stat.S_ISCHR(node.st_mode) or stat.S_ISBLK(node.st_mode):
                found.append((os.path.join(container_path, os.path.relpath(full, host_path)), node))
    return found


def with_readonly_rootfs(spec: dict[str, Any]) -> None:
    spec.setdefault("root", {"path": "rootfs"})["readonly"] = True


def with_no_new_privileges(spec: dict[str, Any]) -> None:
    _process(spec)["noNewPrivileges"] = True


def with_resources(
    spec: dict[str, Any],
    *,
    memory: int | None = None,
    memory_swap: int | None = None,
    nano_cpus: int | None = None,
    cpu_shares: int | None = None,
    pids_limit: int | None = None,
) -> None:
    """Docker's HostConfig resource fields. ``memory_swap`` is memory + swap (-1: unlimited), as in Docker."""
    resources = _resources(spec)
    if memory:
        if memory < MIN_MEMORY_BYTES:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        resources.setdefault("memory", {})["limit"] = memory
    if memory_swap:
        if memory_swap > 0 and not memory:
            raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
        if memory_swap > 0 and memory and memory_swap < memory:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
        resources.setdefault("memory", {})["swap"] = memory_swap
    if nano_cpus:
        cpus = os.cpu_count() or 1
        if nano_cpus < 0 or nano_cpus > cpus * 1_000_000_000:
            raise InvalidArgument(
                f"Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
            )
        cpu = resources.setdefault("cpu", {})
        cpu["period"] = CPU_PERIOD_US
        cpu["quota"] = nano_cpus * CPU_PERIOD_US // 1_000_000_000
    if cpu_shares:
        if cpu_shares < 0:
            raise InvalidArgument("invalid CPU shares: must be positive")
        resources.setdefault("cpu", {})["shares"] = cpu_shares
    if pids_limit is not None and pids_limit != 0:
        resources["pids"] = {"limit": pids_limit if pids_limit > 0 else -1}


def with_network_namespace(spec: dict[str, Any], mode: str) -> None:
    """``private`` / ``none``: a new network namespace (runc brings its loopback up); ``host``: the daemon's;
    an absolute path: join that namespace (e.g. ``/proc/<pid>/ns/net`` or a bind-mounted netns)."""
    namespaces = [ns for ns in _linux(spec).get("namespaces", []) if ns.get("type") != "network"]
    if mode in ("private", "none", "bridge", "default"):
        namespaces.append({"type": "network"})
    elif mode == "host":
        pass
    elif mode.startswith("/"):
        namespaces.append({"type": "network", "path": mode})
    else:
        raise InvalidArgument(f"invalid network mode: {mode}")
    _linux(spec)["namespaces"] = namespaces


def with_namespace(spec: dict[str, Any], kind: str, mode: str) -> None:
    """The ``pid``, ``ipc`` or ``uts`` namespace: ``private`` (a new one), ``host`` (the daemon's), or an absolute
    path to join (``/proc/<pid>/ns/<kind>`` of another container). A host UTS namespace takes no hostname."""
    if kind not in ("pid", "ipc", "uts"):
        raise InvalidArgument(f"unknown namespace type: {kind}")
    namespaces = [ns for ns in _linux(spec).get("namespaces", []) if ns.get("type") != kind]
    if mode == "private":
        namespaces.append({"type": kind})
    elif mode == "host":
        if kind == "uts":
            spec.pop("hostname", None)
    elif mode.startswith("/"):
        namespaces.append({"type": kind, "path": mode})
    else:
        raise InvalidArgument(f"invalid {kind} namespace mode: {mode}")
    _linux(spec)["namespaces"] = namespaces


def with_seccomp(spec: dict[str, Any], profile: dict[str, Any] | None) -> None:
    """Set an OCI ``LinuxSeccomp`` profile; ``None`` runs the container unconfined."""
    if profile is None:
        _linux(spec).pop("seccomp", None)
    else:
        _linux(spec)["seccomp"] = profile


def with_rlimits(spec: dict[str, Any], ulimits: list[dict[str, Any]]) -> None:
    """Docker's ``Ulimits`` (``{"Name": "nofile", "Soft": 1024, "Hard": 2048}``) -> ``process.rlimits``."""
    rlimits: dict[str, dict[str, Any]] = {r["type"]: r for r in _process(spec).get("rlimits", [])}
    for ulimit in ulimits:
        name = str(ulimit.get("Name", ""))
        rlimit_type = ULIMIT_TYPES.get(name)
        if rlimit_type is None:
            raise InvalidArgument(f"invalid ulimit type: {name}")
        soft, hard = int(ulimit.get("Soft", 0)), int(ulimit.get("Hard", 0))
        if soft > hard and hard != -1:
            raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        unlimited = 2**64 - 1
        rlimits[rlimit_type] = {
            "type": rlimit_type,
            "hard": unlimited if hard == -1 else hard,
            "soft": unlimited if soft == -1 else soft,
        }
    _process(spec)["rlimits"] = list(rlimits.values())


def with_oom_score_adj(spec: dict[str, Any], score: int) -> None:
    if not -1000 <= score <= 1000:
        raise InvalidArgument(f"Invalid value {score}, range for oom score adj is [-1000, 1000]")
    _process(spec)["oomScoreAdj"] = score


def with_sysctls(spec: dict[str, Any], sysctls: dict[str, str]) -> None:
    """Namespaced sysctls only (ipc ones, fs.mqueue.*, and net.* when the container has its own netns).

    Apply after :func:`with_network_namespace`.
    """
    own_netns = any(
        ns.get("type") == "network" and not ns.get("path") for ns in _linux(spec).get("namespaces", [])
    )
    joined_netns = any(ns.get("type") == "network" for ns in _linux(spec).get("namespaces", []))
    for key in sysctls:
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            continue
        if key.startswith("net."):
            if not joined_netns:
                raise InvalidArgument(f'sysctl "{key}" not allowed in host network namespace')
            if own_netns or joined_netns:
                continue
        raise InvalidArgument(f'sysctl "{key}" is not in a separate kernel namespace')
    _linux(spec).setdefault("sysctl", {}).update({k: str(v) for k, v in sysctls.items()})
