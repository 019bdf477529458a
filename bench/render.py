#!/usr/bin/env python3
"""Render a benchmark's JSON as the README's Markdown table: python3 bench/render.py results.json

Reads bench.py's output (bench/results/latest.json) and bench_exec.py's, bench_proxy.py's and bench_registry.py's
(bench/results/exec.json, proxy.json, registry.json); the kind is recognised from the metrics in the file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = [
    ("run_rm_median", "`docker run --rm busybox true`, median (s)", "{:.3f}"),
    ("run_rm_p90", "`docker run --rm busybox true`, p90 (s)", "{:.3f}"),
    ("create_median", "`docker create`, median (s)", "{:.3f}"),
    ("start_median", "`docker start`, median (s)", "{:.3f}"),
    ("stop_median", "`docker stop` (process traps TERM), median (s)", "{:.3f}"),
    ("rm_median", "`docker rm`, median (s)", "{:.3f}"),
    ("parallel_wall", "20 × `docker run -d` at once, wall (s)", "{:.2f}"),
    ("daemon_rss_idle_kib", "daemon RSS idle: aiodock + shim factory / dockerd + containerd (MiB)", "{:.1f}"),
    ("daemon_rss_busy_kib", "daemon RSS, 20 running: same (MiB)", "{:.1f}"),
    ("main_process_rss_idle_kib", "main process RSS idle: aiodock / dockerd (MiB)", "{:.1f}"),
    ("shim_rss_kib", "per-shim RSS (MiB)", "{:.1f}"),
    ("shim_pss_kib", "per-shim PSS (MiB)", "{:.1f}"),
    ("shim_uss_kib", "per-shim USS (MiB)", "{:.1f}"),
]


EXEC_ROWS = [
    ("exec_median_s", "`docker exec ex true`, median (s)", "{:.3f}"),
    ("exec_p90_s", "`docker exec ex true`, p90 (s)", "{:.3f}"),
    ("attach_mbps", "attach: `docker run` (non-TTY) of a container writing {mb} MB to stdout, json-file log on (MB/s)",
     "{:.1f}"),
    ("attach_nolog_mbps", "attach: the same with `--log-driver none` (MB/s)", "{:.1f}"),
    ("attach_total_s", "that `docker run --rm`, whole command (s)", "{:.2f}"),
    ("logs_mbps", "`docker logs` of the {mb} MB (MB/s)", "{:.1f}"),
]

REGISTRY_ROWS = [
    ("push_s", "`docker push` of a {size} MB, {layers}-layer image to a local docker-registry, median (s)", "{:.2f}"),
    ("pull_s", "`docker pull` of what the same engine pushed, image removed, registry warm, median (s)", "{:.2f}"),
    ("pull_gzip_s", "`docker pull` of the image as Docker pushed it (gzip layers), same conditions, median (s)",
     "{:.2f}"),
    ("registry_bytes", "bytes stored in the registry by the push (MB)", "{:.1f}"),
]

PROXY_ROWS = [
    ("tcp_mbps", "TCP host→container through the published 127.0.0.1 port, {mb} MB, one connection (MB/s)", "{:.0f}"),
    ("connect_echo_median_ms", "connect + 1-byte echo + close, median of {connects} (ms)", "{:.3f}"),
    ("connect_echo_p90_ms", "connect + 1-byte echo + close, p90 (ms)", "{:.3f}"),
    ("connect_echo_per_s", "connect + echo round trips per second (sequential)", "{:.0f}"),
    ("tcp_rtt_median_ms", "TCP 1-byte echo round trip on an open connection, one in flight, median of {udp} (ms)",
     "{:.3f}"),
    ("udp_rtt_median_ms", "UDP echo round trip, one in flight, median of {udp} (ms)", "{:.3f}"),
    ("udp_flood_per_s", "UDP datagrams/s received by the container, 64-byte datagrams sent flat out", "{:.0f}"),
    ("udp_flood_loss", "UDP loss in that flood (fraction)", "{:.2f}"),
]


def render_with_limits(results: dict, rows: list, cfg: dict) -> None:  # type: ignore[type-arg]
    """The proxy table: aiodock, Docker and their ratio, then the direct (no proxy) and loopback limits."""
    a, d = results["aiodock"], results.get("docker", {})
    direct, loop = results.get("direct", {}), results.get("loopback", {})
    print("| measure | aiodock | Docker (docker-proxy) | aiodock / Docker | direct to container IP | host loopback |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, label, fmt in rows:
        vals = [a.get(key), d.get(key), direct.get(key), loop.get(key)]
        cells = [fmt.format(v) if isinstance(v, (int, float)) else "-" for v in vals]
        ratio = f"{vals[0] / vals[1]:.2f}" if isinstance(vals[0], (int, float)) and vals[1] else "-"
        print(f"| {label.format(**cfg)} | {cells[0]} | {cells[1]} | {ratio} | {cells[2]} | {cells[3]} |")
    if "ports_memory_kib" in a:
        n = a.get("ports", 50)
        dv = d.get("ports_memory_kib")
        print(f"| {n} published TCP ports: aiodock daemon RSS delta / Docker: {d.get('proxy_processes', n)} "
              f"docker-proxy RSS sum + dockerd delta (MiB) | {a['ports_memory_kib'] / 1024:.1f} | "
              + (f"{dv / 1024:.1f} | {a['ports_memory_kib'] / dv:.3f}" if dv else "- | -") + " | - | - |")
        if "proxy_pss_sum_kib" in d:
            print(f"| same, Docker counted by PSS (shared pages split) (MiB) | {a['ports_memory_kib'] / 1024:.1f} | "
                  f"{(d['proxy_pss_sum_kib'] + d['daemon_rss_delta_kib']) / 1024:.1f} | "
                  f"{a['ports_memory_kib'] / (d['proxy_pss_sum_kib'] + d['daemon_rss_delta_kib']):.3f} | - | - |")


def main() -> int:
    results = json.loads(Path(sys.argv[1]).read_text())
    a, d = results["aiodock"], results.get("docker", {})
    cfg = dict(results.get("config", {}))
    if "image_bytes" in cfg:
        cfg["size"] = round(cfg["image_bytes"] / 1e6)
    if "tcp_mbps" in a:
        render_with_limits(results, PROXY_ROWS, cfg)
        return 0
    rows = EXEC_ROWS if "exec_median_s" in a else REGISTRY_ROWS if "push_s" in a else ROWS
    print("| measure | aiodock | Docker | aiodock / Docker |")
    print("|---|---:|---:|---:|")
    for key, label, fmt in rows:
        scale = 1024 if key.endswith("_kib") else 1e6 if key.endswith("_bytes") else 1
        if a.get(key) is None:
            continue
        av = a[key] / scale
        dv = d[key] / scale if d.get(key) is not None else None
        ratio = f"{av / dv:.2f}" if dv else "-"
        print(f"| {label.format(**cfg)} | {fmt.format(av)} | {fmt.format(dv) if dv is not None else '-'} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
