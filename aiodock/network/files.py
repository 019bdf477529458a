"""The /etc/hostname, /etc/hosts and /etc/resolv.conf a container gets, written into its folder.

Blocking: call from a thread.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiodock.util import atomicfile

_LOCAL_NS = re.compile(r"^\s*nameserver\s+(127\.\d+\.\d+\.\d+|::1)\s*$", re.MULTILINE)
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")


def hosts_content(hostname: str, extra_hosts: list[str] | None = None, host_network: bool = False,
                  address: str | None = None) -> str:
    if host_network:
        try:
            return Path("/etc/hosts").read_text()
        except OSError:
            pass
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    for entry in extra_hosts or []:
        name, _, addr = entry.partition(":")
        lines.append(f"{addr}\t{name}")
    if address:
        lines.append(f"{address}\t{hostname}")  # the container's own address, as Docker writes it
    return "\n".join(lines) + "\n"


def resolv_conf_content(host_network: bool = False, dns: list[str] | None = None,
                        dns_search: list[str] | None = None, dns_options: list[str] | None = None) -> str:
    """The host's resolv.conf; in a private network namespace, loopback nameservers are dropped (as Docker does)."""
    try:
        text = Path("/etc/resolv.conf").read_text()
    except OSError:
        text = ""
    if host_network and not (dns or dns_search or dns_options):
        return text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not host_network:
        lines = [ln for ln in lines if not _LOCAL_NS.match(ln)]
    if dns:
        lines = [ln for ln in lines if not ln.lstrip().startswith("nameserver")]
        lines += [f"nameserver {ns}" for ns in dns]
    if dns_search:
        lines = [ln for ln in lines if not ln.lstrip().startswith(("search", "domain"))]
        lines.append("search " + " ".join(dns_search))
    if dns_options:
        lines = [ln for ln in lines if not ln.lstrip().startswith("options")]
        lines.append("options " + " ".join(dns_options))
    if not any(ln.lstrip().startswith("nameserver") for ln in lines):
        lines += [f"nameserver {ns}" for ns in DEFAULT_NAMESERVERS]
    return "\n".join(lines) + "\n"


def write_container_files(cdir: Path, hostname: str, host_network: bool, extra_hosts: list[str] | None = None,
                          dns: list[str] | None = None, dns_search: list[str] | None = None,
                          dns_options: list[str] | None = None, address: str | None = None) -> None:
    atomicfile.write_text(cdir / "hostname", hostname + "\n")
    atomicfile.write_text(cdir / "hosts", hosts_content(hostname, extra_hosts, host_network, address))
    atomicfile.write_text(cdir / "resolv.conf", resolv_conf_content(host_network, dns, dns_search, dns_options))
