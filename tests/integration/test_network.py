"""Issue #5: the default bridge network and published ports through the in-process proxy.

Real bridges, veths, network namespaces and iptables; traffic only over loopback and the daemon's own bridge.
Every test checks that the container's veth, netns file and rules are gone after `docker rm`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

UDP_ECHO = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', 5353))\n"
    "while True:\n"
    "    data, addr = s.recvfrom(2048)\n"
    "    s.sendto(b'echo:' + data, addr)\n"
)
HOST_PYTHON = ["-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro"]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def iptables_save() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def inspect(daemon: Daemon, ref: str) -> dict:  # type: ignore[type-arg]
    return json.loads(daemon.docker("inspect", ref, check=True).stdout)[0]  # type: ignore[no-any-return]


def http_get(url: str, timeout: float = 5) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read()  # type: ignore[no-any-return]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run_web(daemon: Daemon, *args: str) -> str:
    """A busybox httpd serving /etc (so /hostname names the container) on port 80."""
    return daemon.docker("run", "-d", *args, "busybox", "httpd", "-f", "-p", "80", "-h", "/etc",
                         check=True).stdout.strip()


def assert_endpoint_gone(daemon: Daemon, cid: str, ip: str) -> None:
    assert f"veth{cid[:7]}" not in links()
    assert not (daemon.exec_root / "netns" / cid).exists()
    assert not any(cid in line for line in open("/proc/self/mountinfo"))
    assert ip not in iptables_save()


def assert_no_endpoints(daemon: Daemon) -> None:
    """With no container attached: no network namespace or veth of this daemon's is left."""
    netns_dir = daemon.exec_root / "netns"
    assert not netns_dir.exists() or not list(netns_dir.iterdir())
    assert not any(line.split()[4].startswith(str(netns_dir)) for line in open("/proc/self/mountinfo"))


def assert_bridge_gone(daemon: Daemon) -> None:
    """After the daemon stopped with no container on it: its bridge and iptables chains are gone too."""
    deadline = time.monotonic() + 10
    while f" {daemon.bridge_name}:" in links() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f" {daemon.bridge_name}:" not in links()
    assert daemon.bridge_name not in iptables_save()


def force_clean(daemon: Daemon, bridges: list[str]) -> None:
    """After a failed test: no bridge, chain or rule of ours is left on the host either way."""
    from aiodock.network import bridge, nat

    for name in bridges:
        nat.cleanup_all(name)
        bridge.delete(name)
    nat.program_dnat(daemon.bridge_name, [])
    if daemon.bridge_name in bridges:
        nat.prune_isolation(nat.isolation_chain(daemon.bridge_name), set())


def ours(daemon: Daemon, rules: str, bridges: list[str]) -> list[str]:
    """The iptables-save lines of this daemon: its chains (named after its bridges) and rules naming its bridges."""
    return [ln for ln in rules.splitlines() if any(b in ln for b in [daemon.bridge_name, *bridges])]


@pytest.fixture(scope="module")
def net(daemon: Daemon) -> Iterator[Daemon]:
    """The module's daemon; afterwards its user networks are removed, and no endpoint and no iptables rule of ours
    beyond the default bridge's (which stays while the daemon runs) may be left."""
    before = iptables_save()
    yield daemon
    bridges = [daemon.bridge_name]
    try:
        daemon.remove_all_containers()
        for item in json.loads(daemon.api("GET", "/networks")[1]):
            if item["Name"] not in ("bridge", "host", "none"):
                bridges.append(item["Options"].get("com.docker.network.bridge.name") or f"br-{item['Id'][:12]}")
                daemon.api("DELETE", f"/networks/{item['Id']}")
        assert_no_endpoints(daemon)
        extra = set(ours(daemon, iptables_save(), bridges[1:])) - set(before.splitlines())
        assert not [ln for ln in extra if daemon.bridge_name not in ln], extra
    finally:
        force_clean(daemon, bridges)


def test_container_gets_eth0_in_subnet_with_default_route(net: Daemon) -> None:
    subnet = ipaddress.ip_interface(net.bip).network
    gateway = net.bip.split("/")[0]
    out = net.docker("run", "--rm", "busybox", "sh", "-c", "ip -4 -o addr show eth0; ip route; ip link show eth0",
                     check=True).stdout
    addr = ipaddress.ip_interface(out.split(" inet ")[1].split()[0])
    assert addr.ip in subnet and addr.network == subnet
    assert f"default via {gateway} dev eth0" in out
    assert "link/ether 02:42:" + ":".join(f"{b:02x}" for b in addr.ip.packed) in out
    assert_no_endpoints(net)
    assert f" {net.bridge_name}:" in links()  # the default bridge stays up while the daemon runs, like docker0


