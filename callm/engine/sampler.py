"""Turns one step's logits into each running sequence's next token.

The batch goes through one pass of tensor ops; what no row asks for (penalties, truncation,
logprobs) costs nothing. Order, as in vLLM v1: per-request logits processors, EOS/stop masking
(min_tokens, ignore_eos), repetition then presence/frequency penalties, temperature, min-p,
top-k/top-p, then argmax (greedy) or the exponential race (random). A seeded sequence's noise
comes from its own generator, one uniform per vocabulary entry per step, indexed by token id:
its tokens do not depend on what else is in the batch or on its row.

Logprobs are vLLM v1's default ("raw_logprobs"): log_softmax of the logits as handed in, i.e.
before logits processors, penalties, temperature and truncation — what the model believes, not
the distribution we happened to sample from. (A grammar bitmask the engine applies before
calling the sampler is included.)

CPU cost notes (measured, 32 x 49152 fp32): a fresh [batch, vocab] temporary can cost ~3 ms
in page faults, more than the math on it, so the work is done in place on `logits`, penalties
touch only the (row, token) pairs that occur, and the noise buffer is reused. top-p reads its
cutoff off the best 1024 logits and sorts a whole row (values only) just when its mass lies
further out. torch.argmax, and torch.topk/sort for large k, are 4-25x slower than numpy's, so
those go through numpy on CPU. exp() of very negative inputs takes a slow path: exponents are
floored at -80.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from callm.engine.sampling_params import SamplingParams

_TOP_P_BLOCK = 1024  # best logits examined before sorting a whole row for its top-p cutoff
_NEG_INF = float("-inf")
# exp() of inputs below about -87 (denormal/underflow, -inf) is 5-50x slower on CPU, so
# exponents are floored here: e^-80 is 1e-35, 1e-30 summed over any vocab.
_EXP_FLOOR = -80.0


@dataclass
class SamplingState:
    """One running sequence's sampling context; the engine owns it and appends outputs."""

    params: SamplingParams
    prompt_token_ids: list[int]
    output_token_ids: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    eos_token_ids: frozenset[int] = frozenset()
    _prompt_tensor: torch.Tensor | None = field(default=None, init=False, repr=False)

    @classmethod
    def create(
        cls,
        params: SamplingParams,
        prompt_token_ids: list[int],
        seed_offset: int = 0,
        eos_token_ids: Iterable[int] = (),
    ) -> SamplingState:
        """`seed_offset` tells a request's n sequences apart (seed + index), as vLLM does."""
        generator = None
        if params.seed is not None:
            generator = torch.Generator().manual_seed(params.seed + seed_offset)
        return cls(params, list(prompt_token_ids), [], generator, frozenset(eos_token_ids))

    def prompt_tensor(self) -> torch.Tensor:
        """The prompt as a tensor, built once: the repetition penalty needs it every step."""
        if self._prompt_tensor is None:
            self._prompt_tensor = torch.tensor(self.prompt_token_ids, dtype=torch.long)
        return self._prompt_tensor


@dataclass
class SampledToken:
    token_id: int
    logprob: float | None  # raw logprob of token_id; None unless params.logprobs is set
    top_logprobs: list[tuple[int, float]] | None  # params.logprobs best (id, raw logprob)


