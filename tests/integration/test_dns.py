"""Issue #5 (part A): the embedded DNS server (127.0.0.11 in every container on a user network), network-scoped
aliases and fixed addresses (--ip) on user networks.

Real bridges, veths and network namespaces, the docker CLI and docker-py; the only other DNS server is a tiny one
this module runs on the host's loopback (127.0.0.153:53), standing for a container's external --dns server.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

EXTERNAL_DNS = "127.0.0.153"
RECORDS = {"some.test": "10.9.8.7", "big.test": "10.9.8.8"}  # big.test: truncated over UDP, whole over TCP


# ---- a tiny external DNS server on the host's loopback (its own minimal codec) -------------------------------

@dataclass
class ExternalDns:
    asked: list[tuple[str, str]] = field(default_factory=list)  # (transport, name)
    stop: threading.Event = field(default_factory=threading.Event)

    @staticmethod
    def _qname(msg: bytes) -> tuple[str, int]:
        labels, pos = [], 12
        while msg[pos]:
            labels.append(msg[pos + 1:pos + 1 + msg[pos]].decode())
            pos += 1 + msg[pos]
        return ".".join(labels).lower(), pos + 5  # past the root label, QTYPE and QCLASS

    def reply(self, msg: bytes, transport: str) -> bytes:
        name, end = self._qname(msg)
        qtype = struct.unpack("!H", msg[end - 4:end - 2])[0]
        self.asked.append((transport, name))
        qid, flags = struct.unpack("!HH", msg[:4])
        question = msg[12:end]
        base = 0x8000 | (flags & 0x0100) | 0x0080
        if name not in RECORDS:
            return struct.pack("!6H", qid, base | 3, 1, 0, 0, 0) + question  # NXDOMAIN
        if name == "big.test" and transport == "udp":
            return struct.pack("!6H", qid, base | 0x0200, 1, 0, 0, 0) + question  # TC: ask again over TCP
        answers = b""
        if qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(RECORDS[name])
        return struct.pack("!6H", qid, base, 1, 1 if answers else 0, 0, 0) + question + answers

    @contextlib.contextmanager
    def serve(self) -> Iterator[None]:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind((EXTERNAL_DNS, 53))
        tcp.bind((EXTERNAL_DNS, 53))
        tcp.listen(8)
        udp.settimeout(0.2)
        tcp.settimeout(0.2)

        def udp_loop() -> None:
            while not self.stop.is_set():
                try:
                    msg, addr = udp.recvfrom(4096)
                except TimeoutError:
                    continue
                udp.sendto(self.reply(msg, "udp"), addr)

        def tcp_loop() -> None:
            while not self.stop.is_set():
                try:
                    conn, _ = tcp.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(5)
                    (length,) = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))
                    answer = self.reply(conn.recv(length, socket.MSG_WAITALL), "tcp")
                    conn.sendall(struct.pack("!H", len(answer)) + answer)

        threads = [threading.Thread(target=udp_loop, daemon=True), threading.Thread(target=tcp_loop, daemon=True)]
        for t in threads:
            t.start()
        try:
            yield
        finally:
            self.stop.set()
            for t in threads:
                t.join(5)
            udp.close()
            tcp.close()


@pytest.fixture(scope="module")
def external_dns() -> Iterator[ExternalDns]:
    server = ExternalDns()
    with server.serve():
        yield server


# ---- networks -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Nets:
    d: Daemon
    a: str  # user network with a configured subnet
    b: str  # a second one
    c: str  # user network without --subnet
    prefix_a: str  # "10.215.N."
    prefix_b: str


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def nets(daemon: Daemon) -> Iterator[Nets]:
    n = int(daemon.bip.split(".")[2])
    result = Nets(daemon, "adk-dnsA", "adk-dnsB", "adk-dnsC", f"10.215.{n}.", f"10.216.{n}.")
    daemon.docker("network", "create", "--subnet", f"{result.prefix_a}0/24", result.a, check=True)
    daemon.docker("network", "create", "--subnet", f"{result.prefix_b}0/24", result.b, check=True)
    daemon.docker("network", "create", result.c, check=True)
    bridges = []
    try:
        yield result
    finally:
        daemon.remove_all_containers()
        for name in (result.a, result.b, result.c):
            info = json.loads(daemon.api("GET", f"/networks/{name}")[1])
            bridges.append(f"br-{info['Id'][:12]}")
            daemon.docker("network", "rm", name)
        from aiodock.network import bridge, nat

        for name in bridges:
            nat.cleanup_all(name)
            bridge.delete(name)
        assert not any(f" {b}:" in links() for b in bridges)
        netns_dir = daemon.exec_root / "netns"
        assert not netns_dir.exists() or not list(netns_dir.iterdir())


def inspect(d: Daemon, ref: str) -> dict:  # type: ignore[type-arg]
    return json.loads(d.docker("inspect", ref, check=True).stdout)[0]  # type: ignore[no-any-return]


def run_web(d: Daemon, *args: str) -> str:
    """A busybox httpd serving /etc (so /hostname names the container) on port 80."""
    return d.docker("run", "-d", *args, "busybox", "httpd", "-f", "-p", "80", "-h", "/etc", check=True).stdout.strip()


def sleeper(d: Daemon, *args: str) -> str:
    return d.docker("run", "-d", *args, "busybox", "sleep", "600", check=True).stdout.strip()


def sh(d: Daemon, *run_args: str, script: str) -> subprocess.CompletedProcess[str]:
    return d.docker("run", "--rm", *run_args, "busybox", "sh", "-c", script, timeout=120)


def socket_fds(d: Daemon) -> int:
    assert d.proc is not None
    fd_dir = Path(f"/proc/{d.proc.pid}/fd")
    count = 0
    for fd in fd_dir.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            pass
    return count


# ---- tests --------------------------------------------------------------------------------------------------

def test_names_aliases_and_short_ids_resolve_on_a_user_network(nets: Nets) -> None:
    d = nets.d
    web = run_web(d, "--name", "adk-dns-web", "--network", nets.a, "--network-alias", "webalias",
                  "--network-alias", "www")
    try:
        endpoint = inspect(d, web)["NetworkSettings"]["Networks"][nets.a]
        assert endpoint["Aliases"] == ["webalias", "www", web[:12]]  # Docker adds the short id
        assert endpoint["IPAMConfig"] is None
        ip = endpoint["IPAddress"]
        out = sh(d, "--network", nets.a, script=(
            "cat /etc/resolv.conf; ping -c1 -W5 adk-dns-web && wget -q -O- http://webalias/hostname && "
            f"nslookup {web[:12]} && nslookup WWW && nslookup adk-dns-web.{nets.a} && nslookup {ip}"))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "nameserver 127.0.0.11" in out.stdout and "options ndots:0" in out.stdout
        assert f"PING adk-dns-web ({ip})" in out.stdout and "1 packets received" in out.stdout
        assert f"{web[:12]}\n" in out.stdout  # the httpd's /etc/hostname, fetched by alias
        assert out.stdout.count(f"Address: {ip}") == 3  # short id, alias (any case), <name>.<network>
        assert f"name = adk-dns-web.{nets.a}" in out.stdout  # PTR
        # the default bridge keeps the host's servers (no embedded DNS there, as Docker)
        plain = sh(d, script="cat /etc/resolv.conf")
        assert plain.returncode == 0 and "127.0.0.11" not in plain.stdout and "nameserver" in plain.stdout
    finally:
        d.docker("rm", "-f", web)


def test_names_are_scoped_to_the_networks_a_container_shares(nets: Nets, external_dns: ExternalDns) -> None:
    d = nets.d
    before = socket_fds(d)
    web = run_web(d, "--name", "adk-dns-scoped", "--network", nets.a, "--network-alias", "scopedalias")
    try:
        other = sh(d, "--network", nets.b, "--dns", EXTERNAL_DNS, script="nslookup adk-dns-scoped")
        assert other.returncode != 0 and "NXDOMAIN" in other.stdout + other.stderr
        assert ("udp", "adk-dns-scoped") in external_dns.asked  # not ours on that network: forwarded
        alias = sh(d, "--network", nets.b, "--dns", EXTERNAL_DNS, script="nslookup scopedalias")
        assert alias.returncode != 0
        forwarded = len(external_dns.asked)
        same = sh(d, "--network", nets.a, "--dns", EXTERNAL_DNS, script="nslookup adk-dns-scoped")
        assert same.returncode == 0, same.stdout + same.stderr
        assert len(external_dns.asked) == forwarded  # answered locally on the shared network
    finally:
        d.docker("rm", "-f", web)
    deadline = time.monotonic() + 15  # every container's DNS sockets are closed with it
    while socket_fds(d) > before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert socket_fds(d) <= before


def test_external_names_are_forwarded_with_tcp_fallback(nets: Nets, external_dns: ExternalDns) -> None:
    d = nets.d
    out = sh(d, "--network", nets.a, "--dns", EXTERNAL_DNS, "--dns-search", "corp.test", "--dns-option", "attempts:2",
             script="nslookup some.test; nslookup big.test; nslookup missing.test; cat /etc/resolv.conf")
    assert "Address: 10.9.8.7" in out.stdout, out.stdout + out.stderr
    assert "Address: 10.9.8.8" in out.stdout  # truncated over UDP; the daemon asked again over TCP
    assert ("tcp", "big.test") in external_dns.asked and ("udp", "big.test") in external_dns.asked
    assert "can't find missing.test: NXDOMAIN" in out.stdout + out.stderr
    # as Docker writes it: --dns goes to the embedded server, search and options stay
    assert "search corp.test\nnameserver 127.0.0.11\noptions attempts:2 ndots:0\n" in out.stdout
    assert EXTERNAL_DNS not in out.stdout


def test_fixed_ip_is_reserved_and_shown(nets: Nets) -> None:
    d = nets.d
    fixed = nets.prefix_a + "50"
    cid = sleeper(d, "--name", "adk-dns-fixed", "--network", nets.a, "--ip", fixed)
    try:
        addr = d.docker("exec", cid, "ip", "-4", "-o", "addr", "show", "eth0", check=True).stdout
        assert f"inet {fixed}/24" in addr
        endpoint = inspect(d, cid)["NetworkSettings"]["Networks"][nets.a]
        assert endpoint["IPAddress"] == fixed and endpoint["IPAMConfig"] == {"IPv4Address": fixed}
        members = json.loads(d.docker("network", "inspect", nets.a, check=True).stdout)[0]["Containers"]
        assert members[cid]["IPv4Address"] == f"{fixed}/24" and members[cid]["Name"] == "adk-dns-fixed"
        taken = d.docker("run", "--rm", "--network", nets.a, "--ip", fixed, "busybox", "true")
        assert taken.returncode == 125 and "Address already in use" in taken.stderr
        d.docker("stop", "-t", "0", cid, check=True)
        # reserved while the container exists: neither taken by another --ip nor handed out dynamically
        again = d.docker("run", "--rm", "--network", nets.a, "--ip", fixed, "busybox", "true")
        assert again.returncode == 125 and "Address already in use" in again.stderr
        d.docker("start", cid, check=True)
        assert inspect(d, cid)["NetworkSettings"]["Networks"][nets.a]["IPAddress"] == fixed
    finally:
        d.docker("rm", "-f", cid)
    free = d.docker("run", "--rm", "--network", nets.a, "--ip", fixed, "busybox", "ip", "-4", "-o", "addr", "show",
                    "eth0")
    assert free.returncode == 0 and f"inet {fixed}/24" in free.stdout  # freed by docker rm


@pytest.mark.parametrize(("args", "message"), [
    (["--network", "adk-dnsA", "--ip", "10.99.0.5"],
     "Invalid address 10.99.0.5: It does not belong to any of this network's subnets"),
    (["--network", "adk-dnsC", "--ip", "10.99.0.5"],
     "user specified IP address is supported only when connecting to networks with user configured subnets"),
    (["--ip", "172.17.0.99"], "user specified IP address is supported on user defined networks only"),
    (["--network", "adk-dnsA", "--ip", "nonsense"], "invalid IPv4 address: nonsense"),
])
def test_bad_endpoint_settings_give_dockers_errors(nets: Nets, args: list[str], message: str) -> None:
    before = nets.d.docker("ps", "-aq", check=True).stdout
    out = nets.d.docker("run", "--rm", *args, "busybox", "true")
    assert out.returncode == 125 and message in out.stderr, out.stderr
    assert nets.d.docker("ps", "-aq", check=True).stdout == before  # nothing left behind


def test_bad_endpoint_settings_over_the_api(nets: Nets) -> None:
    d = nets.d
    gateway = nets.prefix_a + "1"

    def create(endpoints: object, mode: str = "adk-dnsA") -> tuple[int, dict]:  # type: ignore[type-arg]
        status, body = d.api("POST", "/containers/create", {
            "Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": mode},
            "NetworkingConfig": {"EndpointsConfig": endpoints}})
        return status, json.loads(body)

    status, body = create({"adk-dnsA": {"IPAMConfig": {"IPv4Address": "10.99.0.5"}}})
    assert status == 400 and "does not belong to any of this network's subnets" in body["message"]
    status, body = create({"adk-dnsA": {"IPAMConfig": {"IPv4Address": gateway}}})
    assert (status, body["message"]) == (403, "Address already in use")
    status, body = create({"adk-dnsA": {}, "adk-dnsB": {}})
    assert status == 400 and body["message"].startswith("Container cannot be connected to network endpoints: ")
    status, body = create({"adk-dnsA": {"Aliases": "notalist"}})
    assert status == 400
    status, body = create({"default": {"Aliases": ["x"]}}, mode="default")  # the docker CLI checks this itself
    assert (status, body["message"]) == (
        400, "network-scoped alias is supported only for containers in user defined networks")
    status, body = create({"adk-dnsC": {"IPAMConfig": {"IPv4Address": "10.1.2.3"}}}, mode="adk-dnsC")
    assert status == 400 and "user configured subnets" in body["message"]
    cid = sleeper(d, "--network", nets.b)
    try:
        status, raw = d.api("POST", f"/networks/{nets.a}/connect", {
            "Container": cid, "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.99.0.5"}}})
        assert status == 400 and "does not belong" in json.loads(raw)["message"]
        status, raw = d.api("POST", "/networks/bridge/connect", {
            "Container": cid, "EndpointConfig": {"Aliases": ["x"]}})
        assert status == 400 and "network-scoped alias" in json.loads(raw)["message"]
        assert set(inspect(d, cid)["NetworkSettings"]["Networks"]) == {nets.b}
    finally:
        d.docker("rm", "-f", cid)


def test_connect_alias_resolves_and_disconnect_removes_the_name(nets: Nets, external_dns: ExternalDns) -> None:
    d = nets.d
    late = sleeper(d, "--name", "adk-dns-late", "--network", nets.b)
    asker = sleeper(d, "--name", "adk-dns-asker", "--network", nets.a, "--dns", EXTERNAL_DNS)
    try:
        before = d.docker("exec", asker, "nslookup", "latealias")
        assert before.returncode != 0 and "NXDOMAIN" in before.stdout + before.stderr
        d.docker("network", "connect", "--alias", "latealias", "--ip", nets.prefix_a + "60", nets.a, late,
                 check=True)
        endpoint = inspect(d, late)["NetworkSettings"]["Networks"][nets.a]
        assert endpoint["Aliases"] == ["latealias", late[:12]]
        assert endpoint["IPAMConfig"] == {"IPv4Address": nets.prefix_a + "60"}
        for name in ("latealias", "adk-dns-late"):
            out = d.docker("exec", asker, "nslookup", name)
            assert out.returncode == 0 and f"Address: {nets.prefix_a}60" in out.stdout, out.stdout + out.stderr
        # the late container resolves the asker through the network they now share (its own server started)
        back = d.docker("exec", late, "nslookup", "adk-dns-asker", "127.0.0.11")
        assert back.returncode == 0 and nets.prefix_a in back.stdout, back.stdout + back.stderr
        d.docker("network", "disconnect", nets.a, late, check=True)
        gone = d.docker("exec", asker, "nslookup", "adk-dns-late")
        assert gone.returncode != 0 and "NXDOMAIN" in gone.stdout + gone.stderr
        assert d.docker("exec", asker, "nslookup", "latealias").returncode != 0
    finally:
        d.docker("rm", "-f", late, asker)


def test_docker_py_endpoint_config(nets: Nets) -> None:
    docker = pytest.importorskip("docker")
    d = nets.d
    client = docker.APIClient(base_url=d.host, version="1.41")
    made = []
    try:
        config = client.create_networking_config({nets.a: client.create_endpoint_config(
            aliases=["pyalias"], ipv4_address=nets.prefix_a + "70")})
        container = client.create_container("busybox", ["sleep", "600"], name="adk-dns-py",
                                            host_config=client.create_host_config(network_mode=nets.a),
                                            networking_config=config)
        made.append(container["Id"])
        client.connect_container_to_network(container["Id"], nets.b, aliases=["pyb"],
                                            ipv4_address=nets.prefix_b + "9")  # while created, not running
        client.start(container["Id"])
        networks = client.inspect_container(container["Id"])["NetworkSettings"]["Networks"]
        assert networks[nets.a]["IPAddress"] == nets.prefix_a + "70"
        assert networks[nets.a]["Aliases"] == ["pyalias", container["Id"][:12]]
        assert networks[nets.b]["IPAddress"] == nets.prefix_b + "9" and "pyb" in networks[nets.b]["Aliases"]
        out = sh(d, "--network", nets.b, script="nslookup pyb && nslookup adk-dns-py && ! nslookup pyalias")
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.count(f"Address: {nets.prefix_b}9") == 2
    finally:
        for cid in made:
            client.remove_container(cid, force=True)
        client.close()


def test_dns_servers_come_back_after_a_daemon_restart(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    n = int(d.bip.split(".")[2])
    nid = d.docker("network", "create", "--subnet", f"10.217.{n}.0/24", "adk-dns-r", check=True).stdout.strip()
    try:
        web = run_web(d, "--name", "adk-dns-rweb", "--network", "adk-dns-r", "--network-alias", "rweb")
        asker = sleeper(d, "--name", "adk-dns-rask", "--network", "adk-dns-r")
        fixed = d.docker("create", "--network", "adk-dns-r", "--ip", f"10.217.{n}.40", "busybox", "sleep", "600",
                         check=True).stdout.strip()
        assert d.docker("exec", asker, "nslookup", "rweb").returncode == 0
        d.stop()  # containers keep running; their DNS sockets close with the daemon
        d.start()
        out = d.docker("exec", asker, "sh", "-c", "nslookup rweb && wget -q -O- http://adk-dns-rweb/hostname")
        assert out.returncode == 0 and f"{web[:12]}\n" in out.stdout, out.stdout + out.stderr
        taken = d.docker("run", "--rm", "--network", "adk-dns-r", "--ip", f"10.217.{n}.40", "busybox", "true")
        assert "Address already in use" in taken.stderr  # the reservation outlived the restart
        d.docker("start", fixed, check=True)
        assert inspect(d, fixed)["NetworkSettings"]["Networks"]["adk-dns-r"]["IPAddress"] == f"10.217.{n}.40"
        d.docker("rm", "-f", web, asker, fixed, check=True)
        d.docker("network", "rm", "adk-dns-r", check=True)
        assert not (d.data_root / "network" / "dns").exists() or not list((d.data_root / "network" / "dns").iterdir())
        assert not (d.data_root / "network" / "endpoint-config").exists() or \
            not list((d.data_root / "network" / "endpoint-config").iterdir())
    finally:
        from aiodock.network import bridge, nat

        nat.cleanup_all(f"br-{nid[:12]}")
        bridge.delete(f"br-{nid[:12]}")


PROBE = r"""
import socket, struct, sys
name = sys.argv[1]
def query(qid, flags=0x0100, qname=name, qtype=1):
    q = b"".join(bytes([len(p)]) + p.encode() for p in qname.split(".")) + b"\0"
    return struct.pack("!6H", qid, flags, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.connect(("127.0.0.11", 53))
def ask(msg):
    u.send(msg)
    return u.recv(4096)
r = ask(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05abc")  # a question cut short
print("malformed", struct.unpack("!H", r[:2])[0], struct.unpack("!H", r[2:4])[0] & 0xF)
r = ask(query(7, flags=0x2000))  # opcode UPDATE
print("opcode", struct.unpack("!H", r[2:4])[0] & 0xF)
r = ask(query(8, qtype=28))  # AAAA of a container: no IPv6 address, but the name exists
print("aaaa", struct.unpack("!H", r[2:4])[0] & 0xF, struct.unpack("!H", r[6:8])[0])
t = socket.create_connection(("127.0.0.11", 53), timeout=5)
for qid in (9, 10):  # two questions on one TCP connection
    m = query(qid)
    t.sendall(struct.pack("!H", len(m)) + m)
    n = struct.unpack("!H", t.recv(2, socket.MSG_WAITALL))[0]
    r = t.recv(n, socket.MSG_WAITALL)
    print("tcp", struct.unpack("!H", r[:2])[0], struct.unpack("!H", r[6:8])[0], socket.inet_ntoa(r[-4:]))
"""


def test_protocol_edges_over_udp_and_tcp(nets: Nets) -> None:
    d = nets.d
    target = sleeper(d, "--name", "adk-dns-probe-target", "--network", nets.a)
    asker = sleeper(d, "--network", nets.a)
    try:
        ip = inspect(d, target)["NetworkSettings"]["Networks"][nets.a]["IPAddress"]
        netns_path = d.exec_root / "netns" / asker
        out = subprocess.run(["nsenter", f"--net={netns_path}", "python3", "-c", PROBE, "adk-dns-probe-target"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "malformed 4660 1"  # FORMERR, with the asker's id
        assert lines[1] == "opcode 4"  # NOTIMP
        assert lines[2] == "aaaa 0 0"  # NOERROR, no answer
        assert lines[3:] == [f"tcp 9 1 {ip}", f"tcp 10 1 {ip}"]
    finally:
        d.docker("rm", "-f", target, asker)
