"""Network faults on a ``Mesh``: partitions, isolation, loss, bandwidth caps, latency.

Why: the fault harness needs each WAN pathology as a reversible switch that
acts on the real kernel path of the node's traffic, so the node under test
cannot tell emulation from reality.

How (all inside the site namespaces; the root namespace firewall is never touched):

* One nft table ``inet maillage`` per site, regenerated atomically (one
  ``nft -f`` transaction) from this object's state after every change, so
  "heal" means "render the state without that fault" and teardown is simply
  "delete the table". Chains:

  - ``block_out`` (output, priority -300, i.e. before NAT/conntrack): drops by
    *original* destination, for partitions and isolation. Because it runs
    before the latency redirect, a partitioned peer's SYN is dropped (the
    caller sees a timeout, as on a real WAN), not accepted by the local relay.
  - ``block_in`` (input, priority -300): drops by source address.
  - ``loss_out`` (postrouting) / ``loss_in`` (input): ``numgen random`` drops on
    ``eth0`` only, so a relayed connection (app -> lo -> relay -> eth0) is
    subject to loss once, not twice.
  - ``to_relay`` (nat output): TCP to peers with latency goes to the site's
    relay (see ``relay.py``); the relay's own sockets carry ``RELAY_MARK``.

* Partitions are directed pairs ``(src, dst)``: packets from src to dst are
  dropped at src's output *and* at dst's input. ``partition(a, b)`` adds both
  directions, ``one_way=True`` only a -> b (TCP then fails both ways since the
  handshake needs both directions; UDP shows the asymmetry).
  ``HOST`` (the root namespace, i.e. the test process) can be one side.
* Bandwidth caps: ``tc tbf`` on the site's ``eth0`` (traffic leaving the site)
  and on the hub-side veth (traffic entering the site). ``tbf``/``htb`` exist
  on this kernel; ``netem``, ``fq``, ``fq_codel``, ``sfq``, ``cake`` do not.
* Latency/jitter: user-space relay process per site, started on first use.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterable
from typing import TYPE_CHECKING

from maillage.testing._sh import ToolError, run
from maillage.testing.relay import RELAY_MARK, Link, RelayProcess

if TYPE_CHECKING:
    from maillage.testing.netns import Mesh

__all__ = ["Faults", "Link"]

TABLE = "maillage"


def _rate_bits(rate: str | int | float) -> int:
    """'10mbit' / '512kbit' / '1gbit' / int bits per second -> bits per second."""
    if isinstance(rate, (int, float)):
        return int(rate)
    s = rate.strip().lower()
    for suffix, mult in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3), ("bit", 1)):
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * mult)
    return int(s)


class Faults:
    """Reversible network faults for one mesh. Obtain it as ``mesh.faults``."""

    def __init__(self, mesh: Mesh, seed: int | None = None) -> None:
        from maillage.testing.netns import HOST
        self._HOST = HOST
        self.mesh = mesh
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self._blocks: set[tuple[str, str]] = set()       # (src, dst): drop src -> dst
        self._isolated: set[str] = set()
        self._loss: dict[str, tuple[float, float]] = {}  # site -> (out %, in %)
        self._caps: dict[tuple[str, str], int] = {}      # (site, "out"|"in") -> bit/s
        self._links: dict[tuple[str, str], Link] = {}    # (src, dst) -> delay of src -> dst
        self._relays: dict[str, RelayProcess] = {}
        self._tables: set[str] = set()
        self._tmp = tempfile.mkdtemp(prefix=f"{mesh.prefix}-relay-")

    # ------------------------------------------------------------ partitions
    def partition(self, a: str, b: str, one_way: bool = False) -> None:
        """Drop traffic a -> b (and b -> a unless one_way). Either may be ``HOST``."""
        self._check(a, b)
        self._blocks.add((a, b))
        if not one_way:
            self._blocks.add((b, a))
        self._render({a, b})

    def split(self, *groups: Iterable[str]) -> None:
        """Partition every site of each group from every site of the other groups
        (e.g. a region from the rest, or random halves). Sites in no group are untouched."""
        gs = [list(g) for g in groups]
        touched = set()
        for i, g in enumerate(gs):
            for h in gs[i + 1:]:
                for a in g:
                    for b in h:
                        self._check(a, b)
                        self._blocks.update({(a, b), (b, a)})
                        touched.update({a, b})
        self._render(touched)

    def isolate(self, site: str) -> None:
        """Cut a site from everyone (all sites and the host); its loopback still works."""
        self.mesh.site(site)
        self._isolated.add(site)
        self._render({site})

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """Remove partitions/isolation: all of them, those involving ``a``, or the pair a-b."""
        def hit(p: tuple[str, str]) -> bool:
            if a is None:
                return True
            if b is None:
                return a in p
            return set(p) == {a, b}
        gone = {p for p in self._blocks if hit(p)}
        self._blocks -= gone
        touched = {s for p in gone for s in p}
        if b is None:
            iso = self._isolated if a is None else self._isolated & {a}
            touched |= iso
            self._isolated -= iso
        self._render(touched)

    # ------------------------------------------------------------ loss
    def loss(self, site: str, percent: float, direction: str = "both") -> None:
        """Drop ``percent`` % of packets leaving ('out'), entering ('in') or both at ``site``."""
        self.mesh.site(site)
        if not 0 <= percent <= 100:
            raise ValueError("percent must be within 0..100")
        out, inn = self._loss.get(site, (0.0, 0.0))
        if direction in ("out", "both"):
            out = percent
        if direction in ("in", "both"):
            inn = percent
        if direction not in ("out", "in", "both"):
            raise ValueError("direction must be 'out', 'in' or 'both'")
        self._loss[site] = (out, inn)
        self._render({site})

    def clear_loss(self, site: str | None = None) -> None:
        sites = set(self._loss) if site is None else {site}
        for s in sites:
            self._loss.pop(s, None)
        self._render(sites)

    # ------------------------------------------------------------ bandwidth
    def bandwidth(self, site: str, rate: str | int, direction: str = "both",
                  burst_bytes: int | None = None, queue_ms: int = 100) -> None:
        """Cap ``site``'s traffic with a tbf qdisc ('10mbit', or bits/s).

        'out' = traffic leaving the site (its eth0), 'in' = entering it (the
        hub-side veth). queue_ms bounds the tbf backlog (excess is dropped).
        """
        s = self.mesh.site(site)
        bits = _rate_bits(rate)
        if bits <= 0:
            raise ValueError("rate must be positive")
        # burst: >= one MTU-sized GSO-free packet and ~10 ms of traffic, so the
        # bucket neither starves nor lets large bursts through.
        burst = burst_bytes or max(16 * 1024, bits // 8 // 100)
        dirs = {"out": [("out", s.ns, s.if_name)], "in": [("in", self.mesh.hub, s.hub_if)]}
        dirs["both"] = dirs["out"] + dirs["in"]
        if direction not in dirs:
            raise ValueError("direction must be 'out', 'in' or 'both'")
        for d, ns, dev in dirs[direction]:
            run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf",
                 "rate", f"{bits}bit", "burst", str(burst), "latency", f"{queue_ms}ms"])
            self._caps[(site, d)] = bits

    def clear_bandwidth(self, site: str | None = None) -> None:
        for (s, d) in list(self._caps):
            if site is not None and s != site:
                continue
            sn = self.mesh.site(s)
            ns, dev = (sn.ns, sn.if_name) if d == "out" else (self.mesh.hub, sn.hub_if)
            run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False)
            del self._caps[(s, d)]

    # ------------------------------------------------------------ latency
    def latency(self, a: str, b: str, delay_ms: float, jitter_ms: float = 0.0,
                symmetric: bool = True) -> None:
        """Delay TCP bytes a -> b by delay_ms +- jitter_ms (and b -> a if symmetric).

        Round trip between a and b is then about 2 * delay_ms. Done by the
        user-space relay of the initiating site (see relay.py); order preserved.
        """
        for x in (a, b):
            self.mesh.site(x)  # the host has no relay: latency is between sites
        if a == b or delay_ms < 0 or jitter_ms < 0:
            raise ValueError("need two distinct sites and non-negative delay/jitter")
        self._links[(a, b)] = Link(delay_ms, jitter_ms)
        if symmetric:
            self._links[(b, a)] = Link(delay_ms, jitter_ms)
        self._update_relays({a, b})

    def clear_latency(self, a: str | None = None, b: str | None = None) -> None:
        gone = {k for k in self._links if a is None or (a in k and (b is None or set(k) == {a, b}))}
        for k in gone:
            del self._links[k]
        self._update_relays({s for k in gone for s in k})

    def _peer_links(self, site: str) -> dict[str, tuple[Link, Link]]:
        out = {}
        for other in self.mesh.sites:
            if other == site:
                continue
            up, down = self._links.get((site, other)), self._links.get((other, site))
            if up or down:
                out[self.mesh.address(other)] = (up or Link(), down or Link())
        return out

    def _update_relays(self, sites: set[str]) -> None:
        for s in sites:
            links = self._peer_links(s)
            relay = self._relays.get(s)
            if relay is None and links:
                relay = RelayProcess.start(
                    lambda argv, s=s, **kw: self.mesh.run_in(s, argv, **kw),
                    os.path.join(self._tmp, f"{self.mesh.site(s).index}.sock"),
                    seed=self.seed + self.mesh.site(s).index)
                self._relays[s] = relay
            if relay is not None:
                relay.configure(links)  # synchronous: in force before redirecting
        self._render(sites)

    def relay_pids(self) -> dict[str, int]:
        """Pids of the running latency relays, by site."""
        return {s: r.pid for s, r in self._relays.items()}

    # ------------------------------------------------------------ state / render
    def describe(self) -> dict:
        """The active faults, for the harness report."""
        return {
            "seed": self.seed,
            "blocked": sorted(self._blocks),
            "isolated": sorted(self._isolated),
            "loss_percent": dict(self._loss),
            "bandwidth_bits": {f"{s}:{d}": v for (s, d), v in self._caps.items()},
            "latency_ms": {f"{a}->{b}": (l.delay_ms, l.jitter_ms) for (a, b), l in self._links.items()},
        }

    def reset(self) -> None:
        """Remove every fault (keeps relays running but idle)."""
        self._blocks.clear()
        self._isolated.clear()
        self._loss.clear()
        self.clear_bandwidth()
        self.clear_latency()
        self._render(set(self.mesh.sites))

    def close(self) -> None:
        """Teardown: stop relays (by pid), drop our nft tables and qdiscs."""
        errors = []
        for r in self._relays.values():
            try:
                r.stop()
            except Exception as e:
                errors.append(str(e))
        self._relays.clear()
        try:
            self.clear_bandwidth()
        except Exception as e:
            errors.append(str(e))
        for s in list(self._tables):
            run(["ip", "netns", "exec", self.mesh.site(s).ns, "nft", "delete", "table", "inet", TABLE],
                check=False)
        self._tables.clear()
        try:
            os.rmdir(self._tmp)
        except OSError:
            pass
        if errors:
            raise ToolError("; ".join(errors))

    def _check(self, a: str, b: str) -> None:
        if a == b:
            raise ValueError("cannot partition a site from itself")
        for x in (a, b):
            if x != self._HOST:
                self.mesh.site(x)
            elif not self.mesh.host_access:
                raise ValueError("mesh has no host access")
        if a == self._HOST == b:
            raise ValueError("need at least one site")

    def _render(self, sites: set[str]) -> None:
        for s in sites:
            if s != self._HOST:
                self._render_site(s)

    def _render_site(self, site: str) -> None:
        sn = self.mesh.site(site)
        eth = sn.if_name
        out_drop = sorted(self.mesh.address(d) for (src, d) in self._blocks if src == site)
        in_drop = sorted(self.mesh.address(src) for (src, d) in self._blocks if d == site)
        lo, li = self._loss.get(site, (0.0, 0.0))
        relay = self._relays.get(site)
        redirect = sorted(self._peer_links(site)) if relay is not None else []
        rules = [f"table inet {TABLE} {{",
                 "  chain block_out { type filter hook output priority -300; policy accept;",
                 '    oifname "lo" accept']
        if site in self._isolated:
            rules.append(f'    oifname "{eth}" drop')
        if out_drop:
            rules.append(f"    ip daddr {{ {', '.join(out_drop)} }} drop")
        rules += ["  }",
                  "  chain block_in { type filter hook input priority -300; policy accept;",
                  '    iifname "lo" accept']
        if site in self._isolated:
            rules.append(f'    iifname "{eth}" drop')
        if in_drop:
            rules.append(f"    ip saddr {{ {', '.join(in_drop)} }} drop")
        rules.append("  }")
        rules.append("  chain loss_out { type filter hook postrouting priority 0; policy accept;")
        if lo:
            rules.append(f'    oifname "{eth}" numgen random mod 10000 < {int(round(lo * 100))} drop')
        rules.append("  }")
        rules.append("  chain loss_in { type filter hook input priority 10; policy accept;")
        if li:
            rules.append(f'    iifname "{eth}" numgen random mod 10000 < {int(round(li * 100))} drop')
        rules.append("  }")
        rules.append("  chain to_relay { type nat hook output priority -100; policy accept;")
        if relay is not None and redirect:
            rules.append(f"    meta mark {RELAY_MARK:#x} return")
            rules.append(f"    ip daddr {{ {', '.join(redirect)} }} meta l4proto tcp "
                         f"redirect to :{relay.port}")
        rules += ["  }", "}"]
        script = (f"add table inet {TABLE}\ndelete table inet {TABLE}\n" + "\n".join(rules) + "\n")
        run(["ip", "netns", "exec", sn.ns, "nft", "-f", "-"], input=script)
        self._tables.add(site)