class Sampler:
    """Picks next tokens for a batch. `seed` seeds the noise of unseeded requests."""

    def __init__(self, seed: int | None = None):
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self._noise = torch.empty(0)

    def __call__(self, logits: torch.Tensor, states: list[SamplingState]) -> list[SampledToken]:
        """`logits` is [len(states), vocab] float32; it is overwritten."""
        logits = logits.float().contiguous()
        params = [s.params for s in states]
        lp_rows = [i for i, p in enumerate(params) if p.logprobs is not None]
        raw_logprobs = _rows(logits, lp_rows).log_softmax(-1) if lp_rows else None

        for i, s in enumerate(states):
            for proc in s.params.logits_processors:
                logits[i] = proc(s.output_token_ids, logits[i])
        _mask_stop_tokens(logits, states)
        _apply_penalties(logits, states)

        tokens = torch.empty(len(states), dtype=torch.long)
        greedy = [i for i, p in enumerate(params) if p.greedy]
        random = [i for i, p in enumerate(params) if not p.greedy]
        if greedy:
            tokens[greedy] = _argmax(_rows(logits, greedy))
        if random:
            tokens[random] = self._sample(_rows(logits, random), [states[i] for i in random])

        out = [SampledToken(t, None, None) for t in tokens.tolist()]
        if lp_rows:
            chosen = raw_logprobs.gather(1, tokens[lp_rows].unsqueeze(1)).squeeze(1).tolist()
            top_v, top_i = raw_logprobs.topk(max(params[i].logprobs for i in lp_rows), -1)
            top_v, top_i = top_v.tolist(), top_i.tolist()
            for j, i in enumerate(lp_rows):
                n = params[i].logprobs
                out[i].logprob = chosen[j]
                out[i].top_logprobs = list(zip(top_i[j][:n], top_v[j][:n]))
        return out

    def _sample(self, logits: torch.Tensor, states: list[SamplingState]) -> torch.Tensor:
        """Temperature, min-p, top-k/top-p, then a draw, for rows that all sample randomly."""
        params = [s.params for s in states]
        temps = [p.temperature for p in params]
        if any(t != 1.0 for t in temps):
            logits.div_(torch.tensor(temps).unsqueeze(1))
        _apply_min_p(logits, [p.min_p for p in params])

        tokens = torch.empty(len(states), dtype=torch.long)
        cut = [j for j, p in enumerate(params) if p.top_k > 0 or p.top_p < 1.0]
        whole = [j for j, p in enumerate(params) if not (p.top_k > 0 or p.top_p < 1.0)]
        if whole:
            rows = _rows(logits, whole)
            tokens[whole] = self._race(rows, None, [states[j].generator for j in whole])
        if cut:
            vals, ids = _top_k_top_p(_rows(logits, cut), [params[j] for j in cut])
            picked = self._race(vals, ids, [states[j].generator for j in cut], logits.shape[1])
            tokens[cut] = ids.gather(1, picked.unsqueeze(1)).squeeze(1)
        return tokens

    def _race(self, logits: torch.Tensor, ids: torch.Tensor | None, generators: list, vocab=0):
        """argmax(p / E) with E ~ Exponential(1) picks index i with probability p_i; p need not
        be normalised. `ids` maps columns to token ids (None: column = token id); a seeded
        row's noise is indexed by token id so the column order does not matter. A token at
        the exp floor (p <= e^-80) never wins: E >= 6e-8 (U has 24 bits) and the best token
        scores p / E >= 1 / 16.7."""
        probs = logits.sub_(logits.amax(-1, keepdim=True)).clamp_(min=_EXP_FLOOR).exp_()
        rows, cols = probs.shape
        if self._noise.numel() < rows * cols:
            self._noise = torch.empty(rows * cols)
        noise = self._noise[: rows * cols].view(rows, cols)
        shared = [j for j, g in enumerate(generators) if g is None]
        if len(shared) == rows:
            noise.uniform_(generator=self.generator)
        elif shared:
            noise[shared] = torch.rand(len(shared), cols, generator=self.generator)
        for j, g in enumerate(generators):
            if g is not None:
                u = torch.rand(vocab or cols, generator=g)
                noise[j] = u if ids is None else u[ids[j]]
        # -log(U) ~ Exp(1); torch.rand + log is 5x faster than exponential_ on CPU
        return _argmax(probs.div_(noise.log_().neg_()))


def _rows(x: torch.Tensor, idx: list[int]) -> torch.Tensor:
    """x[idx] without the copy when idx is every row (callers then work in place on x)."""
    return x if len(idx) == x.shape[0] else x[idx]


def _argmax(x: torch.Tensor) -> torch.Tensor:
    if x.device.type == "cpu":  # same first-index tie rule as torch, ~15x faster
        return torch.from_numpy(x.detach().numpy().argmax(-1))
    return x.argmax(-1)


