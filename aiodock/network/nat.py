"""iptables for a bridge network: forwarding on, MASQUERADE of the subnet out of other interfaces, and FORWARD
accept rules for the bridge. Each daemon's rules live in its own chains, named after its bridge, so two daemons
never touch each other's rules. Blocking (subprocess): call from a thread.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

IPTABLES = "iptables"


def chain_names(bridge: str) -> tuple[str, str]:
    """(nat POSTROUTING chain, filter FORWARD chain); iptables chain names are limited to 28 characters."""
    return f"ADK-POST-{bridge}"[:28], f"ADK-FWD-{bridge}"[:28]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([IPTABLES, "-w", "5", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise OSError(f"iptables {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _restore(script: str) -> None:
    """Apply a batch atomically per table, without touching anybody else's rules (--noflush)."""
    proc = subprocess.run([IPTABLES + "-restore", "-w", "5", "--noflush"], input=script, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise OSError(f"iptables-restore: {proc.stderr.strip()}")


def _listing(table: str) -> list[str]:
    return _run("-t", table, "-S").stdout.splitlines()


def enable_forwarding() -> None:
    path = Path("/proc/sys/net/ipv4/ip_forward")
    if path.read_text().strip() != "1":
        path.write_text("1\n")


def _tables(bridge: str) -> tuple[tuple[str, str, str], ...]:
    post, fwd = chain_names(bridge)
    return (("nat", post, "POSTROUTING"), ("filter", fwd, "FORWARD"))


def setup(bridge: str, subnet: str) -> None:
    """Idempotent: (re)create both chains with exactly our rules, and one jump to each, in one batch."""
    enable_forwarding()
    post, fwd = chain_names(bridge)
    ours = {
        post: [f"-A {post} -s {subnet} ! -o {bridge} -j MASQUERADE"],
        fwd: [f"-A {fwd} -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
              f"-A {fwd} -i {bridge} -j ACCEPT"],
    }
    script = []
    for table, chain, parent in _tables(bridge):
        listing = _listing(table)
        script.append(f"*{table}")
        script.append(f":{chain} - [0:0]")  # creates the chain, or flushes it when it exists
        if f"-A {parent} -j {chain}" not in listing:
            script.append(f"-I {parent} 1 -j {chain}")
        script += ours[chain]
        script.append("COMMIT")
    _restore("\n".join(script) + "\n")


def cleanup_all(bridge: str) -> None:
    """Remove both chains and every jump to them; nothing missing is an error."""
    script = []
    for table, chain, parent in _tables(bridge):
        listing = _listing(table)
        jumps = [ln for ln in listing if ln == f"-A {parent} -j {chain}"]
        exists = f"-N {chain}" in listing
        if not jumps and not exists:
            continue
        script.append(f"*{table}")
        script += [f"-D {parent} -j {chain}" for _ in jumps]
        if exists:
            script += [f":{chain} - [0:0]", f"-X {chain}"]
        script.append("COMMIT")
    if script:
        _restore("\n".join(script) + "\n")


def rules(bridge: str) -> list[str]:
    """Every rule line (iptables -S) in either table that mentions this bridge's chains: for tests and checks."""
    post, fwd = chain_names(bridge)
    found = []
    for table in ("nat", "filter"):
        out = _run("-t", table, "-S", check=False).stdout
        found += [f"{table}: {ln}" for ln in out.splitlines() if post in ln or fwd in ln or bridge in ln]
    return found
