"""iptables for bridge networks, in aiodock's own chains (ADK-*), so two daemons never touch each other's rules
and nobody else's rule is ever flushed. Blocking (subprocess): call from a thread.

Per bridge (named after the bridge):
  nat ADK-POST-<br> (from POSTROUTING): MASQUERADE of the subnet out of other interfaces (not for --internal).
  filter ADK-FWD-<br> (from FORWARD): isolation (a jump to the daemon's ADK-ISO chain for traffic leaving the
  bridge for another interface), for --internal networks DROP of anything leaving or entering the subnet, then
  ACCEPT of the bridge's outbound and established inbound traffic.
Per daemon (named after its default bridge, unique per daemon):
  filter ADK-ISO-<d>: `-o <br> -j DROP` for every bridge of the daemon, as Docker's DOCKER-ISOLATION-STAGE-1/2:
  containers on different networks cannot reach each other; one connected to both reaches both.
  nat ADK-DNAT-<d> (from PREROUTING and OUTPUT, local destinations), nat ADK-DPOST-<d> (from POSTROUTING),
  filter ADK-DFWD-<d> (from FORWARD): published ports served by DNAT when the userland proxy is off.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

IPTABLES = "iptables"


def chain_names(bridge: str) -> tuple[str, str]:
    """(nat POSTROUTING chain, filter FORWARD chain); iptables chain names are limited to 28 characters."""
    return f"ADK-POST-{bridge}"[:28], f"ADK-FWD-{bridge}"[:28]


def isolation_chain(tag: str) -> str:
    """The daemon-wide isolation chain; ``tag`` is the daemon's default bridge name."""
    return f"ADK-ISO-{tag}"[:28]


def dnat_chains(tag: str) -> tuple[str, str, str]:
    """(nat DNAT chain, nat POSTROUTING chain, filter FORWARD chain) of a daemon's DNAT-published ports."""
    return f"ADK-DNAT-{tag}"[:28], f"ADK-DPOST-{tag}"[:28], f"ADK-DFWD-{tag}"[:28]


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


def _jumps(listing: list[str], parent: str, chain: str) -> list[str]:
    """Every rule of ``parent`` that jumps to ``chain`` (whatever its matches)."""
    return [ln for ln in listing if ln.startswith(f"-A {parent} ") and ln.endswith(f" -j {chain}")]


def _chain_rules(listing: list[str], chain: str) -> list[str]:
    return [ln for ln in listing if ln.startswith(f"-A {chain} ")]


def enable_forwarding() -> None:
    path = Path("/proc/sys/net/ipv4/ip_forward")
    if path.read_text().strip() != "1":
        path.write_text("1\n")


def _delete_lines(rules: list[str]) -> list[str]:
    return ["-D" + ln[2:] for ln in rules]


def setup(bridge: str, subnet: str, *, internal: bool = False, isolation: str | None = None) -> None:
    """Idempotent: (re)create the bridge's chains with exactly our rules, one jump to each, and the bridge's DROP
    in the daemon's isolation chain ``isolation`` (if given), in one batch per table."""
    enable_forwarding()
    post, fwd = chain_names(bridge)
    nat_listing = _listing("nat")
    script = ["*nat", f":{post} - [0:0]"]  # creates the chain, or flushes it when it exists
    if not _jumps(nat_listing, "POSTROUTING", post):
        script.append(f"-I POSTROUTING 1 -j {post}")
    if not internal:
        script.append(f"-A {post} -s {subnet} ! -o {bridge} -j MASQUERADE")
    script.append("COMMIT")
    listing = _listing("filter")
    script += ["*filter", f":{fwd} - [0:0]"]
    if isolation:
        drop = f"-A {isolation} -o {bridge} -j DROP"
        kept = [ln for ln in _chain_rules(listing, isolation) if ln != drop]
        script.append(f":{isolation} - [0:0]")  # refilled: the other bridges' rules, then ours
        script += kept + [drop]
    if not _jumps(listing, "FORWARD", fwd):
        script.append(f"-I FORWARD 1 -j {fwd}")
    if isolation:
        script.append(f"-A {fwd} -i {bridge} ! -o {bridge} -j {isolation}")
    if internal:
        script += [f"-A {fwd} ! -d {subnet} -i {bridge} -j DROP", f"-A {fwd} ! -s {subnet} -o {bridge} -j DROP"]
    script += [f"-A {fwd} -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
               f"-A {fwd} -i {bridge} -j ACCEPT", "COMMIT"]
    _restore("\n".join(script) + "\n")


def _removal(listing: list[str], jumps: list[str], chains: Sequence[str]) -> list[str]:
    """iptables-restore lines (one table) deleting ``jumps``, then flushing and deleting those of ``chains`` that
    exist in ``listing``."""
    lines = _delete_lines(jumps)
    for chain in chains:
        if f"-N {chain}" in listing:
            lines += [f":{chain} - [0:0]", f"-X {chain}"]
    return lines


def cleanup_all(bridge: str) -> None:
    """Remove the bridge's chains, every jump to them and its DROP in the isolation chain it jumps to (the
    isolation chain itself goes with its last rule); nothing missing is an error."""
    post, fwd = chain_names(bridge)
    script: list[str] = []
    listing = _listing("nat")
    nat_lines = _removal(listing, _jumps(listing, "POSTROUTING", post), [post])
    if nat_lines:
        script += ["*nat", *nat_lines, "COMMIT"]
    listing = _listing("filter")
    isolations = {ln.rsplit(" -j ", 1)[1] for ln in _chain_rules(listing, fwd)
                  if ln.startswith(f"-A {fwd} -i {bridge} ! -o {bridge} -j ADK-ISO-")}
    filter_script = _removal(listing, _jumps(listing, "FORWARD", fwd), [fwd])
    for iso in sorted(isolations):
        drop = f"-A {iso} -o {bridge} -j DROP"
        rest = [ln for ln in _chain_rules(listing, iso) if ln != drop]
        referenced = any(ln.endswith(f" -j {iso}") and not ln.startswith(f"-A {fwd} ") for ln in listing)
        if drop in listing:
            filter_script.append("-D" + drop[2:])
        if not rest and not referenced:
            filter_script.append(f"-X {iso}")
    if filter_script:
        script += ["*filter", *filter_script, "COMMIT"]
    if script:
        _restore("\n".join(script) + "\n")


