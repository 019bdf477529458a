"""The /etc/hostname, /etc/hosts and /etc/resolv.conf a container gets, written into its folder.

Blocking: call from a thread.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiodock.util import atomicfile

_LOCAL_NS = re.compile(r"^\s*nameserver\s+(127\.\d+\.\d+\.\d+|::1)\s*$", re.MULTILINE)
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
EMBEDDED_DNS = "127.0.0.11"


def _host_resolv_conf() -> str:
    try:
        return Path("/etc/resolv.conf").read_text()
    except OSError:
        return ""


def external_nameservers(dns: list[str] | None = None) -> list[str]:
    """Where the embedded DNS server forwards a container's other questions (from the host's namespace, so
    loopback servers of the host work too): its --dns, else the host's nameservers, else Google's."""
    if dns:
        return list(dns)
    found = []
    for line in _host_resolv_conf().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            found.append(parts[1].split("%")[0])
    return found or list(DEFAULT_NAMESERVERS)


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


def embedded_resolv_conf(dns_search: list[str] | None = None, dns_options: list[str] | None = None) -> str:
    """A container on a user-defined network asks the embedded server (as Docker writes it): the host's (or
    --dns-search) search domains, nameserver 127.0.0.11, the host's (or --dns-option) options plus ndots:0."""
    search: list[str] = list(dns_search or [])
    options: list[str] = list(dns_options or [])
    for line in _host_resolv_conf().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] in ("search", "domain") and not dns_search:
            search = parts[1:]
        elif parts[0] == "options" and not dns_options:
            options += parts[1:]
    if not any(o.startswith("ndots:") for o in options):
        options.append("ndots:0")
    lines = []
    if search and " ".join(search).strip() != ".":
        lines.append("search " + " ".join(search))
    lines.append(f"nameserver {EMBEDDED_DNS}")
    lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def resolv_conf_content(host_network: bool = False, dns: list[str] | None = None,
                        dns_search: list[str] | None = None, dns_options: list[str] | None = None) -> str:
    """The host's resolv.conf; in a private network namespace, loopback nameservers are dropped (as Docker does)."""
    text = _host_resolv_conf()
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
                          dns_options: list[str] | None = None, address: str | None = None,
                          embedded_dns: bool = False) -> None:
    """``embedded_dns``: the container is on a user-defined network and asks 127.0.0.11."""
    atomicfile.write_text(cdir / "hostname", hostname + "\n")
    atomicfile.write_text(cdir / "hosts", hosts_content(hostname, extra_hosts, host_network, address))
    atomicfile.write_text(cdir / "resolv.conf", embedded_resolv_conf(dns_search, dns_options) if embedded_dns
                          else resolv_conf_content(host_network, dns, dns_search, dns_options))
