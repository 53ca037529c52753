"""Every collective and point-to-point message the parallel strategies send, recorded.

Floor 2: `tensor.py`, `pipeline.py`, `sequence.py` and `expert.py` call
`torch.distributed` only through a `CommRecorder`, which performs the operation
and appends a `CommRecord(op, num_bytes, rank, tag, peer, num_remote_bytes, is_inter_node)`.
Notebooks and tests then compare what crossed the wire with the formulas.

Groups and nodes: a recorder may wrap a subgroup (`group=`, e.g. the TP group inside a node or
the PP group across nodes of a 2-D layout); `rank`, `world_size` and every `peer`/`src`/`dst` are
then ranks *within that group*. `ranks_per_node` (torchrun's LOCAL_WORLD_SIZE by default; None:
every rank on one node) places global rank g on node g // ranks_per_node, and each record says
whether it crossed the inter-node link: a point-to-point message when the peer is on another
node, a collective when its group spans more than one node.

Byte conventions (per call, on the recording rank):
- all_reduce, broadcast: the tensor's bytes (the message size; a ring all-reduce moves
  ~2(P-1)/P of it per rank).
- all_gather(_into_tensor): bytes this rank contributes (its input).
- reduce_scatter(_tensor): bytes of this rank's full input (P chunks).
- all_to_all_single: bytes of this rank's input buffer; `num_remote_bytes` leaves out the
  chunk that stays on this rank.
- send/isend: bytes sent; recv/irecv: bytes received (`peer` = the other rank).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

COLLECTIVES = ("all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter",
               "reduce_scatter_tensor", "all_to_all_single", "send", "recv", "isend", "irecv")

# torch 2.13 renames the tensor-in/tensor-out collectives (*_single) and deprecates the old names.
_ALL_GATHER_SINGLE = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_REDUCE_SCATTER_SINGLE = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


@dataclass(frozen=True)
class CommRecord:
    """One call: operation, bytes (see module docstring), recording rank, step label, peer."""

    op: str
    num_bytes: int
    rank: int
    tag: str = ""
    peer: int = -1
    num_remote_bytes: int = -1
    is_inter_node: bool = False

    def __post_init__(self) -> None:
        if self.op not in COLLECTIVES:
            raise ValueError(f"unknown op {self.op!r}; expected one of {COLLECTIVES}")
        if self.num_bytes < 0:
            raise ValueError(f"num_bytes must be >= 0, got {self.num_bytes}")


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _ranks_per_node_from_env() -> int | None:
    return int(os.environ.get("LOCAL_WORLD_SIZE", 0)) or None


@dataclass
class CommRecorder:
    """Wraps torch.distributed; records each call. `enabled=False` still communicates."""

    group: dist.ProcessGroup | None = None
    enabled: bool = True
    records: list[CommRecord] = field(default_factory=list)
    tag: str = ""
    ranks_per_node: int | None = field(default_factory=_ranks_per_node_from_env)

    def __post_init__(self) -> None:
        if self.ranks_per_node is not None and self.ranks_per_node < 1:
            raise ValueError(f"ranks_per_node must be >= 1 or None, got {self.ranks_per_node}")
        self._global_ranks: list[int] | None = None

    def global_rank(self, group_rank: int) -> int:
        """The global rank of `group_rank` in this recorder's group."""
        if self._global_ranks is None:
            self._global_ranks = dist.get_process_group_ranks(self.group or dist.group.WORLD)
        return self._global_ranks[group_rank]

    def node_of(self, group_rank: int) -> int:
        """The node that holds `group_rank` of this recorder's group (0 when ranks_per_node is None)."""
        return 0 if self.ranks_per_node is None else self.global_rank(group_rank) // self.ranks_per_node

    def _crosses(self, peer: int) -> bool:
        if self.ranks_per_node is None:
            return False
        if peer >= 0:
            return self.node_of(peer) != self.node_of(self.rank)
        return len({self.node_of(r) for r in range(self.world_size)}) > 1

    @property
    def rank(self) -> int:
        return dist.get_rank(self.group)

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.group)

    @contextlib.contextmanager
    def step(self, tag: str) -> Iterator[None]:
        """Label the calls made inside the block (e.g. "prefill", "decode-3", "layer-1")."""
        previous, self.tag = self.tag, tag
        try:
            yield
        finally:
            self.tag = previous

    def _record(self, op: str, num_bytes: int, peer: int = -1, num_remote_bytes: int = -1) -> None:
        if self.enabled:
            crosses = self._crosses(peer if op not in ("broadcast",) else -1)
            self.records.append(CommRecord(op, num_bytes, self.rank, self.tag, peer, num_remote_bytes, crosses))

    # Collectives -------------------------------------------------------------------------
    def all_reduce(self, t: torch.Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> torch.Tensor:
        self._record("all_reduce", tensor_bytes(t))
        dist.all_reduce(t, op=op, group=self.group)
        return t

    def broadcast(self, t: torch.Tensor, src: int) -> torch.Tensor:
        self._record("broadcast", tensor_bytes(t), peer=src)
        dist.broadcast(t, group=self.group, group_src=src)
        return t

    def all_gather(self, tensors: list[torch.Tensor], t: torch.Tensor) -> list[torch.Tensor]:
        self._record("all_gather", tensor_bytes(t))
        dist.all_gather(tensors, t, group=self.group)
        return tensors

    def all_gather_into_tensor(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """`out` is P inputs concatenated along dim 0."""
        self._record("all_gather_into_tensor", tensor_bytes(t))
        _ALL_GATHER_SINGLE(out, t, group=self.group)
        return out

    def reduce_scatter(self, out: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
        self._record("reduce_scatter", sum(tensor_bytes(t) for t in inputs))
        dist.reduce_scatter(out, inputs, group=self.group)
        return out

    def reduce_scatter_tensor(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._record("reduce_scatter_tensor", tensor_bytes(t))
        _REDUCE_SCATTER_SINGLE(out, t, group=self.group)
        return out

    def all_to_all_single(self, out: torch.Tensor, t: torch.Tensor, output_split_sizes: list[int] | None = None,
                          input_split_sizes: list[int] | None = None) -> torch.Tensor:
        """Chunk i of `t` (along dim 0) goes to rank i; chunk j of `out` came from rank j."""
        row_bytes = tensor_bytes(t) // max(1, t.shape[0]) if t.dim() else 0
        if input_split_sizes is None:
            own_rows = t.shape[0] // self.world_size
        else:
            own_rows = input_split_sizes[self.rank]
        self._record("all_to_all_single", tensor_bytes(t),
                     num_remote_bytes=tensor_bytes(t) - own_rows * row_bytes)
        dist.all_to_all_single(out, t, output_split_sizes, input_split_sizes, group=self.group)
        return out

    # Point to point ----------------------------------------------------------------------
    def send(self, t: torch.Tensor, dst: int) -> None:
        self._record("send", tensor_bytes(t), peer=dst, num_remote_bytes=tensor_bytes(t))
        dist.send(t, group=self.group, group_dst=dst)

    def recv(self, t: torch.Tensor, src: int) -> torch.Tensor:
        self._record("recv", tensor_bytes(t), peer=src, num_remote_bytes=tensor_bytes(t))
        dist.recv(t, group=self.group, group_src=src)
        return t

    def isend(self, t: torch.Tensor, dst: int) -> dist.Work:
        self._record("isend", tensor_bytes(t), peer=dst, num_remote_bytes=tensor_bytes(t))
        return dist.isend(t, group=self.group, group_dst=dst)

    def irecv(self, t: torch.Tensor, src: int) -> dist.Work:
        self._record("irecv", tensor_bytes(t), peer=src, num_remote_bytes=tensor_bytes(t))
        return dist.irecv(t, group=self.group, group_src=src)

    def batch_isend_irecv(self, ops: list[dist.P2POp]) -> list[dist.Work]:
        """Each P2POp is recorded as an isend or irecv."""
        for p2p in ops:
            name = "isend" if "send" in getattr(p2p.op, "__name__", "") else "irecv"
            self._record(name, tensor_bytes(p2p.tensor), peer=p2p.peer, num_remote_bytes=tensor_bytes(p2p.tensor))
        return dist.batch_isend_irecv(ops)

    def barrier(self) -> None:
        dist.barrier(group=self.group)

    # Queries -----------------------------------------------------------------------------
    def select(self, op: str | None = None, tag: str | None = None) -> list[CommRecord]:
        return [r for r in self.records if (op is None or r.op == op) and (tag is None or r.tag == tag)]

    def count(self, op: str | None = None, tag: str | None = None) -> int:
        return len(self.select(op, tag))

    def total_bytes(self, op: str | None = None, tag: str | None = None) -> int:
        return sum(r.num_bytes for r in self.select(op, tag))

    def inter_node_bytes(self, op: str | None = None) -> int:
        """Bytes of the records that crossed the inter-node link (sends, not their matching recvs)."""
        return sum(r.num_bytes for r in self.select(op) if r.is_inter_node and r.op not in ("recv", "irecv"))

    def intra_node_bytes(self, op: str | None = None) -> int:
        """Bytes of the records that stayed inside a node (sends, not their matching recvs)."""
        return sum(r.num_bytes for r in self.select(op) if not r.is_inter_node and r.op not in ("recv", "irecv"))

    def clear(self) -> None:
        self.records.clear()


def summarize(records: list[CommRecord]) -> dict[tuple[str, str], tuple[int, int]]:
    """{(op, tag): (number of calls, total bytes)} for a table in a notebook."""
    table: dict[tuple[str, str], tuple[int, int]] = {}
    for r in records:
        calls, num_bytes = table.get((r.op, r.tag), (0, 0))
        table[(r.op, r.tag)] = (calls + 1, num_bytes + r.num_bytes)
    return table
