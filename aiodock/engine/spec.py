"""Docker's Config and HostConfig turned into an OCI runtime spec (moby's daemon/oci_linux.go role)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiodock.core.mount import Mount
from aiodock.core.oci import opts
from aiodock.core.oci.seccomp import default_profile
from aiodock.core.oci.spec import default_spec
from aiodock.core.oci.user import resolve_user
from aiodock.engine import volumes
from aiodock.errors import InvalidArgument, NotImplementedYet

INIT_DESTINATION = "/sbin/docker-init"
INIT_BINARIES = ("docker-init", "tini-static")  # a static binary: the image may have no libc


def init_binary() -> str:
    """The host's init for --init, as Docker looks for docker-init (Debian's tini-static serves)."""
    for name in INIT_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise InvalidArgument('exec: "docker-init": executable file not found in $PATH')


def network_mode(host_config: dict[str, Any]) -> str:
    mode = host_config.get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


def _layer_dirs(mounts: list[Mount]) -> list[Path]:
    """Top-most first: upperdir, then the lowerdirs in overlay order; or a bind source."""
    dirs: list[Path] = []
    for m in mounts:
        if m.type == "overlay":
            upper = [o.split("=", 1)[1] for o in m.options if o.startswith("upperdir=")]
            lower = [o.split("=", 1)[1] for o in m.options if o.startswith("lowerdir=")]
            dirs += [Path(p) for p in upper]
            for group in lower:
                dirs += [Path(p) for p in group.split(":")]
        else:
            dirs.append(Path(m.source))
    return dirs


def resolve_user_in_layers(mounts: list[Mount], user: str) -> tuple[int, int, list[int]]:
    """Resolve Docker's User against the image's /etc/passwd and /etc/group without mounting the rootfs:
    the top-most layer that has each file wins (a whiteout hides it). Blocking."""
    scratch = Path(tempfile.mkdtemp(prefix="adk-user-"))
    try:
        (scratch / "etc").mkdir()
        for name in ("passwd", "group"):
            for layer in _layer_dirs(mounts):
                candidate = layer / "etc" / name
                try:
                    st = os.lstat(candidate)
                except FileNotFoundError:
                    continue
                except NotADirectoryError:
                    break
                if not os.path.isfile(candidate) or os.path.islink(candidate) or st.st_size > 8 << 20:
                    break  # whiteout (char device), symlink or odd file: treat as absent
                shutil.copyfile(candidate, scratch / "etc" / name)
                break
        return resolve_user(scratch, user or "0")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


VolumeMountResolver = Callable[[str, str, list[str], str], dict[str, Any]]


def _bind_mounts(host_config: dict[str, Any], container_id: str = "", config: dict[str, Any] | None = None,
                 volume_mount: VolumeMountResolver | None = None) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for bind in host_config.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) == 1 and parts[0].startswith("/"):
            continue  # -v /path: an anonymous volume (below)
        if len(parts) < 2 or len(parts) > 3:
            raise InvalidArgument(f"invalid volume specification: '{bind}'")
        src, dst = parts[0], parts[1]
        mode = parts[2].split(",") if len(parts) == 3 else []
        if not dst.startswith("/"):
            raise InvalidArgument(f"invalid volume specification: '{bind}': invalid mount config for type \"bind\": "
                                  "invalid mount path: '" + dst + "' mount path must be absolute")
        if not src.startswith("/"):
            continue  # a named volume (below)
        if not os.path.exists(src):  # -v creates a missing host dir, as Docker does; a file is bound as it is
            try:
                os.makedirs(src, exist_ok=True)
            except OSError as exc:
                raise InvalidArgument(f"error while creating mount source path '{src}': mkdir {src}: "
                                      f"{(exc.strerror or str(exc)).lower()}") from None
        options = ["rbind", "ro" if "ro" in mode else "rw"]
        options += [m for m in mode if m in ("private", "rprivate", "shared", "rshared", "slave", "rslave")]
        result.append({"destination": dst, "type": "bind", "source": src, "options": options})
    for m in host_config.get("Mounts") or []:
        kind = m.get("Type", "")
        target = m.get("Target", "")
        if not target.startswith("/"):
            raise InvalidArgument(f"invalid mount config for type \"{kind}\": invalid mount path: '{target}' "
                                  "mount path must be absolute")
        if kind == "bind":
            src = m.get("Source", "")
            if not src.startswith("/"):
                raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount path: '{src}' "
                                      "mount path must be absolute")
            if not os.path.exists(src):
                raise InvalidArgument(
                    f"invalid mount config for type \"bind\": bind source path does not exist: {src}")
            options = ["rbind", "ro" if m.get("ReadOnly") else "rw"]
            prop = (m.get("BindOptions") or {}).get("Propagation")
            if prop:
                options.append(prop)
            result.append({"destination": target, "type": "bind", "source": src, "options": options})
        elif kind == "tmpfs":
            tmpfs = m.get("TmpfsOptions") or {}
            options = ["nosuid", "nodev", "noexec"]
            if tmpfs.get("SizeBytes"):
                options.append(f"size={int(tmpfs['SizeBytes'])}")
            if tmpfs.get("Mode"):
                options.append(f"mode={int(tmpfs['Mode']):o}")
            if m.get("ReadOnly"):
                options.append("ro")
            result.append({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
        elif kind == "volume":
            continue  # below
        else:
            raise InvalidArgument(f"mount type unknown: \"{kind}\"")
    for dest, raw in (host_config.get("Tmpfs") or {}).items():
        options = ["nosuid", "nodev", "noexec"] + [o for o in raw.split(",") if o]
        result.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options})
    for vol in volumes.container_volumes(container_id, config or {}, host_config):
        if not container_id and vol.anonymous:
            continue
        options = ["rw" if vol.rw else "ro"]
        options += [m for m in vol.mode.split(",") if m in ("private", "rprivate", "shared", "rshared", "slave",
                                                              "rslave")]
        if volume_mount is None:
            raise InvalidArgument(f"volume {vol.name}: volumes are not served by this daemon")
        result.append(volume_mount(vol.name, vol.destination, options, vol.subpath))
    result.sort(key=lambda m: len([p for p in m["destination"].split("/") if p]))  # parents before children
    return result


_CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
_DEVICE_CGROUP_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def replace_or_append_env(defaults: list[str], overrides: list[str]) -> list[str]:
    """Docker's ReplaceOrAppendEnvValues: each ``KEY=value`` override replaces the entry of the same key or is
    appended; a bare ``KEY`` (``-e KEY`` with KEY unset on the client) removes the key and adds nothing."""
    merged: list[str | None] = list(defaults)
    index = {item.split("=", 1)[0]: i for i, item in enumerate(defaults)}
    for item in overrides:
        name, has_value, _ = item.partition("=")
        where = index.get(name)
        if not has_value:
            if where is not None:
                merged[where] = None
                del index[name]
        elif where is not None:
            merged[where] = item
        else:
            index[name] = len(merged)
            merged.append(item)
    return [item for item in merged if item is not None]


def memory_swappiness(host_config: dict[str, Any]) -> int | None:
    """HostConfig.MemorySwappiness checked as Docker does (0-100); None when unset (null or -1)."""
    value = host_config.get("MemorySwappiness")
    if value is None or value == -1:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
        raise InvalidArgument(f"Invalid value: {value}, valid memory swappiness range is 0-100")
    return value


def device_cgroup_rule(text: str) -> dict[str, Any]:
    """``--device-cgroup-rule 'c 1:3 rwm'`` as an OCI device cgroup rule (``*``: any number)."""
    match = _DEVICE_CGROUP_RULE.match(text.strip())
    if match is None:
        raise InvalidArgument(f"invalid device cgroup rule format: '{text}'")
    kind, major, minor, access = match.groups()
    rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major != "*":
        rule["major"] = int(major)
    if minor != "*":
        rule["minor"] = int(minor)
    return rule


def build_spec(*, container_id: str, config: dict[str, Any], host_config: dict[str, Any], args: list[str],
               rootfs: list[Mount], container_dir: Path, cgroup_parent: str,
               netns_path: str | None = None, volume_mount: VolumeMountResolver | None = None,
               pid_target: int | None = None, ipc_target: int | None = None,
               shm_source: Path | None = None) -> dict[str, Any]:
    """Blocking (reads the image's passwd/group and the host's paths): call from a thread. ``pid_target`` and
    ``ipc_target``: the init pid of the container whose PID or IPC namespace to join (container:<id> modes);
    ``shm_source``: a host tmpfs to bind as /dev/shm (shareable IPC, or the donor's)."""
    spec = default_spec(container_id, cgroups_path=f"/{cgroup_parent.strip('/')}/{container_id}")
    init_mount: list[dict[str, Any]] = []
    if host_config.get("Init"):  # --init: a minimal init (tini) as PID 1 reaps zombies and forwards signals
        init_path = init_binary()
        args = [INIT_DESTINATION, "--", *args]
        init_mount.append({"destination": INIT_DESTINATION, "type": "bind", "source": init_path,
                           "options": ["rbind", "ro"]})
    opts.with_process_args(spec, args)
    spec["process"]["terminal"] = bool(config.get("Tty"))  # the shim takes the pty master
    daemon_env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  f"HOSTNAME={config.get('Hostname') or container_id[:12]}"]
    if config.get("Tty"):
        daemon_env.append("TERM=xterm")  # as Docker sets it for -t
    env = replace_or_append_env(daemon_env, [str(e) for e in config.get("Env") or []])
    console = host_config.get("ConsoleSize") or [0, 0]
    if config.get("Tty") and len(console) == 2 and console[0] and console[1]:
        spec["process"]["consoleSize"] = {"height": int(console[0]), "width": int(console[1])}
    spec["process"]["env"] = []  # env is complete: default_spec's PATH must not survive a bare -e PATH
    opts.with_env(spec, env)
    opts.with_cwd(spec, config.get("WorkingDir") or "/")
    uid, gid, gids = resolve_user_in_layers(rootfs, config.get("User") or "")
    extra = []
    for group in host_config.get("GroupAdd") or []:
        if str(group).isdigit():
            extra.append(int(group))
    opts.with_user(spec, uid, gid, sorted(set(gids + extra)))
    mode = network_mode(host_config)
    host_net = mode == "host"
    host_uts = host_config.get("UTSMode") == "host"
    if not host_net and not host_uts:
        opts.with_hostname(spec, config.get("Hostname") or container_id[:12])
    opts.with_network_namespace(spec, "host" if host_net else netns_path or "private")
    if host_uts:
        opts.with_namespace(spec, "uts", "host")
    pid_mode = str(host_config.get("PidMode") or "")
    if pid_mode == "host":
        opts.with_namespace(spec, "pid", "host")
    elif pid_target is not None:
        opts.with_namespace(spec, "pid", f"/proc/{pid_target}/ns/pid")
    ipc_mode = str(host_config.get("IpcMode") or "")
    if ipc_mode == "host":
        opts.with_namespace(spec, "ipc", "host")
    elif ipc_target is not None:
        opts.with_namespace(spec, "ipc", f"/proc/{ipc_target}/ns/ipc")
    mounts = _bind_mounts(host_config, container_id, config, volume_mount) + init_mount
    for fname, dest in (("hostname", "/etc/hostname"), ("hosts", "/etc/hosts"),
                        ("resolv.conf", "/etc/resolv.conf")):
        if not any(m["destination"] == dest for m in mounts):
            mounts.append({"destination": dest, "type": "bind", "source": str(container_dir / fname),
                           "options": ["rbind", "rprivate"]})
    if ipc_mode == "host" or shm_source is not None:  # as Docker: the host's /dev/shm, or a shareable one's
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": str(shm_source or "/dev/shm"),
                       "options": ["rbind", "rprivate"]})
    elif ipc_mode == "none":  # as Docker: no /dev/shm at all
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/dev/shm"]
    else:
        shm_size = int(host_config.get("ShmSize") or DEFAULT_SHM_SIZE)
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]})
    opts.with_mounts(spec, mounts)
    if host_config.get("Privileged"):
        opts.with_privileged(spec)
    else:
        opts.with_capabilities(spec, list(host_config.get("CapAdd") or []), list(host_config.get("CapDrop") or []))
    security = [s.replace("=", ":", 1) if "=" in s and ":" not in s else s
                for s in host_config.get("SecurityOpt") or []]
    seccomp: str | None = None
    for item in security:
        key, _, value = item.partition(":")
        if key == "no-new-privileges" and value in ("", "true"):
            opts.with_no_new_privileges(spec)
        elif key == "seccomp":
            seccomp = value
        elif key in ("label", "apparmor", "no-new-privileges"):
            continue
        else:
            raise InvalidArgument(f"invalid --security-opt 2: \"{item}\"")
    if not host_config.get("Privileged"):
        if seccomp == "unconfined":
            opts.with_seccomp(spec, None)
        elif seccomp:
            raise NotImplementedYet("custom seccomp profiles are not supported yet")
        else:
            caps = spec["process"]["capabilities"]["bounding"]
            opts.with_seccomp(spec, default_profile(caps))
    if host_config.get("ReadonlyRootfs"):
        opts.with_readonly_rootfs(spec)
    opts.with_resources(
        spec,
        memory=host_config.get("Memory") or None,
        memory_swap=host_config.get("MemorySwap") or None,
        nano_cpus=host_config.get("NanoCpus") or None,
        cpu_shares=host_config.get("CpuShares") or None,
        pids_limit=host_config.get("PidsLimit") if (host_config.get("PidsLimit") or 0) > 0 else None,
    )
    resources = spec["linux"].setdefault("resources", {})
    if host_config.get("MemoryReservation"):
        resources.setdefault("memory", {})["reservation"] = int(host_config["MemoryReservation"])
    cpu = resources.setdefault("cpu", {})
    if host_config.get("CpuQuota"):
        cpu["quota"] = int(host_config["CpuQuota"])
    if host_config.get("CpuPeriod"):
        cpu["period"] = int(host_config["CpuPeriod"])
    if host_config.get("CpusetCpus"):
        cpu["cpus"] = str(host_config["CpusetCpus"])
    if host_config.get("CpusetMems"):
        cpu["mems"] = str(host_config["CpusetMems"])
    if not cpu:
        del resources["cpu"]
    if host_config.get("Ulimits"):
        opts.with_rlimits(spec, host_config["Ulimits"])
    memory = resources.setdefault("memory", {})
    swappiness = memory_swappiness(host_config)
    if swappiness is not None and _CGROUP_V1_MEMORY.is_dir():  # as Docker: discarded without the knob (v2)
        memory["swappiness"] = swappiness
    if host_config.get("OomKillDisable") and _CGROUP_V1_MEMORY.is_dir():
        memory["disableOOMKiller"] = True
    if not memory:
        del resources["memory"]
    for rule in host_config.get("DeviceCgroupRules") or []:
        resources.setdefault("devices", []).append(device_cgroup_rule(str(rule)))
    if host_config.get("BlkioWeight"):  # create discarded it where the cgroup has no blkio.weight
        resources["blockIO"] = {"weight": int(host_config["BlkioWeight"])}
    for request in host_config.get("DeviceRequests") or []:  # no device driver (e.g. nvidia) is registered
        if isinstance(request, dict):
            caps = " ".join("[" + " ".join(map(str, c)) + "]" for c in request.get("Capabilities") or [])
            raise InvalidArgument(f'could not select device driver "{request.get("Driver") or ""}" '
                                  f"with capabilities: [{caps}]")
    if host_config.get("Sysctls"):
        opts.with_sysctls(spec, {str(k): str(v) for k, v in host_config["Sysctls"].items()})
    if host_config.get("OomScoreAdj"):
        opts.with_oom_score_adj(spec, int(host_config["OomScoreAdj"]))
    if host_config.get("Devices"):
        opts.with_devices(spec, [
            (str(d.get("PathOnHost") or ""), str(d.get("PathInContainer") or ""),
             str(d.get("CgroupPermissions") or "rwm"))
            for d in host_config["Devices"] if isinstance(d, dict)
        ])
    return spec
