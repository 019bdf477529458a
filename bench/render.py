#!/usr/bin/env python3
"""Render bench.py's --json output as the README's Markdown table: python3 bench/render.py results.json"""

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


def main() -> int:
    results = json.loads(Path(sys.argv[1]).read_text())
    a, d = results["aiodock"], results.get("docker", {})
    print("| measure | aiodock | Docker | aiodock / Docker |")
    print("|---|---:|---:|---:|")
    for key, label, fmt in ROWS:
        scale = 1024 if key.endswith("_kib") else 1
        av = a[key] / scale
        dv = d[key] / scale if key in d else None
        ratio = f"{av / dv:.2f}" if dv else "-"
        print(f"| {label} | {fmt.format(av)} | {fmt.format(dv) if dv is not None else '-'} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
