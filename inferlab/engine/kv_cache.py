"""The paged KV cache: a preallocated block pool and the allocator that hands out its blocks.

`KVBlockPool` holds, per layer, K and V tensors [nkv, num_blocks, block_size, d] (head-major: the
blocks of one head gathered by a block table are one contiguous [tokens, d] run per sequence,
which SDPA reads ~4x faster on CPU than the token-major [num_blocks, block_size, nkv, d]); the
model runner writes and reads them through each request's block table.
`BlockAllocator` is the interface the scheduler uses to own blocks on behalf of requests
(learners implement their own in lab 3); `PagedBlockAllocator` is the reference, with
prefix caching: full blocks are keyed by a chained hash of their tokens, shared through
reference counts, and kept after their last owner frees them until evicted (LRU).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Sequence

import torch

from inferlab.ints import cdiv


class KVBlockPool:
    """Per-layer K and V block tensors, allocated once.

    Args:
        num_layers, num_blocks, block_size, num_kv_heads, head_dim: pool shape.
    Attributes:
        keys[layer], values[layer]: [nkv, num_blocks, block_size, d] (head-major).
    """

    def __init__(self, num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int, head_dim: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        shape = (num_kv_heads, num_blocks, block_size, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.num_blocks, self.block_size = num_blocks, block_size

    @property
    def kv_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


class BlockAllocator(ABC):
    """Owns the KV blocks; the scheduler asks it for blocks on behalf of requests.

    A block table is a list of block ids; block i holds token positions [i*B, (i+1)*B).
    Invariants any implementation keeps: a block is either free or owned; blocks are
    shared only when they hold the same full prefix (prefix caching); `free` returns
    every block of a table; no block is lost (free + owned = num_blocks).
    """

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks, self.block_size = num_blocks, block_size

    def num_blocks_for(self, num_tokens: int) -> int:
        """Blocks needed to hold `num_tokens` tokens."""
        return cdiv(num_tokens, self.block_size)

    @abstractmethod
    def num_free_blocks(self) -> int:
        """Blocks that can be handed out now (cached-but-unowned blocks count as free)."""

    @abstractmethod
    def allocate(self, token_ids: Sequence[int]) -> tuple[list[int], int] | None:
        """Blocks for a request about to run, covering all of `token_ids`.

        Args:
            token_ids: the tokens whose K/V the request needs (prompt, plus output so far after a preemption).
        Returns:
            (block_table, num_cached_tokens): a table of `num_blocks_for(len(token_ids))` blocks and how
            many leading tokens already have their K/V in the cache (a multiple of block_size, always
            < len(token_ids) so at least one token is computed); or None, changing nothing, when there
            are not enough free blocks.
        """

    @abstractmethod
    def append_slots(self, block_table: list[int], num_tokens: int) -> bool:
        """Grow `block_table` in place so it holds `num_tokens` tokens.

        Returns:
            True on success; False, changing nothing, when there are not enough free blocks.
        """

    @abstractmethod
    def free(self, block_table: list[int]) -> None:
        """Release a request's blocks (the table's owner no longer uses them)."""

    def cache_blocks(self, token_ids: Sequence[int], block_table: list[int], num_computed_tokens: int) -> None:
        """Called after each step: the first `num_computed_tokens` of `token_ids` now have K/V in
        `block_table`. A prefix-caching allocator makes its full blocks findable; default: nothing."""


def _chain_hash(prev_hash: int | None, tokens: Sequence[int]) -> int:
    return hash((prev_hash, tuple(tokens)))


class PagedBlockAllocator(BlockAllocator):
    """Reference allocator: free list + reference counts + (optional) prefix cache with LRU eviction.

    Free blocks sit in an ordered dict: uncached ones at the front (handed out first), cached ones
    at the back in the order they were freed, so the least recently used cached block is evicted first.
    """

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        super().__init__(num_blocks, block_size)
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self._free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self._block_hash: list[int | None] = [None] * num_blocks
        self._block_tokens: list[tuple[int, ...] | None] = [None] * num_blocks
        self._hash_to_block: dict[int, int] = {}
        self.num_cache_hits = 0  # blocks served from the prefix cache, over the allocator's life

    def num_free_blocks(self) -> int:
        return len(self._free)

    def _match_prefix(self, token_ids: Sequence[int]) -> list[int]:
        """Cached blocks holding the longest full-block prefix of token_ids (never its last token)."""
        if not self.enable_prefix_caching:
            return []
        hits, prev = [], None
        bs = self.block_size
        for i in range((len(token_ids) - 1) // bs):
            tokens = tuple(token_ids[i * bs:(i + 1) * bs])
            prev = _chain_hash(prev, tokens)
            block = self._hash_to_block.get(prev)
            if block is None or self._block_tokens[block] != tokens:
                break
            hits.append(block)
        return hits

    def _take_free_block(self) -> int:
        block, _ = self._free.popitem(last=False)
        h = self._block_hash[block]
        if h is not None:  # evict: its contents are about to be overwritten
            if self._hash_to_block.get(h) == block:
                del self._hash_to_block[h]
            self._block_hash[block] = self._block_tokens[block] = None
        self.ref_counts[block] = 1
        return block

    def allocate(self, token_ids: Sequence[int]) -> tuple[list[int], int] | None:
        if not token_ids:
            raise ValueError("cannot allocate blocks for an empty token list")
        hits = self._match_prefix(token_ids)
        num_new = self.num_blocks_for(len(token_ids)) - len(hits)
        num_hits_free = sum(1 for b in hits if self.ref_counts[b] == 0)
        if num_new + num_hits_free > len(self._free):
            return None
        for b in hits:
            if self.ref_counts[b] == 0:
                del self._free[b]
            self.ref_counts[b] += 1
        self.num_cache_hits += len(hits)
        table = hits + [self._take_free_block() for _ in range(num_new)]
        return table, len(hits) * self.block_size

    def append_slots(self, block_table: list[int], num_tokens: int) -> bool:
        need = self.num_blocks_for(num_tokens) - len(block_table)
        if need > len(self._free):
            return False
        block_table.extend(self._take_free_block() for _ in range(max(need, 0)))
        return True

    def free(self, block_table: list[int]) -> None:
        for block in reversed(block_table):  # tail blocks first: they are the least likely to be shared
            if self.ref_counts[block] <= 0:
                raise RuntimeError(f"block {block} freed twice")
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                self._free[block] = None
                if self._block_hash[block] is None:
                    self._free.move_to_end(block, last=False)
        block_table.clear()

    def cache_blocks(self, token_ids: Sequence[int], block_table: list[int], num_computed_tokens: int) -> None:
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        num_full = min(num_computed_tokens // bs, len(block_table))
        # a table's keyed blocks are a prefix of it (cache hits first, then keys given in order; a block taken
        # from the free list has none): start after it, so a step costs its new blocks, not the whole table
        start = num_full
        while start > 0 and self._block_hash[block_table[start - 1]] is None:
            start -= 1
        prev = self._block_hash[block_table[start - 1]] if start else None
        for i in range(start, num_full):
            block = block_table[i]
            tokens = tuple(token_ids[i * bs:(i + 1) * bs])
            self._block_hash[block], self._block_tokens[block] = _chain_hash(prev, tokens), tokens
            self._hash_to_block.setdefault(self._block_hash[block], block)
            prev = self._block_hash[block]

    def num_cached_blocks(self) -> int:
        return len(self._hash_to_block)
