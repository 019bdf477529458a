"""`aiodock daemon` / `aiodockd`: flags named as dockerd names them."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from aiodock import __version__
from aiodock.config import DEFAULT_HOST, DaemonConfig
from aiodock.errors import AiodockError


def _boolean(value: str) -> bool:
    """Go's strconv.ParseBool, as dockerd's boolean flags take it (--userland-proxy=false)."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiodock daemon", description="Run the aiodock daemon: the Docker Engine API, "
                                "the containerd-compatible gRPC API and the in-process port proxy.")
    p.add_argument("-H", "--host", action="append", dest="hosts", metavar="HOST",
                   help=f"Daemon socket(s) to connect to: unix:///path, tcp://host:port, fd:// (default {DEFAULT_HOST})")
    p.add_argument("--data-root", type=Path, help="Root directory of persistent state (default /var/lib/aiodock)")
    p.add_argument("--exec-root", type=Path, help="Root directory of execution state (default /run/aiodock)")
    p.add_argument("-p", "--pidfile", type=Path, help="Path to use for the daemon PID file")
    p.add_argument("--config-file", type=Path, help="Daemon configuration file (JSON, like daemon.json)")
    p.add_argument("--containerd", dest="grpc_address", type=Path,
                   help="gRPC socket of the containerd-compatible API (default <exec-root>/containerd/containerd.sock)")
    p.add_argument("--default-runtime", dest="runtime", help="OCI runtime binary: runc (default) or crun")
    p.add_argument("--cgroup-parent", help="Parent cgroup for all containers (default aiodock)")
    p.add_argument("-l", "--log-level", choices=["debug", "info", "warn", "error", "fatal"],
                   help="Set the logging level (default info)")
    p.add_argument("--log-format", choices=["json", "console"], help="Log format (default json)")
    p.add_argument("--tls", action="store_true", default=None, help="Use TLS on tcp:// hosts")
    p.add_argument("--tlsverify", action="store_true", default=None, help="Use TLS and verify the client")
    p.add_argument("--tlscacert", type=Path, help="Trust certs signed only by this CA")
    p.add_argument("--tlscert", type=Path, help="Path to TLS certificate file")
    p.add_argument("--tlskey", type=Path, help="Path to TLS key file")
    p.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="Default json-file log options: max-size, max-file")
    p.add_argument("-b", "--bridge-name", "--bridge", dest="bridge_name",
                   help="Linux bridge of the default bridge network (default aiodock0)")
    p.add_argument("--bip", help="Gateway address and subnet of the default bridge network (default 172.30.0.1/16)")
    p.add_argument("--userland-proxy", type=_boolean, metavar="BOOL",
                   help="Serve published ports with the in-process proxy (default true); false: iptables DNAT")
    p.add_argument("--registry-certs-dir", type=Path, metavar="DIR",
                   help="Per-registry TLS files, as Docker's /etc/docker/certs.d: DIR/<host[:port]>/ holds CA "
                        "certificates (*.crt) and a client certificate and key (*.cert + *.key); daemon.json "
                        "key \"registry-certs-dir\" (default /etc/aiodock/certs.d)")
    p.add_argument("--insecure-registry", action="append", default=[], dest="insecure_registries",
                   metavar="REGISTRY", help="Registry (host[:port]) or CIDR reachable over plain HTTP or HTTPS "
                                            "without verification (repeatable; 127.0.0.0/8 and ::1 always are)")
    p.add_argument("--registry-mirror", action="append", default=[], dest="registry_mirrors", metavar="URL",
                   help="Preferred registry mirror for docker.io images, http(s)://host[:port] (repeatable)")
    p.add_argument("-v", "--version", action="version", version=f"aiodock {__version__}")
    return p


def config_from_args(argv: list[str] | None) -> DaemonConfig:
    args = build_parser().parse_args(argv)
    config = DaemonConfig()
    if args.config_file:
        config = config.with_file(args.config_file)
    changes: dict[str, object] = {}
    for name in ("data_root", "exec_root", "pidfile", "grpc_address", "runtime", "cgroup_parent", "log_level",
                 "log_format", "tls", "tlsverify", "tlscacert", "tlscert", "tlskey", "bridge_name", "bip",
                 "userland_proxy"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.hosts:
        changes["hosts"] = tuple(args.hosts)
    if args.registry_certs_dir is not None:
        changes["registry_certs_dir"] = args.registry_certs_dir
    if args.insecure_registries:
        changes["insecure_registries"] = tuple(dict.fromkeys((*config.insecure_registries, *args.insecure_registries)))
    if args.registry_mirrors:
        changes["registry_mirrors"] = tuple(dict.fromkeys((*config.registry_mirrors, *args.registry_mirrors)))
    if args.log_opt:
        opts = dict(config.log_opts)
        for item in args.log_opt:
            key, sep, value = item.partition("=")
            if not sep:
                raise AiodockError(f"invalid log-opt: {item}")
            opts[key] = value
        changes["log_opts"] = opts
    return replace(config, **changes)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    try:
        config = config_from_args(argv)
    except AiodockError as exc:
        print(f"aiodock: {exc}", file=sys.stderr)
        return 1
    from aiodock.daemon.app import run
    from aiodock.proxy.loop import new_event_loop

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:  # the proxy's relays run in its selector
            return runner.run(run(config))
    except AiodockError as exc:
        print(f"aiodock: failed to start daemon: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
