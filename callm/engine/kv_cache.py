"""BlockManager: who owns which KV-cache block, and which blocks hold reusable prefixes.

Blocks hold `block_size` tokens. A full block that has been computed is registered under a
chained hash (its tokens plus the hash of the block before), so a later request whose prompt
starts with the same tokens (a shared system prompt with tool definitions) reuses the blocks
instead of recomputing them. Blocks are reference-counted; a block nobody uses goes to the end
of the free queue but keeps its cached content until it is handed out again, oldest first (LRU).
"""

import hashlib
from array import array
from collections import OrderedDict

from callm.engine.request import Request


def chain_hash(previous: bytes, token_ids: list[int]) -> bytes:
    return hashlib.blake2b(previous + array("q", token_ids).tobytes(), digest_size=16).digest()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self.block_hash: list[bytes | None] = [None] * num_blocks
        self.cached: dict[bytes, int] = {}  # hash -> block holding that content
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.prefix_queries = 0  # prompt tokens looked up
        self.prefix_hits = 0  # of which found in the cache

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    @property
    def usage(self) -> float:
        return 1 - len(self.free) / self.num_blocks

    @property
    def prefix_hit_rate(self) -> float:
        return self.prefix_hits / self.prefix_queries if self.prefix_queries else 0.0

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _full_block_hashes(self, req: Request, upto_tokens: int) -> list[bytes]:
        """Extend the request's chained hashes to cover its full blocks below `upto_tokens`."""
        bs = self.block_size
        while len(req.block_hashes) < upto_tokens // bs:
            i = len(req.block_hashes)
            previous = req.block_hashes[-1] if i else b""
            req.block_hashes.append(chain_hash(previous, req.token_ids[i * bs:(i + 1) * bs]))
        return req.block_hashes

    def reuse_cached_prefix(self, req: Request) -> int:
        """For a request with no blocks yet: take the cached blocks of its longest known prefix.
        The block with its last token is always recomputed (its logits are needed, and shared
        blocks are never written). Returns the number of tokens reused."""
        assert not req.block_ids
        if not self.enable_prefix_caching:
            return 0
        usable = (req.num_tokens - 1) // self.block_size
        for h in self._full_block_hashes(req, usable * self.block_size)[:usable]:
            block = self.cached.get(h)
            if block is None:
                break
            if self.ref_counts[block] == 0:
                del self.free[block]
            self.ref_counts[block] += 1
            req.block_ids.append(block)
        reused = len(req.block_ids) * self.block_size
        req.num_computed_tokens = reused
        req.num_committed_blocks = len(req.block_ids)
        self.prefix_queries += len(req.prompt_token_ids)
        self.prefix_hits += min(reused, len(req.prompt_token_ids))
        return reused

    def allocate(self, req: Request, num_tokens: int) -> bool:
        """Give the request blocks for its first `num_tokens` tokens; False if too few are free."""
        needed = self.blocks_needed(num_tokens) - len(req.block_ids)
        if needed <= 0:
            return True
        if needed > len(self.free):
            return False
        for _ in range(needed):
            block, _ = self.free.popitem(last=False)  # least recently freed first
            old = self.block_hash[block]
            if old is not None:  # evict its cached content
                del self.cached[old]
                self.block_hash[block] = None
            self.ref_counts[block] = 1
            req.block_ids.append(block)
        return True

    def commit(self, req: Request) -> None:
        """After a step: register the request's newly computed full blocks for reuse."""
        if not self.enable_prefix_caching:
            return
        full = req.num_computed_tokens // self.block_size
        hashes = self._full_block_hashes(req, req.num_computed_tokens)
        for i in range(req.num_committed_blocks, full):
            block = req.block_ids[i]
            if self.block_hash[block] is None and hashes[i] not in self.cached:
                self.cached[hashes[i]] = block
                self.block_hash[block] = hashes[i]
        req.num_committed_blocks = max(req.num_committed_blocks, full)

    def free_request(self, req: Request) -> None:
        """Release the request's blocks, last first, so its prefix stays cached longest."""
        for block in reversed(req.block_ids):
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                self.free[block] = None
        req.block_ids = []
        req.num_computed_tokens = 0
        req.num_committed_blocks = 0
