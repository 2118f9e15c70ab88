"""Real namespaces: connectivity, partitions, isolation, loss, bandwidth caps."""

from __future__ import annotations

import socket
import time

from conftest import ECHO_PORT, SINK_PORT  # noqa: E402  (tests/testing on sys.path)

from maillage.testing import HOST
from maillage.testing._sh import run


def reach(m, src, dst, timeout=0.5):
    return m.can_connect(src, (m.address(dst), ECHO_PORT), timeout)


def test_sites_talk_both_ways_and_host_reaches_them(net):
    for a, b in [("a", "b"), ("b", "a"), ("a", "c"), ("c", "b")]:
        assert reach(net, a, b), f"{a} -> {b}"
    s = socket.create_connection((net.address("c"), ECHO_PORT), timeout=2)  # from the root ns
    s.sendall(b"hello")
    assert s.recv(16) == b"hello"
    s.close()


def test_addresses_in_benchmark_range_and_no_default_route(net):
    import ipaddress
    for site in net.sites.values():
        assert ipaddress.ip_address(site.address) in ipaddress.ip_network("198.18.0.0/15")
        routes = run(["ip", "-n", site.ns, "route", "show"]).stdout
        assert "default" not in routes, routes
        assert all("198.1" in line for line in routes.splitlines()), routes


def test_partition_blocks_both_directions_and_heal_restores(net):
    net.faults.partition("a", "b")
    assert not reach(net, "a", "b")
    assert not reach(net, "b", "a")
    assert reach(net, "a", "c") and reach(net, "c", "b"), "others unaffected"
    net.faults.heal("a", "b")
    assert reach(net, "a", "b") and reach(net, "b", "a")


def _udp_receiver(net, site):
    def make():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE (root): no drops from a full buffer
        s.bind((net.address(site), 0))
        s.settimeout(0.3)
        return s
    return net.call_in(site, make)


def _udp_count(net, src, rx, n, pace_every=50):
    tx = net.udp_socket(src)
    dst = rx.getsockname()
    for i in range(n):
        try:
            tx.sendto(b"%d" % i, dst)
        except PermissionError:  # our own output chain dropped it (EPERM): lost
            pass
        if i % pace_every == 0:
            time.sleep(0.001)
    got = 0
    try:
        while True:
            rx.recv(64)
            got += 1
    except TimeoutError:
        pass
    tx.close()
    return got


def test_one_way_partition_is_asymmetric(net):
    rx_b, rx_a = _udp_receiver(net, "b"), _udp_receiver(net, "a")
    try:
        net.faults.partition("a", "b", one_way=True)
        assert _udp_count(net, "a", rx_b, 20) == 0, "a -> b must be dropped"
        assert _udp_count(net, "b", rx_a, 20) == 20, "b -> a must still flow"
        # TCP needs both directions: neither side can open a connection.
        assert not reach(net, "a", "b")
        net.faults.heal()
        assert _udp_count(net, "a", rx_b, 20) == 20
    finally:
        rx_a.close()
        rx_b.close()


def test_isolate_cuts_site_from_everyone_including_host(net):
    net.faults.isolate("c")
    assert not reach(net, "a", "c") and not reach(net, "c", "b")
    assert not reach(net, HOST, "c")
    assert reach(net, "a", "b")
    assert net.can_connect("c", ("127.0.0.1", ECHO_PORT)), "loopback inside c still works"
    net.faults.heal("c")
    assert reach(net, "a", "c") and reach(net, HOST, "c")


def test_split_groups_and_partition_from_host(net):
    net.faults.split(["a"], ["b", "c"])
    assert not reach(net, "a", "b") and not reach(net, "c", "a")
    assert reach(net, "b", "c")
    net.faults.heal()
    net.faults.partition(HOST, "b")
    assert not reach(net, HOST, "b") and reach(net, HOST, "a") and reach(net, "a", "b")


def test_loss_drops_the_configured_fraction(net):
    rx = _udp_receiver(net, "b")
    try:
        net.faults.loss("a", 30, direction="out")
        n = 2000
        got = _udp_count(net, "a", rx, n)
        frac = 1 - got / n
        assert 0.22 <= frac <= 0.38, f"configured 30% loss, measured {frac:.1%}"
        net.faults.clear_loss()
        assert _udp_count(net, "a", rx, 200) == 200
    finally:
        rx.close()


def _send_measure(net, src, dst, nbytes):
    s = net.connect(src, (net.address(dst), SINK_PORT), timeout=10)
    s.settimeout(30)
    buf = b"\0" * (64 * 1024)
    t = time.perf_counter()
    sent = 0
    while sent < nbytes:
        sent += s.send(buf[: nbytes - sent])
    s.shutdown(socket.SHUT_WR)
    reply = s.recv(64)
    dt = time.perf_counter() - t
    s.close()
    assert int(reply) == nbytes
    return nbytes * 8 / dt


def test_tbf_bandwidth_cap_limits_throughput(net):
    cap = 4_000_000  # 4 Mbit/s = 500 kB/s
    net.faults.bandwidth("a", "4mbit", direction="out")
    rate = _send_measure(net, "a", "b", 1_000_000)
    assert 0.5 * cap <= rate <= 1.3 * cap, f"cap {cap} bit/s, measured {rate:.0f}"
    # b -> a is not capped (direction out only), and is far faster
    free = _send_measure(net, "b", "a", 4_000_000)
    assert free > 5 * cap, f"uncapped direction only {free:.0f} bit/s"
    net.faults.clear_bandwidth("a")
    net.faults.bandwidth("a", "4mbit", direction="in")  # traffic into a
    rate_in = _send_measure(net, "b", "a", 1_000_000)
    assert 0.5 * cap <= rate_in <= 1.3 * cap, f"ingress cap {cap}, measured {rate_in:.0f}"