def test_two_containers_reach_each_other(net: Daemon) -> None:
    web = run_web(net, "--name", "net-web")
    try:
        info = inspect(net, web)
        ip = info["NetworkSettings"]["IPAddress"]
        assert info["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ip
        assert info["NetworkSettings"]["Gateway"] == net.bip.split("/")[0]
        assert info["NetworkSettings"]["MacAddress"].startswith("02:42:")
        out = net.docker("run", "--rm", "busybox", "sh", "-c",
                         f"ping -c1 -W2 {ip} >/dev/null && echo pinged; "
                         f"for i in 1 2 3 4 5; do wget -q -O- http://{ip}/hostname && break; sleep 0.2; done",
                         check=True).stdout
        assert "pinged" in out
        assert web[:12] in out
    finally:
        net.docker("rm", "-f", web)
    assert_endpoint_gone(net, web, ip)


def test_published_tcp_port_answers_the_host(net: Daemon) -> None:
    port = free_port()
    web = run_web(net, "-p", f"127.0.0.1:{port}:80")
    try:
        ip = inspect(net, web)["NetworkSettings"]["IPAddress"]
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web[:12].encode()
        assert net.docker("port", web, check=True).stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
        assert inspect(net, web)["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                                              "HostPort": str(port)}]}
        ps = net.docker("ps", "--format", "{{.Ports}}", "--filter", f"id={web}", check=True).stdout.strip()
        assert ps == f"127.0.0.1:{port}->80/tcp"
    finally:
        net.docker("rm", "-f", web)
    assert_endpoint_gone(net, web, ip)
    with pytest.raises(OSError):  # the host port is released with the container
        urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=2)


def test_tcp_proxy_half_close_and_back_pressure(net: Daemon) -> None:
    echo_port, sink_port = free_port(), free_port()
    echo = net.docker("run", "-d", "-p", f"127.0.0.1:{echo_port}:7000", "busybox", "nc", "-ll", "-p", "7000", "-e",
                      "cat", check=True).stdout.strip()
    sink = net.docker("run", "-d", "-p", f"127.0.0.1:{sink_port}:7000", "busybox", "nc", "-ll", "-p", "7000",
                      "-e", "sleep", "60", check=True).stdout.strip()
    try:
        # Half-close: cat answers everything and exits only after it sees our EOF through the proxy.
        received = b""
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", echo_port), timeout=5) as s:
                s.sendall(b"hello through the proxy\n")
                s.shutdown(socket.SHUT_WR)
                try:
                    while chunk := s.recv(4096):
                        received += chunk
                except ConnectionError:
                    pass
            if not received:
                time.sleep(0.2)  # nc not listening yet
        assert received == b"hello through the proxy\n"
        # Back-pressure: the sink never reads, so the proxy must stop reading from us after a bounded amount.
        sent = 0
        with socket.create_connection(("127.0.0.1", sink_port), timeout=3) as s:
            chunk = b"x" * (1 << 20)
            with pytest.raises(TimeoutError):
                while sent < 256 << 20:
                    s.sendall(chunk)
                    sent += len(chunk)
        assert sent < 64 << 20, f"the proxy buffered {sent} bytes for a peer that does not read"
    finally:
        net.docker("rm", "-f", echo, sink)


def test_udp_echo_through_published_port(net: Daemon) -> None:
    port = free_port(socket.SOCK_DGRAM)
    cid = net.docker("run", "-d", "-p", f"127.0.0.1:{port}:5353/udp", *HOST_PYTHON, "busybox",
                     "/usr/bin/python3", "-u", "-c", UDP_ECHO, check=True).stdout.strip()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            answer = b""
            for _ in range(30):  # until the server in the container is up
                s.sendto(b"ping", ("127.0.0.1", port))
                try:
                    answer, _ = s.recvfrom(2048)
                    break
                except TimeoutError:
                    continue
            assert answer == b"echo:ping"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:  # a second client: its own flow
                other.settimeout(2)
                other.sendto(b"two", ("127.0.0.1", port))
                assert other.recvfrom(2048)[0] == b"echo:two"
            # A flood through the port, whose datagrams the daemon's loop relays inline: the API still answers.
            stop = threading.Event()

            def flood() -> None:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as f:
                    f.setblocking(False)
                    while not stop.is_set():
                        try:
                            f.sendto(b"x" * 64, ("127.0.0.1", port))
                        except OSError:  # the client's own buffer full
                            time.sleep(0)

            flooder = threading.Thread(target=flood)
            flooder.start()
            try:
                time.sleep(0.2)
                for _ in range(5):
                    started = time.monotonic()
                    assert net.api("GET", "/_ping", timeout=5)[0] == 200
                    assert time.monotonic() - started < 1.0
            finally:
                stop.set()
                flooder.join()
            answer = b""
            for _ in range(10):  # the flood's tail may still be in the queues
                s.sendto(b"after", ("127.0.0.1", port))
                try:
                    while answer != b"echo:after":
                        answer = s.recvfrom(2048)[0]
                    break
                except TimeoutError:
                    continue
            assert answer == b"echo:after"
        assert net.docker("port", cid, "5353/udp", check=True).stdout.strip() == f"127.0.0.1:{port}"
    finally:
        net.docker("rm", "-f", cid)


def test_publish_all_gives_ephemeral_ports_and_ranges(net: Daemon) -> None:
    first = free_port()
    web = run_web(net, "--expose", "80", "--expose", "8081/udp", "-P",
                  "-p", f"127.0.0.1:{first}-{first + 5}:7000")
    try:
        ports = inspect(net, web)["NetworkSettings"]["Ports"]
        assert set(ports) == {"80/tcp", "8081/udp", "7000/tcp"}
        lines = dict(line.split(" -> ") for line in net.docker("port", web, check=True).stdout.splitlines())
        host, _, hport = lines["80/tcp"].rpartition(":")
        assert host == "0.0.0.0" and int(hport) >= 1024
        assert first <= int(lines["7000/tcp"].rpartition(":")[2]) <= first + 5
        assert http_get(f"http://127.0.0.1:{hport}/hostname").strip() == web[:12].encode()
        summary = json.loads(net.api("GET", f"/containers/json?filters=%7B%22id%22%3A%5B%22{web}%22%5D%7D")[1])
        public = {(p["PrivatePort"], p["Type"]): p["PublicPort"] for p in summary[0]["Ports"]}
        assert public[(80, "tcp")] == int(hport)
    finally:
        net.docker("rm", "-f", web)


def test_host_port_clash_fails_clearly_and_leaves_nothing(net: Daemon) -> None:
    port = free_port()
    web = run_web(net, "-p", f"127.0.0.1:{port}:80")
    try:
        before_links = links()
        clash = net.docker("run", "-d", "--name", "net-clash", "-p", f"127.0.0.1:{port}:80", "busybox",
                           "httpd", "-f", "-p", "80")
        assert clash.returncode != 0
        assert f"127.0.0.1:{port}" in clash.stderr and "address already in use" in clash.stderr
        state = inspect(net, "net-clash")
        assert state["State"]["Running"] is False and state["NetworkSettings"]["IPAddress"] == ""
        assert links().count("veth") == before_links.count("veth")
        assert not (net.exec_root / "netns" / state["Id"]).exists()
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web[:12].encode()  # the first one is fine
    finally:
        net.docker("rm", "-f", "net-clash")
        net.docker("rm", "-f", web)


def test_rm_leaves_no_veth_netns_or_rule(net: Daemon) -> None:
    cid = net.docker("run", "-d", "-p", f"127.0.0.1:{free_port()}:80", "busybox", "sleep", "300",
                     check=True).stdout.strip()
    info = inspect(net, cid)
    ip = info["NetworkSettings"]["IPAddress"]
    netns = Path(info["NetworkSettings"]["SandboxKey"])
    assert netns.exists() and f"veth{cid[:7]}" in links()
    net.docker("rm", "-f", cid, check=True)
    assert_endpoint_gone(net, cid, ip)
    assert not netns.exists()


def test_published_port_survives_daemon_kill9(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    port = free_port()
    n = int(d.bip.split(".")[2])
    nid = d.docker("network", "create", "--subnet", f"10.215.{n}.0/24", "adk-kept", check=True).stdout.strip()
    try:
        web = run_web(d, "-p", f"127.0.0.1:{port}:80")
        brief = d.docker("run", "-d", "busybox", "sleep", "1", check=True).stdout.strip()
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web[:12].encode()
        d.kill9()
        assert f"veth{web[:7]}" in links()  # the container keeps its network while the daemon is away
        time.sleep(1.5)  # `brief` exits while the daemon is down: its endpoint goes at start-up, web's stays
        d.start()
        assert f"veth{brief[:7]}" not in links() and not (d.exec_root / "netns" / brief).exists()
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web[:12].encode()
        assert d.docker("port", web, check=True).stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
        assert "adk-kept" in d.docker("network", "ls", check=True).stdout  # user networks persist
        ip = inspect(d, web)["NetworkSettings"]["IPAddress"]
        d.docker("rm", "-f", web, check=True)
        assert_endpoint_gone(d, web, ip)
        d.docker("network", "rm", "adk-kept", check=True)
        assert_no_endpoints(d)
        d.stop()  # a daemon that stops with no container removes its default bridge and chains
        assert_bridge_gone(d)
        assert f" br-{nid[:12]}:" not in links()
    finally:
        force_clean(d, [d.bridge_name, f"br-{nid[:12]}"])


def test_network_ls_and_inspect_builtin(net: Daemon) -> None:
    names = net.docker("network", "ls", "--format", "{{.Name}} {{.Driver}}", check=True).stdout.split("\n")
    assert {"bridge bridge", "host host", "none null"} <= set(names)
    info = json.loads(net.docker("network", "inspect", "bridge", check=True).stdout)[0]
    assert info["IPAM"]["Config"] == [{"Subnet": str(ipaddress.ip_interface(net.bip).network),
                                       "Gateway": net.bip.split("/")[0]}]
    assert info["Options"]["com.docker.network.bridge.name"] == net.bridge_name
    rm = net.docker("network", "rm", "bridge")
    assert rm.returncode != 0 and "bridge is a pre-defined network and cannot be removed" in rm.stderr


def test_user_network_create_connect_disconnect_rm(net: Daemon) -> None:
    n = int(net.bip.split(".")[2])
    subnet = ipaddress.ip_network(f"10.213.{n}.0/24")
    nid = net.docker("network", "create", "--subnet", str(subnet), "adk-net1", check=True).stdout.strip()
    brname = f"br-{nid[:12]}"
    a = b = ""
    try:
        assert f" {brname}:" in links()
        dup = net.docker("network", "create", "--subnet", "10.214.0.0/24", "adk-net1")
        assert dup.returncode != 0 and "network with name adk-net1 already exists" in dup.stderr
        a = run_web(net, "--network", "adk-net1", "--name", "adk-net-a")
        a_ip = inspect(net, a)["NetworkSettings"]["Networks"]["adk-net1"]["IPAddress"]
        assert ipaddress.ip_address(a_ip) in subnet
        b = net.docker("run", "-d", "--name", "adk-net-b", "busybox", "sleep", "300", check=True).stdout.strip()
        net.docker("network", "connect", "adk-net1", "adk-net-b", check=True)
        networks = inspect(net, b)["NetworkSettings"]["Networks"]
        assert set(networks) == {"bridge", "adk-net1"}
        assert ipaddress.ip_address(networks["adk-net1"]["IPAddress"]) in subnet
        out = net.docker("exec", b, "sh", "-c", f"ip -4 -o addr show eth1; wget -q -O- http://{a_ip}/hostname")
        assert out.returncode == 0, out.stderr
        assert networks["adk-net1"]["IPAddress"] in out.stdout and a[:12] in out.stdout
        other = net.docker("run", "--rm", "--network", "adk-net1", "busybox", "wget", "-q", "-O-",
                           f"http://{a_ip}/hostname", check=True).stdout
        assert other.strip() == a[:12]
        members = json.loads(net.docker("network", "inspect", "adk-net1", check=True).stdout)[0]["Containers"]
        assert set(members) == {a, b} and members[a]["Name"] == "adk-net-a"
        busy = net.docker("network", "rm", "adk-net1")
        assert busy.returncode != 0 and "has active endpoints" in busy.stderr
        net.docker("network", "disconnect", "adk-net1", "adk-net-b", check=True)
        assert set(inspect(net, b)["NetworkSettings"]["Networks"]) == {"bridge"}
        assert f"veth{b[:7]}x1" not in links()
    finally:
        for ref in (a, b):
            if ref:
                net.docker("rm", "-f", ref)
        net.docker("network", "rm", "adk-net1")
    assert f" {brname}:" not in links()
    assert brname not in iptables_save()
    assert "adk-net1" not in net.docker("network", "ls", check=True).stdout


def test_mac_address(net: Daemon) -> None:
    """--mac-address: the CLI (API 1.44) sends it in the primary endpoint; older clients in Config.MacAddress."""
    proc = net.docker("run", "--rm", "--mac-address", "02:42:AC:11:FF:01", "busybox", "cat", "/sys/class/net/eth0/address")
    assert (proc.returncode, proc.stdout.strip()) == (0, "02:42:ac:11:ff:01"), proc.stderr
    cid = net.docker("run", "-d", "--mac-address", "02:42:ac:11:ff:02", "busybox", "sleep", "60",
                     check=True).stdout.strip()
    try:
        settings = inspect(net, cid)["NetworkSettings"]
        assert settings["MacAddress"] == settings["Networks"]["bridge"]["MacAddress"] == "02:42:ac:11:ff:02"
    finally:
        net.docker("rm", "-f", cid)
    status, body = net.api("POST", "/v1.41/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                                 "MacAddress": "02:42:ac:11:ff:03"})
    assert status == 201, body
    net.docker("rm", "-f", json.loads(body)["Id"], check=True)
    for bad, message in (("zz:42:ac:11:ff:03", "invalid MAC address: zz:42:ac:11:ff:03"),
                         ("03:42:ac:11:ff:03", "invalid MAC address: 03:42:ac:11:ff:03: a multicast address")):
        status, body = net.api("POST", "/v1.41/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                                     "MacAddress": bad})
        assert (status, json.loads(body)) == (400, {"message": message}), body
    status, body = net.api("POST", "/v1.41/containers/create", {
        "Image": "busybox", "Cmd": ["true"], "MacAddress": "02:42:ac:11:ff:03", "HostConfig": {"NetworkMode": "host"}})
    assert (status, json.loads(body)) == (400, {"message": "conflicting options: mac-address and the network mode"})


def test_docker_py_networks_api(net: Daemon) -> None:
    """docker-py's high-level networks API: create with IPAM and labels, list with filters, get, connect with an
    alias and a fixed address, disconnect, remove, prune."""
    import docker
    from docker.types import IPAMConfig, IPAMPool

    n = int(net.bip.split(".")[2])
    client = docker.DockerClient(base_url=net.host, timeout=60)
    network = client.networks.create(
        "adk-py", driver="bridge", labels={"team": "py"},
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=f"10.212.{n}.0/24", gateway=f"10.212.{n}.254")]))
    spare = client.networks.create("adk-py-spare")
    container = client.containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        assert network.attrs["IPAM"]["Config"] == [{"Subnet": f"10.212.{n}.0/24", "Gateway": f"10.212.{n}.254"}]
        assert [x.name for x in client.networks.list(filters={"label": "team=py"})] == ["adk-py"]
        assert client.networks.get(network.id[:12]).name == "adk-py"
        network.connect(container, aliases=["pyalias"], ipv4_address=f"10.212.{n}.7")
        network.reload()
        assert list(network.attrs["Containers"]) == [container.id]
        container.reload()
        endpoint = container.attrs["NetworkSettings"]["Networks"]["adk-py"]
        assert endpoint["IPAddress"] == f"10.212.{n}.7" and "pyalias" in endpoint["Aliases"]
        out = container.exec_run(["ip", "-4", "-o", "addr", "show", "eth1"]).output.decode()
        assert f"10.212.{n}.7/24" in out, out
        network.disconnect(container)
        network.reload()
        assert network.attrs["Containers"] == {}
        container.remove(force=True)
        assert client.networks.prune(filters={"until": "2000-01-01T00:00:00Z"}) == {"NetworksDeleted": None}
        assert client.networks.prune(filters={"label": "team=py"}) == {"NetworksDeleted": ["adk-py"]}
        status, body = net.api("POST", "/networks/prune?filters=" + urllib.parse.quote(json.dumps({"foo": ["x"]})))
        assert (status, json.loads(body)) == (400, {"message": "invalid filter 'foo'"})
        spare.remove()
        assert {x.name for x in client.networks.list()} == {"bridge", "host", "none"}
    finally:
        container.remove(force=True) if container.id in {c.id for c in client.containers.list(all=True)} else None
        for name in ("adk-py", "adk-py-spare"):
            net.docker("network", "rm", name)
        client.close()
