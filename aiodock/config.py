"""Daemon configuration: dockerd-named flags, a daemon.json-like file, Docker-like defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from aiodock.errors import InvalidArgument

DEFAULT_HOST = "unix:///var/run/aiodock.sock"


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Every path a daemon touches; tests run several daemons side by side with different roots."""

    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    data_root: Path = Path("/var/lib/aiodock")
    exec_root: Path = Path("/run/aiodock")
    pidfile: Path | None = None
    grpc_address: Path | None = None  # default: <exec_root>/containerd/containerd.sock
    runtime: str = "runc"  # name on PATH or a path: runc or crun
    cgroup_parent: str = "aiodock"
    log_level: str = "info"
    log_format: str = "json"
    tls: bool = False
    tlscacert: Path | None = None
    tlscert: Path | None = None
    tlskey: Path | None = None
    tlsverify: bool = False
    log_opts: dict[str, str] = field(default_factory=dict)  # json-file max-size, max-file
    shutdown_timeout: int = 15
    bridge_name: str = "aiodock0"  # the default bridge network's Linux bridge (dockerd's -b/--bridge)
    bip: str = "172.30.0.1/16"  # the bridge's gateway address and subnet (dockerd's --bip)
    registry_certs_dir: Path = Path("/etc/aiodock/certs.d")  # <host[:port]>/{*.crt, *.cert + *.key} per registry
    insecure_registries: tuple[str, ...] = ()  # CIDRs and host[:port] (dockerd's --insecure-registry)
    registry_mirrors: tuple[str, ...] = ()  # docker.io mirrors (dockerd's --registry-mirror)
    userland_proxy: bool = True  # False: published ports through iptables DNAT (dockerd's --userland-proxy=false)

    @property
    def grpc_socket(self) -> Path:
        return self.grpc_address or self.exec_root / "containerd" / "containerd.sock"

    def with_file(self, path: Path) -> DaemonConfig:
        """Merge a daemon.json-style file (keys as dockerd names them); flags given explicitly win later."""
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise InvalidArgument(f"unable to configure the daemon: open {path}: no such file or directory") from exc
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"unable to configure the daemon: invalid JSON in {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise InvalidArgument(f"unable to configure the daemon: {path} must hold a JSON object")
        return self.merge(raw)

    def merge(self, raw: dict[str, Any]) -> DaemonConfig:
        aliases = {
            "hosts": "hosts", "data-root": "data_root", "exec-root": "exec_root", "pidfile": "pidfile",
            "containerd": "grpc_address", "default-runtime": "runtime", "cgroup-parent": "cgroup_parent",
            "log-level": "log_level", "log-format": "log_format", "tls": "tls", "tlscacert": "tlscacert",
            "tlscert": "tlscert", "tlskey": "tlskey", "tlsverify": "tlsverify", "log-opts": "log_opts",
            "shutdown-timeout": "shutdown_timeout", "bridge": "bridge_name", "bip": "bip",
            "userland-proxy": "userland_proxy",
        }
        known = {f.name for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in raw.items():
            name = aliases.get(key, key.replace("-", "_"))
            if name not in known:
                raise InvalidArgument(f"unable to configure the daemon: unknown option {key!r}")
            if name in {"data_root", "exec_root", "pidfile", "grpc_address", "tlscacert", "tlscert", "tlskey",
                        "registry_certs_dir"}:
                value = Path(value) if value is not None else None
            if name in ("insecure_registries", "registry_mirrors") and (
                    not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                raise InvalidArgument(f"unable to configure the daemon: {key} must be a list of strings")
            if name in ("hosts", "insecure_registries", "registry_mirrors"):
                value = tuple(value)
            if name == "userland_proxy" and not isinstance(value, bool):
                kind = {str: "string", int: "number", float: "number", list: "array"}.get(type(value), "object")
                raise InvalidArgument(f"unable to configure the daemon: json: cannot unmarshal {kind} into Go "
                                      "struct field Config.userland-proxy of type bool")
            changes[name] = value
        return replace(self, **changes)
