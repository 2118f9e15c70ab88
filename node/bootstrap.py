"""Bootstrap: what a node needs before anything is wired, its data directory, stores and layout.

The layout comes from the operator's file (trusted, signed here), else from the data directory (the
last one applied), else from a seed peer (only a correctly signed one). A node that is not in its
layout refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from maillage.placement import Layout, PlacementError, format_layout
from maillage.proto import pb, rpc
from maillage.proto.channels import open_channel
from maillage.storage import ChunkStore, MetaStore

from . import convert
from .auth import ClusterKey, LayoutAuthError, LayoutDoc, SignedLayouts
from .layout_state import LayoutState
from .wiring import Timings

__all__ = ["NodeConfig", "Stores", "fetch_layout", "signed_layouts", "load_layout", "open_stores"]


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    data_dir: Path
    layout: Layout | None = None          # initial layout; else the stored one, else from seeds
    seeds: tuple[str, ...] = ()
    listen: str | None = None             # default: this node's address in the layout
    fsync: bool = True
    chunk_size: int = 4 * 1024 * 1024
    workers: int = 8
    secret_file: Path | None = None
    timings: Timings = Timings()


@dataclass
class Stores:
    chunks: ChunkStore
    meta: MetaStore

    def close(self) -> None:
        self.meta.close()


async def fetch_layout(seeds: tuple[str, ...], signed: SignedLayouts) -> tuple[Layout, LayoutDoc]:
    """The newest correctly signed layout any seed answers with."""
    best: tuple[Layout, LayoutDoc] | None = None
    errors = []
    for address in seeds:
        try:
            async with open_channel(address) as channel:
                doc = convert.layout_doc_from_pb(
                    await rpc.ClusterStub(channel).GetLayout(pb.GetLayoutRequest(), timeout=5))
            layout = signed.verify(doc)
            if best is None or layout.version > best[0].version:
                best = (layout, doc)
        except grpc.RpcError as err:
            errors.append(f"{address}: {err.code().name}")  # type: ignore[attr-defined]
        except (LayoutAuthError, PlacementError) as err:
            errors.append(f"{address}: {err}")
    if best is None:
        raise ConnectionError(f"no seed answered with a valid layout ({'; '.join(errors) or 'no seeds given'})")
    return best


def signed_layouts(cfg: NodeConfig) -> SignedLayouts:
    return SignedLayouts(ClusterKey.from_file(cfg.secret_file) if cfg.secret_file else None)


async def load_layout(cfg: NodeConfig, signed: SignedLayouts) -> LayoutState:
    """The node's layout (see the module's docstring); raises `UnknownNode` if it is not in it."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    layout_path = cfg.data_dir / "layout.toml"
    if cfg.layout is not None:  # the operator's own file: trusted, signed here
        layout = LayoutState(layout_path, cfg.layout, signed.sign(cfg.layout.version, format_layout(cfg.layout)))
    elif not layout_path.exists():
        fetched, doc = await fetch_layout(cfg.seeds, signed)
        layout = LayoutState(layout_path, fetched, doc.signature, doc.text)
    else:
        layout = LayoutState(layout_path)
    layout.current.node(cfg.node_id)  # UnknownNode: refuse to start outside the layout
    return layout


def open_stores(cfg: NodeConfig) -> Stores:
    return Stores(ChunkStore(cfg.data_dir / "chunks", fsync=cfg.fsync), MetaStore(cfg.data_dir / "meta"))