def prune_isolation(isolation: str, keep: set[str]) -> None:
    """Daemon start: drop the isolation rules of bridges that are not ``keep`` (stale), and the chain when empty
    and unused."""
    listing = _listing("filter")
    if f"-N {isolation}" not in listing:
        return
    stale = [ln for ln in _chain_rules(listing, isolation)
             if not (ln.startswith(f"-A {isolation} -o ") and ln.split()[3] in keep)]
    rest = [ln for ln in _chain_rules(listing, isolation) if ln not in stale]
    script = [*_delete_lines(stale)]
    if not rest and not any(ln.endswith(f" -j {isolation}") for ln in listing):
        script.append(f"-X {isolation}")
    if script:
        _restore("\n".join(["*filter", *script, "COMMIT"]) + "\n")


class DnatMapping(Protocol):
    """One published port (aiodock.proxy.manager.PortMapping has these)."""

    @property
    def proto(self) -> str: ...
    @property
    def host_ip(self) -> str: ...
    @property
    def host_port(self) -> int: ...
    @property
    def container_ip(self) -> str: ...
    @property
    def container_port(self) -> int: ...


def _route_localnet(bridge: str) -> None:
    path = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
    if path.exists() and path.read_text().strip() != "1":
        path.write_text("1\n")


def program_dnat(tag: str, entries: Sequence[tuple[DnatMapping, str]]) -> None:
    """Make the daemon's DNAT chains hold exactly ``entries`` (mapping, container's bridge), as dockerd does with
    --userland-proxy=false: DNAT of local destinations (PREROUTING and OUTPUT, loopback included), ACCEPT of the
    forwarded traffic, MASQUERADE of hairpin traffic and of host-local sources (with route_localnet on the bridge,
    so 127.0.0.1 binds work). No entry: the chains and their jumps are removed."""
    dnat, dpost, dfwd = dnat_chains(tag)
    nat_listing = _listing("nat")
    filter_listing = _listing("filter")
    if not entries:
        script: list[str] = []
        nat_jumps = (_jumps(nat_listing, "PREROUTING", dnat) + _jumps(nat_listing, "OUTPUT", dnat)
                     + _jumps(nat_listing, "POSTROUTING", dpost))
        nat_lines = _removal(nat_listing, nat_jumps, [dnat, dpost])
        if nat_lines:
            script += ["*nat", *nat_lines, "COMMIT"]
        filter_lines = _removal(filter_listing, _jumps(filter_listing, "FORWARD", dfwd), [dfwd])
        if filter_lines:
            script += ["*filter", *filter_lines, "COMMIT"]
        if script:
            _restore("\n".join(script) + "\n")
        return
    enable_forwarding()
    bridges = sorted({br for _, br in entries if br})
    for br in bridges:
        _route_localnet(br)
    nat_rules: list[str] = []
    post_rules = [f"-A {dpost} -o {br} -m addrtype --src-type LOCAL -j MASQUERADE" for br in bridges]
    fwd_rules: list[str] = []
    for m, br in entries:
        dest = f"-d {m.host_ip}/32 " if m.host_ip not in ("", "0.0.0.0") else ""
        match = f"-p {m.proto} -m {m.proto}"
        nat_rules.append(f"-A {dnat} {dest}{match} --dport {m.host_port} -j DNAT "
                         f"--to-destination {m.container_ip}:{m.container_port}")
        post_rules.append(f"-A {dpost} -s {m.container_ip}/32 -d {m.container_ip}/32 {match} "
                          f"--dport {m.container_port} -j MASQUERADE")
        iface = f"! -i {br} -o {br} " if br else ""
        fwd_rules.append(f"-A {dfwd} -d {m.container_ip}/32 {iface}{match} --dport {m.container_port} -j ACCEPT")
    script = ["*nat", f":{dnat} - [0:0]", f":{dpost} - [0:0]"]
    for parent in ("PREROUTING", "OUTPUT"):
        if not _jumps(nat_listing, parent, dnat):
            script.append(f"-A {parent} -m addrtype --dst-type LOCAL -j {dnat}")
    if not _jumps(nat_listing, "POSTROUTING", dpost):
        script.append(f"-I POSTROUTING 1 -j {dpost}")
    script += nat_rules + post_rules + ["COMMIT", "*filter", f":{dfwd} - [0:0]"]
    if not _jumps(filter_listing, "FORWARD", dfwd):
        script.append(f"-A FORWARD -j {dfwd}")  # after the bridges' chains: isolation applies first, as Docker
    script += fwd_rules + ["COMMIT"]
    _restore("\n".join(script) + "\n")


def rules(bridge: str) -> list[str]:
    """Every rule line (iptables -S) in either table that mentions this bridge's chains: for tests and checks."""
    post, fwd = chain_names(bridge)
    found = []
    for table in ("nat", "filter"):
        out = _run("-t", table, "-S", check=False).stdout
        found += [f"{table}: {ln}" for ln in out.splitlines() if post in ln or fwd in ln or bridge in ln]
    return found
