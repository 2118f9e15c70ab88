"""User-space latency/jitter relay between namespaced sites."""

from __future__ import annotations

import socket
import time

from conftest import ECHO_PORT  # noqa: E402


def test_latency_adds_configured_delay_both_ways(net, rtt):
    base = rtt(net.connect("a", (net.address("b"), ECHO_PORT)), 5)
    net.faults.latency("a", "b", 40)
    s = net.connect("a", (net.address("b"), ECHO_PORT))
    samples = rtt(s, 5)
    s.close()
    assert min(samples) >= 80, f"40 ms each way -> RTT >= 80 ms, got {samples}"
    assert max(samples) < 250, samples
    assert max(base) < 60, f"unrelayed baseline should be fast: {base}"
    # the reverse direction (b dials a) goes through b's relay, same delay
    s = net.connect("b", (net.address("a"), ECHO_PORT))
    back = rtt(s, 3)
    s.close()
    assert 80 <= min(back) and max(back) < 250, back
    # other links untouched
    s = net.connect("a", (net.address("c"), ECHO_PORT))
    assert max(rtt(s, 3)) < 60
    s.close()


def test_asymmetric_latency_and_clear(net, rtt):
    net.faults.latency("a", "c", 60, symmetric=False)  # only a -> c bytes are held
    s = net.connect("a", (net.address("c"), ECHO_PORT))
    samples = rtt(s, 3)
    assert 60 <= min(samples) and max(samples) < 110, samples
    net.faults.clear_latency()
    s.close()
    s = net.connect("a", (net.address("c"), ECHO_PORT))
    assert max(rtt(s, 3)) < 60, "new connections are not relayed once cleared"
    s.close()


def test_jitter_varies_delay_but_never_reorders_bytes(net, rtt):
    net.faults.latency("a", "b", 30, jitter_ms=20)
    s = net.connect("a", (net.address("b"), ECHO_PORT))
    samples = rtt(s, 12)
    assert max(samples) - min(samples) > 8, f"jitter should spread RTTs: {samples}"
    assert min(samples) >= 20 and max(samples) < 250, samples
    # numbered stream in many small writes; every write gets its own delay draw
    lines = [b"%06d\n" % i for i in range(3000)]
    expected = b"".join(lines)
    s.settimeout(20)
    for i in range(0, len(lines), 10):
        s.sendall(b"".join(lines[i:i + 10]))
        if i % 100 == 0:
            time.sleep(0.002)
    s.shutdown(socket.SHUT_WR)
    got = bytearray()
    while chunk := s.recv(65536):
        got += chunk
    s.close()
    assert len(got) == len(expected)
    assert bytes(got) == expected, "bytes reordered or corrupted by the relay"


def test_partition_applies_to_relayed_links(net):
    net.faults.latency("b", "c", 20)
    assert net.can_connect("b", (net.address("c"), ECHO_PORT), 1.0)
    net.faults.partition("b", "c")
    t = time.monotonic()
    assert not net.can_connect("b", (net.address("c"), ECHO_PORT), 0.7)
    assert time.monotonic() - t >= 0.6, "SYN must be dropped (timeout), not refused by the relay"
    net.faults.heal()
    assert net.can_connect("b", (net.address("c"), ECHO_PORT), 1.0)


def test_latency_with_loss_still_delivers_in_order(net):
    net.faults.latency("a", "b", 10, jitter_ms=5)
    net.faults.loss("a", 5)
    s = net.connect("a", (net.address("b"), ECHO_PORT), timeout=10)
    s.settimeout(20)
    payload = bytes(range(256)) * 2000  # 512 kB
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    got = bytearray()
    while chunk := s.recv(65536):
        got += chunk
    assert bytes(got) == payload
    st = net.faults._relays["a"].status()
    assert st["ok"] and st["connections"] >= 1
