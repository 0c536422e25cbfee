"""Continuous batching: which requests run in the next step, and how many tokens each.

Every step has a token budget (`max_num_batched_tokens`) and a sequence cap (`max_num_seqs`).
Running requests go first, oldest first: a decode needs one token, an unfinished prompt takes
what the budget leaves (chunked prefill). Then waiting requests join, reusing cached prefix
blocks. When KV blocks run out, the newest running request is preempted: its blocks are freed
and it waits at the front of the queue to be recomputed (its prefix usually still cached).
"""

from collections import deque

from callm.engine.kv_cache import BlockManager
from callm.engine.request import Request, RequestStatus


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int,
                 max_num_batched_tokens: int):
        self.blocks = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.num_preemptions = 0

    def add(self, req: Request) -> None:
        self.waiting.append(req)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> list[tuple[Request, int]]:
        """Pick this step's work: (request, number of its tokens to compute now)."""
        budget = self.max_num_batched_tokens
        scheduled: list[tuple[Request, int]] = []
        preempted = False
        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            n = min(req.num_tokens - req.num_computed_tokens, budget)
            while not self.blocks.allocate(req, req.num_computed_tokens + n):
                victim = self.running.pop()
                self._preempt(victim)
                preempted = True
                if victim is req:
                    break
            else:
                scheduled.append((req, n))
                budget -= n
                i += 1
                continue
            break  # the request itself was preempted: nothing older is left to try
        # New requests join only if nothing had to be preempted for lack of blocks.
        while not preempted and self.waiting and budget > 0 and \
                len(self.running) < self.max_num_seqs:
            req = self.waiting[0]
            if not req.block_ids:
                self.blocks.reuse_cached_prefix(req)
                req.num_cached_tokens = max(req.num_cached_tokens, req.num_computed_tokens)
            n = min(req.num_tokens - req.num_computed_tokens, budget)
            if not self.blocks.allocate(req, req.num_computed_tokens + n):
                self.blocks.free_request(req)  # give back the reused prefix, wait for room
                break
            self.waiting.popleft()
            req.status = RequestStatus.RUNNING
            self.running.append(req)
            scheduled.append((req, n))
            budget -= n
        return scheduled

    def _preempt(self, req: Request) -> None:
        self.blocks.free_request(req)
        req.status = RequestStatus.WAITING
        self.waiting.appendleft(req)
        self.num_preemptions += 1

    def finish(self, req: Request) -> None:
        """Remove a finished or aborted request wherever it is and free its blocks."""
        if req in self.running:
            self.running.remove(req)
        elif req in self.waiting:
            self.waiting.remove(req)
        self.blocks.free_request(req)
        req.status = RequestStatus.FINISHED
