#!/usr/bin/env python3
"""Published ports: aiodock's in-process proxy against Docker's docker-proxy (userland proxy), on this machine.

Usage: python3 bench/bench_proxy.py [--mb 1024] [--connects 500] [--udp 5000] [--flood 200000] [--ports 50]
                                    [--rounds 3] [--skip-docker] [--json OUT]

A busybox container on the default bridge network runs bench/netsrv.c (built static, bind-mounted): a TCP sink,
a TCP echo (epoll), a UDP echo and a UDP sink, each published on 127.0.0.1. Docker runs with its defaults (docker0
172.17.0.0/16, iptables, userland proxy: a connection to 127.0.0.1 is not DNATed and goes through docker-proxy);
aiodock gets its own bridge and subnet; both daemons run side by side and the paths below are measured
interleaved, --rounds times (each figure is the median over the rounds), so that load from elsewhere on the
machine hits all of them alike: the bulk measures path after path, in a new (seeded) order each round; the
latencies sample by sample (one connect+echo, or one UDP round trip, of each path in turn). From the host (Python client), for each path:
  tcp_mbps           MB/s of --mb MB sent through one connection (sendall, half-close, wait for the server's EOF)
  connect_echo_*     --connects times: connect, send 1 byte, read the echoed byte, close (median, p90, per second)
  tcp_rtt_*          --udp 1-byte echo round trips on one open TCP connection (median)
  udp_rtt_*          --udp one-in-flight UDP echo round trips (median RTT, round trips/s, lost)
  udp_flood_*        --flood 64-byte datagrams sent as fast as the client can; datagrams/s the sink counted (from
                     the first send to the sink's answer to "END"), loss
Paths: "aiodock"/"docker" = published 127.0.0.1 port (through the proxy), "direct" = the container's IP (no proxy,
on the aiodock container's bridge; "direct_docker" on docker0), "loopback" = the same server on the host's
127.0.0.1 (the machine's limit). Memory (after the rounds, server containers removed): one container with
--ports published TCP ports; aiodock: daemon
(+ shim factory) RSS delta; Docker: the sum of its docker-proxy processes' RSS (and PSS) + dockerd/containerd delta.
Everything Docker creates (docker0, DOCKER* iptables chains and rules) is removed afterwards, even on failure.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    REPO,
    Aiodock,
    Docker,
    Engine,
    busybox_tar,
    cleanup,
    cleanup_aiodock_network,
    cleanup_docker_network,
    forward_policy,
    free_bridge,
    leftovers,
    loadavg,
    pctl,
    print_table,
    rollup,
    write_json,
)

PORTS = {"sink": 5000, "echo": 5001, "udpecho": 5002, "udpsink": 5003}
Addr = tuple[str, int]


def build_netsrv(directory: Path) -> Path:
    """bench/netsrv.c, built static into a directory of its own, which the server containers bind-mount."""
    (directory / "bin").mkdir()
    out = directory / "bin" / "netsrv"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(out), str(REPO / "bench" / "netsrv.c")], check=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_echo(addr: Addr, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(addr, timeout=2) as s:
                s.sendall(b"x")
                if s.recv(1) == b"x":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"echo server at {addr} does not answer")
        time.sleep(0.1)


def tcp_throughput(addr: Addr, total: int) -> float:
    """Bytes/s of ``total`` bytes through one connection, until the sink has read them all (its EOF)."""
    buf = bytes(1 << 20)
    with socket.create_connection(addr, timeout=60) as s:
        start = time.perf_counter()
        for _ in range(total // len(buf)):
            s.sendall(buf)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
        return total / (time.perf_counter() - start)


def connect_echo_once(addr: Addr) -> float:
    start = time.perf_counter()
    with socket.create_connection(addr, timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise RuntimeError("bad echo")
    return time.perf_counter() - start


def udp_rtt_once(s: socket.socket, i: int) -> float | None:
    """One round trip on a connected socket (None: lost, after 0.5 s)."""
    payload = i.to_bytes(4, "big") * 8
    start = time.perf_counter()
    s.send(payload)
    try:
        while s.recv(2048) != payload:
            pass
    except TimeoutError:
        return None
    return time.perf_counter() - start


def tcp_rtt_once(s: socket.socket) -> float:
    """One 1-byte request and its echo on an open connection."""
    start = time.perf_counter()
    s.sendall(b"x")
    if s.recv(1) != b"x":
        raise RuntimeError("bad echo")
    return time.perf_counter() - start


@dataclass
class Latencies:
    connect: list[float] = field(default_factory=list)
    tcp_rtt: list[float] = field(default_factory=list)
    rtt: list[float] = field(default_factory=list)
    lost: int = 0

    def figures(self) -> dict[str, Any]:
        lat, rtt = self.connect, self.rtt
        return {
            "connect_echo_median_ms": statistics.median(lat) * 1e3,
            "connect_echo_p90_ms": pctl(lat, 0.9) * 1e3,
            "connect_echo_per_s": len(lat) / sum(lat),
            "tcp_rtt_median_ms": statistics.median(self.tcp_rtt) * 1e3,
            "udp_rtt_median_ms": statistics.median(rtt) * 1e3 if rtt else None,
            "udp_rtt_per_s": len(rtt) / sum(rtt) if rtt else None,
            "udp_rtt_lost": self.lost,
        }


def paired_latencies(paths: dict[str, dict[str, Addr]], args: argparse.Namespace) -> dict[str, Latencies]:
    """Connect+echo, TCP round-trip (on an open connection) and UDP round-trip samples of every path, taken in
    turn: sample i of each path, then sample i + 1 of each, the order rotating, so that the paths' samples see the
    same moments of a noisy machine (measured path after path, a slow spell of the machine decides which path
    looks faster)."""
    names = list(paths)
    out = {name: Latencies() for name in names}
    for name in names:
        for _ in range(20):  # warm-up
            connect_echo_once(paths[name]["echo"])
    for i in range(args.connects):
        for name in names[i % len(names):] + names[:i % len(names)]:
            out[name].connect.append(connect_echo_once(paths[name]["echo"]))
    conns: dict[str, socket.socket] = {}
    try:
        for name in names:
            conns[name] = socket.create_connection(paths[name]["echo"], timeout=10)
            conns[name].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(50):
                tcp_rtt_once(conns[name])
        for i in range(args.udp):
            for name in names[i % len(names):] + names[:i % len(names)]:
                out[name].tcp_rtt.append(tcp_rtt_once(conns[name]))
    finally:
        for conn in conns.values():
            conn.close()
    socks: dict[str, socket.socket] = {}
    try:
        for name in names:
            socks[name] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks[name].connect(paths[name]["udpecho"])
            socks[name].settimeout(0.5)
            for j in range(50):  # warm-up: the proxies' flows exist
                udp_rtt_once(socks[name], j)
        for i in range(args.udp):
            for name in names[i % len(names):] + names[:i % len(names)]:
                rtt = udp_rtt_once(socks[name], i)
                if rtt is None:
                    out[name].lost += 1
                else:
                    out[name].rtt.append(rtt)
    finally:
        for sock in socks.values():
            sock.close()
    return out


def _ask(s: socket.socket, msg: bytes) -> bytes:
    for _ in range(20):
        s.send(msg)
        try:
            return s.recv(64)
        except TimeoutError:
            continue
    raise RuntimeError(f"udp sink does not answer {msg!r}")


def udp_flood(addr: Addr, n: int) -> tuple[float, float]:
    """(datagrams/s counted by the sink, loss fraction)."""
    payload = bytes(64)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.settimeout(1.0)
        _ask(s, b"RST")
        start = time.perf_counter()
        for _ in range(n):
            try:
                s.send(payload)
            except OSError:  # ECONNREFUSED from an earlier ICMP, ENOBUFS: count as lost
                pass
        time.sleep(0.05)
        got = int(_ask(s, b"END"))
        elapsed = time.perf_counter() - start
        return got / elapsed, 1 - got / n


def measure_path(addrs: dict[str, Addr], args: argparse.Namespace) -> dict[str, Any]:
    """The bulk measures of one path (throughput, UDP flood); the latencies come from paired_latencies."""
    total = args.mb << 20
    wait_echo(addrs["echo"])
    tcp_throughput(addrs["sink"], min(total, 64 << 20))  # warm-up
    tput = tcp_throughput(addrs["sink"], total)
    flood_rate, flood_loss = udp_flood(addrs["udpsink"], args.flood)
    return {"tcp_mbps": tput / 1e6, "udp_flood_per_s": flood_rate, "udp_flood_loss": flood_loss}


def published(engine: Engine, name: str) -> dict[str, Addr]:
    addrs = {}
    for service, port in PORTS.items():
        proto = "udp" if service.startswith("udp") else "tcp"
        out = engine.docker("port", name, f"{port}/{proto}").stdout.split()[0]
        host, _, hport = out.rpartition(":")
        addrs[service] = (host, int(hport))
    return addrs


def memory_ports(engine: Engine, n: int) -> dict[str, Any]:
    """Daemon memory with one container publishing ``n`` TCP ports on 127.0.0.1 (no other container running)."""
    pids = engine.daemon_pids()
    time.sleep(1.0)
    before = sum(rollup(p)["rss"] for p in pids)
    ports = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    flags = [arg for i, p in enumerate(ports) for arg in ("-p", f"127.0.0.1:{p}:{6000 + i}")]
    start = time.perf_counter()
    engine.docker("run", "-d", "--name", "ports50", *flags, "busybox", "sleep", "600")
    run_s = time.perf_counter() - start
    time.sleep(2.0)
    after = sum(rollup(p)["rss"] for p in pids)
    out: dict[str, Any] = {"ports": n, "run_with_ports_s": run_s, "daemon_rss_delta_kib": after - before}
    if isinstance(engine, Docker):
        proxies = [rollup(p) for p in engine.proxy_pids()]
        out["proxy_processes"] = len(proxies)
        out["proxy_rss_sum_kib"] = sum(r["rss"] for r in proxies)
        out["proxy_pss_sum_kib"] = sum(r["pss"] for r in proxies)
        out["ports_memory_kib"] = out["proxy_rss_sum_kib"] + out["daemon_rss_delta_kib"]
    else:
        out["proxy_processes"] = 0
        out["ports_memory_kib"] = out["daemon_rss_delta_kib"]
    engine.docker("rm", "-f", "ports50")
    return out


def start_server(engine: Engine, tar: Path, netsrv: Path) -> tuple[dict[str, Addr], dict[str, Addr]]:
    """Start the engine and the server container; (published addresses, direct addresses)."""
    engine.start()
    engine.docker("load", "-i", str(tar))
    flags = [arg for service, port in PORTS.items()
             for arg in ("-p", f"127.0.0.1::{port}/{'udp' if service.startswith('udp') else 'tcp'}")]
    engine.docker("run", "-d", "--name", "srv", *flags, "-v", f"{netsrv.parent}:/bench:ro", "busybox",
                  "/bench/netsrv", *(f"{s}:{p}" for s, p in PORTS.items()))
    ip = engine.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv").stdout.strip()
    print(f"[{engine.name}] container ip {ip}", flush=True)
    return published(engine, "srv"), {s: (ip, p) for s, p in PORTS.items()}


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over the rounds of every metric (lost datagrams: the sum)."""
    out: dict[str, Any] = {}
    for key in rounds[0]:
        vals = [r[key] for r in rounds if r[key] is not None]
        out[key] = sum(vals) if key == "udp_rtt_lost" else statistics.median(vals) if vals else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--connects", type=int, default=500)
    parser.add_argument("--udp", type=int, default=5000)
    parser.add_argument("--flood", type=int, default=200000)
    parser.add_argument("--ports", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="adk-bench-img-"))
    results: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "json"},
                               "load_before": loadavg()}
    bridge = free_bridge()
    engines: dict[str, Engine] = {"aiodock": Aiodock(bridge=bridge)}
    if not args.skip_docker and shutil.which("dockerd"):
        engines["docker"] = Docker(network=True)
    policy = forward_policy()
    host_srv: subprocess.Popen[bytes] | None = None
    started: list[Engine] = []
    try:
        tar = busybox_tar(work)
        netsrv = build_netsrv(work)
        host_ports = {s: free_port() for s in PORTS}
        host_srv = subprocess.Popen([str(netsrv), *(f"{s}:{p}" for s, p in host_ports.items())],
                                    start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        paths: dict[str, dict[str, Addr]] = {"loopback": {s: ("127.0.0.1", p) for s, p in host_ports.items()}}
        for name, engine in engines.items():
            started.append(engine)
            paths[name], paths["direct" if name == "aiodock" else "direct_docker"] = start_server(engine, tar, netsrv)
        rounds: dict[str, list[dict[str, Any]]] = {path: [] for path in paths}
        for i in range(args.rounds):  # interleaved, so that load from elsewhere on the machine hits every path,
            order = list(paths)  # in a new order each round, so that no path always follows the same one
            random.Random(i).shuffle(order)
            for path in order:
                rounds[path].append(measure_path(paths[path], args))
            for path, latencies in paired_latencies(paths, args).items():
                rounds[path][-1].update(latencies.figures())
                print(f"[round {i} {path}] load {loadavg()}: {rounds[path][-1]}", flush=True)
        for path in paths:
            results[path] = combine(rounds[path])
        results["rounds"] = rounds
        for engine in engines.values():
            engine.docker("rm", "-f", "srv")
        for name, engine in engines.items():
            results[name].update(memory_ports(engine, args.ports))
            print(f"[{name}] {args.ports} ports: {results[name]}", flush=True)
    finally:
        if host_srv is not None:
            os.killpg(host_srv.pid, signal.SIGTERM)  # the server and its one child per service
            host_srv.wait(10)
        for engine in started:
            cleanup(engine)
        left = cleanup_aiodock_network(bridge[0])
        if left:
            print(f"aiodock left (removed now): {left}")
            results["aiodock_left"] = left
        if "docker" in engines:
            results["docker_cleanup"] = cleanup_docker_network(policy)
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = loadavg()
    results["leftovers"] = leftovers()
    print_table(results, extras=("direct", "direct_docker", "loopback"))
    print("leftovers after the run:", results["leftovers"])
    print("written", write_json("proxy.json", results, args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