def _mask_stop_tokens(logits: torch.Tensor, states: list[SamplingState]) -> None:
    """EOS is banned under ignore_eos; EOS and stop tokens until min_tokens are out."""
    rows, cols = [], []
    for i, s in enumerate(states):
        p = s.params
        banned: Iterable[int] = ()
        if len(s.output_token_ids) < p.min_tokens:
            banned = itertools.chain(s.eos_token_ids, p.stop_token_ids)
        elif p.ignore_eos:
            banned = s.eos_token_ids
        for t in banned:
            if t < logits.shape[1]:
                rows.append(i)
                cols.append(t)
    if rows:
        logits[rows, cols] = _NEG_INF


def _apply_penalties(logits: torch.Tensor, states: list[SamplingState]) -> None:
    """Repetition penalty (HF: over prompt + output, divides positive logits and multiplies
    negative ones), then OpenAI's presence/frequency penalties over the output. Works on the
    flat (row * vocab + token) indices of the tokens that occur, never on [batch, vocab]."""
    vocab = logits.shape[1]
    flat = logits.view(-1)
    rep_rows = [i for i, s in enumerate(states) if s.params.repetition_penalty != 1.0]
    if rep_rows:
        prompts = [states[i].prompt_tensor() for i in rep_rows]
        outputs = [torch.tensor(states[i].output_token_ids, dtype=torch.long) for i in rep_rows]
        seen = torch.cat(
            [_flat_index(prompts, rep_rows, vocab), _flat_index(outputs, rep_rows, vocab)]
        ).unique()
        rep = torch.tensor([s.params.repetition_penalty for s in states])[seen // vocab]
        v = flat[seen]
        flat[seen] = torch.where(v > 0, v / rep, v * rep)

    pen_rows = [
        i for i, s in enumerate(states) if s.params.presence_penalty or s.params.frequency_penalty
    ]
    if pen_rows:
        outputs = [torch.tensor(states[i].output_token_ids, dtype=torch.long) for i in pen_rows]
        idx, counts = _flat_index(outputs, pen_rows, vocab).unique(return_counts=True)
        row = idx // vocab
        freq = torch.tensor([s.params.frequency_penalty for s in states])[row]
        pres = torch.tensor([s.params.presence_penalty for s in states])[row]
        flat[idx] -= freq * counts + pres


def _flat_index(per_row: list[torch.Tensor], rows: list[int], vocab: int) -> torch.Tensor:
    """Token ids of batch row r offset by r * vocab, to index logits.view(-1)."""
    offsets = torch.tensor(rows) * vocab
    return torch.cat(per_row) + offsets.repeat_interleave(torch.tensor([len(t) for t in per_row]))


def _apply_min_p(logits: torch.Tensor, min_ps: list[float]) -> None:
    """Drops tokens with p < min_p * p_max, i.e. logit < max_logit + log(min_p): no softmax."""
    if not any(min_ps):
        return
    floor = logits.amax(-1, keepdim=True) + torch.tensor(min_ps).log().unsqueeze(1)
    logits.masked_fill_(logits < floor, _NEG_INF)


def _top_k_top_p(
    logits: torch.Tensor, params: list[SamplingParams]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's surviving tokens as (logits, ids) [rows, width], in no set order, -inf padded.

    A token survives if its logit is at least the row's cutoff: the k-th best logit (top-k),
    or the logit of the token at which the cumulative probability, renormalised over the top-k
    when both are set, reaches top_p (vLLM's rule; ties at the cutoff all survive). Cutoffs are
    read off the best `_TOP_P_BLOCK` logits; a row whose cutoff (with its ties) is not inside
    that block is sorted whole. So the surviving set never depends on the rest of the batch."""
    rows, vocab = logits.shape
    ks = torch.tensor([p.top_k if 0 < p.top_k < vocab else vocab for p in params])
    # top_p = 1 becomes 2, which the cumulative sum never reaches even after rounding
    ps = torch.tensor([p.top_p if p.top_p < 1 else 2.0 for p in params])
    log_z = torch.zeros(rows)  # full-vocab normaliser, needed by rows without top-k
    if no_k := (ks == vocab).nonzero().squeeze(1).tolist():
        log_z[no_k] = _logsumexp(_rows(logits, no_k))
    pieces = []
    todo = torch.arange(rows)
    for block in (_TOP_P_BLOCK, vocab):
        k = ks[todo]
        fetch = min(vocab, max([block, *(k[k < vocab] + 1).tolist()]))
        x = _rows(logits, todo.tolist())
        vals, ids = _best(x, fetch)
        z, in_k = log_z[todo], None
        if (k < vocab).any():  # renormalise over the top-k: tokens past it add nothing
            in_k = torch.arange(fetch) < k.unsqueeze(1)
            z = torch.where(k < vocab, _logsumexp(vals.masked_fill(~in_k, _NEG_INF)), z)
        probs = (vals - z.unsqueeze(1)).clamp_(min=_EXP_FLOOR).exp_()
        cum = (probs if in_k is None else probs.masked_fill_(~in_k, 0)).cumsum_(-1)
        last = (cum < ps[todo].unsqueeze(1)).sum(-1).clamp_(max=k.clamp(max=fetch) - 1)
        cut = vals.gather(1, last.unsqueeze(1))
        tail = vals[:, -1:]
        done = ((tail < cut) | (tail == _NEG_INF) | (fetch == vocab)).squeeze(1)
        width = max([1, *((vals >= cut) & (vals > _NEG_INF)).sum(-1)[done].tolist()])
        if ids is None:  # a whole-row sort gave values only; now fetch the survivors' ids
            ids = _best_ids(x, width)
            vals = x.gather(1, ids)
        vals, ids = vals[done, :width], ids[done, :width]
        pieces.append((todo[done], vals.masked_fill_(vals < cut[done], _NEG_INF), ids))
        todo = todo[~done]
        if not todo.numel():
            break
    width = max(v.shape[1] for _, v, _ in pieces)
    out_vals = torch.full((rows, width), _NEG_INF)
    out_ids = torch.zeros((rows, width), dtype=torch.long)
    for r, v, i in pieces:
        out_vals[r, : v.shape[1]] = v
        out_ids[r, : i.shape[1]] = i
    return out_vals, out_ids


def _logsumexp(x: torch.Tensor) -> torch.Tensor:
    """Per-row logsumexp with floored exponents (torch.logsumexp hits exp's slow path)."""
    m = x.amax(-1, keepdim=True)
    return (x - m).clamp_(min=_EXP_FLOOR).exp_().sum(-1).log_() + m.squeeze(1)


# numpy's SIMD partition and sort are much faster on CPU than torch.topk/sort for large k
# (32 x 49152: best 1024 with ids 3 vs 12 ms; whole rows, values only, 4 vs 100 ms).

def _best(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The k largest values of each row, best first, with their ids; for k = vocab the values
    only (ids are None): sorting ids along costs 5x more."""
    if x.device.type != "cpu":
        vals, ids = x.topk(k, -1)
        return vals, (ids if k < x.shape[1] else None)
    a = x.detach().numpy()
    if k == a.shape[1]:
        return torch.from_numpy(np.ascontiguousarray(np.sort(a, axis=-1)[:, ::-1])), None
    ids = _best_ids(x, k)
    vals = x.gather(1, ids)
    order = torch.from_numpy(np.ascontiguousarray(np.argsort(vals.numpy(), axis=-1)[:, ::-1]))
    return vals.gather(1, order), ids.gather(1, order)


def _best_ids(x: torch.Tensor, k: int) -> torch.Tensor:
    """Ids of the k largest values of each row, in no set order."""
    if k == x.shape[1]:
        return torch.arange(k).expand(x.shape[0], -1)
    if x.device.type != "cpu":
        return x.topk(k, -1, sorted=False).indices
    a = x.detach().numpy()
    ids = np.argpartition(a, a.shape[1] - k, axis=-1)[:, -k:]
    return torch.from_numpy(np.ascontiguousarray(ids))
