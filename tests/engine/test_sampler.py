"""Sampler and SamplingParams: each knob does what vLLM's does, seeded runs are reproducible
whatever else shares the batch, and sampling matches the distribution it claims to draw from."""

import math

import pytest
import torch

from callm.engine.sampler import (
    Sampler,
    SamplingState,
    _apply_penalties,
    _top_k_top_p,
)
from callm.engine.sampling_params import SamplingParams

VOCAB = 1000


def state(prompt=(1, 2, 3), eos=(), outputs=(), **kw) -> SamplingState:
    s = SamplingState.create(SamplingParams(**kw), list(prompt), eos_token_ids=eos)
    s.output_token_ids.extend(outputs)
    return s


def sample(logits, states, sampler=None):
    return (sampler or Sampler(seed=0))(logits.clone(), states)


def ids(out):
    return [t.token_id for t in out]


def rand_logits(rows, vocab=VOCAB, seed=0, scale=3.0):
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * scale


def survivors(logits, params):
    """Which tokens survive top-k/top-p, as a [rows, vocab] mask."""
    vals, ids = _top_k_top_p(logits.clone(), params)
    mask = torch.zeros(logits.shape, dtype=torch.bool)
    for row, (v, i) in enumerate(zip(vals, ids)):
        mask[row, i[torch.isfinite(v)]] = True
    return mask


def keep_mask(logits, **kw):
    return survivors(logits.unsqueeze(0), [SamplingParams(**kw)])[0]


# --- greedy and its limits -------------------------------------------------------------------


def test_greedy_is_argmax():
    logits = rand_logits(8)
    out = sample(logits, [state(temperature=0.0) for _ in range(8)])
    assert ids(out) == logits.argmax(-1).tolist()


@pytest.mark.parametrize(
    "kw",
    [dict(temperature=1e-6), dict(top_k=1), dict(top_p=1e-6), dict(top_k=1, top_p=0.5, min_p=0.1)],
)
def test_limits_of_random_sampling_are_greedy(kw):
    logits = rand_logits(16, scale=0.5)  # flat: a random draw would rarely hit the argmax
    for seed in range(3):
        out = sample(logits, [state(**kw) for _ in range(16)], Sampler(seed=seed))
        assert ids(out) == logits.argmax(-1).tolist()


def test_mixed_batch_greedy_rows_stay_argmax():
    logits = rand_logits(6, scale=0.3)
    states = [state(temperature=0.0 if i % 2 else 1.0, top_p=0.9) for i in range(6)]
    got = ids(sample(logits, states))
    assert got[1::2] == logits.argmax(-1)[1::2].tolist()
    assert got[0::2] != logits.argmax(-1)[0::2].tolist()  # flat rows: a draw, not the argmax


# --- truncation ----------------------------------------------------------------------------


def test_min_p_filters():
    probs = torch.tensor([0.4, 0.3, 0.2, 0.05, 0.03, 0.02])
    out = sample(probs.log().repeat(500, 1), [state(min_p=0.25) for _ in range(500)])
    assert set(ids(out)) == {0, 1, 2}  # 0.05 < 0.25 * 0.4


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.tensor([0.4, 0.3, 0.2, 0.05, 0.03, 0.02]).log()
    assert keep_mask(logits, top_k=2).tolist() == [True, True] + [False] * 4
    assert keep_mask(logits, top_p=0.69).tolist() == [True, True] + [False] * 4  # 0.4+0.3 reaches
    assert keep_mask(logits, top_p=0.71).tolist() == [True] * 3 + [False] * 3
    # top-p over the top-k renormalised: 0.4/0.9 < 0.5 <= 0.7/0.9
    assert keep_mask(logits, top_k=3, top_p=0.5).tolist() == [True, True] + [False] * 4


def reference_cut(row, top_k, top_p):
    """Sort-based top-k then top-p as vLLM writes it, then every token tied with the last."""
    vals = row.sort(descending=True).values
    if top_k > 0:
        vals[top_k:] = float("-inf")
    before = vals.softmax(-1).cumsum(-1) - vals.softmax(-1)  # mass strictly above each token
    cutoff = vals[(before < top_p) & torch.isfinite(vals)].min()
    return row >= cutoff


@pytest.mark.parametrize("scale", [0.1, 1.0, 5.0])  # flat rows need the full-sort fallback
def test_top_p_matches_sorting_reference(scale):
    logits = rand_logits(12, vocab=5000, seed=3, scale=scale)
    settings = [(0, 0.9), (0, 0.5), (50, 0.9), (3000, 0.95), (10, 1.0), (0, 0.999)] * 2
    masks = survivors(logits, [SamplingParams(top_k=k, top_p=p) for k, p in settings])
    for row, mask, (k, p) in zip(logits, masks, settings):
        assert torch.equal(mask, reference_cut(row, k, p)), (k, p)


# --- seeds ---------------------------------------------------------------------------------


def run_steps(make_batch, row, steps=6, vocab=VOCAB):
    """Tokens of the state at `row` over several steps; step t's logits are a fixed function of
    t for that row and random elsewhere."""
    states = make_batch()
    sampler, got = Sampler(), []
    for t in range(steps):
        logits = rand_logits(len(states), vocab, seed=100 + t + 1000 * len(states), scale=2.0)
        logits[row] = rand_logits(1, vocab, seed=t, scale=2.0)[0]
        out = sampler(logits, states)
        for s, tok in zip(states, out):
            s.output_token_ids.append(tok.token_id)
        got.append(out[row].token_id)
    return got


@pytest.mark.parametrize(
    "seeded",
    [
        dict(seed=1234),  # whole-vocab race
        dict(seed=1234, top_p=0.95, presence_penalty=0.5),  # cutoff beyond the block: full sort
        dict(seed=99, top_k=20, temperature=0.8, repetition_penalty=1.2),  # cutoff in the block
        dict(seed=5, min_p=0.02, top_p=0.9),
    ],
)
def test_seeded_request_ignores_batch_composition(seeded):
    vocab = 5000  # above the top-p block size, so both cutoff paths run
    alone = run_steps(lambda: [state(**seeded)], row=0, vocab=vocab)
    crowded = run_steps(
        lambda: [state(), state(seed=7), state(**seeded), state(temperature=0), state(top_k=3000)],
        row=2, vocab=vocab,
    )
    first = run_steps(
        lambda: [state(**seeded), state(seed=1234, top_p=0.5), state(), state()], row=0, vocab=vocab
    )
    assert alone == crowded == first
    assert len(set(alone)) > 1  # the draws really were random


def test_different_seeds_differ():
    runs = {tuple(run_steps(lambda s=s: [state(seed=s)], row=0)) for s in range(5)}
    assert len(runs) == 5


def test_seed_offset_separates_siblings():
    params = SamplingParams(seed=5)
    a, b = SamplingState.create(params, [1], 0), SamplingState.create(params, [1], 1)
    logits = rand_logits(2, scale=0.1)
    logits[1] = logits[0]
    out = Sampler()(logits, [a, b])
    assert out[0].token_id != out[1].token_id


# --- penalties -----------------------------------------------------------------------------


def test_penalties_exact_values():
    logits = torch.tensor([[2.0, -1.0, 0.5, -2.0, 1.0, 3.0]])
    s = state(prompt=[0, 1], outputs=[2, 2, 3], repetition_penalty=2.0,
              frequency_penalty=0.5, presence_penalty=0.25)
    _apply_penalties(logits, [s])
    # rep: 0,1 from the prompt and 2,3 from the output; then -0.5*count - 0.25 on 2 and 3
    expected = [1.0, -2.0, 0.25 - 1.0 - 0.25, -4.0 - 0.5 - 0.25, 1.0, 3.0]
    assert logits[0].tolist() == pytest.approx(expected)


def test_penalties_touch_only_their_rows():
    logits = rand_logits(3, vocab=8)
    states = [
        state(outputs=[1, 1]), state(outputs=[1, 1], frequency_penalty=1.0), state(outputs=[4])
    ]
    out = logits.clone()
    _apply_penalties(out, states)
    assert torch.equal(out[[0, 2]], logits[[0, 2]])
    assert out[1, 1] == pytest.approx(logits[1, 1] - 2.0)
    assert torch.equal(out[1, 2:], logits[1, 2:])


def test_penalty_changes_greedy_choice():
    logits = torch.tensor([[0.0, 5.0, 4.9, 0.0]])
    assert ids(sample(logits, [state(temperature=0, outputs=[1])])) == [1]
    assert ids(sample(logits, [state(temperature=0, outputs=[1], presence_penalty=0.2)])) == [2]
    assert ids(sample(logits, [state(temperature=0, prompt=[1], repetition_penalty=1.1)])) == [2]


# --- stopping tokens -----------------------------------------------------------------------


def test_min_tokens_blocks_eos_and_stop_tokens():
    logits = torch.tensor([[0.0, 1.0, 2.0, 9.0, 8.0]])  # 3 = EOS, 4 = a stop token
    picks = [
        ids(sample(logits, [state(eos=[3], outputs=[0] * n, temperature=0,
                                  min_tokens=3, stop_token_ids=[4])]))[0]
        for n in range(5)
    ]
    assert picks == [2, 2, 2, 3, 3]


def test_ignore_eos():
    logits = torch.tensor([[0.0, 1.0, 9.0]] * 50)
    out = sample(logits, [state(eos=[2], ignore_eos=True, outputs=[0] * 10) for _ in range(50)])
    assert 2 not in ids(out)
    assert ids(sample(logits[:1], [state(eos=[2], temperature=0)])) == [2]


# --- logprobs ------------------------------------------------------------------------------


def test_logprobs_are_raw_log_softmax():
    logits = rand_logits(4)
    states = [
        state(logprobs=5, temperature=0.7, presence_penalty=1.0, outputs=[1, 2]),
        state(),
        state(logprobs=0, temperature=0),
        state(logprobs=20, top_k=3),
    ]
    out = sample(logits, states)
    ref = logits.log_softmax(-1)
    assert out[1].logprob is None and out[1].top_logprobs is None
    assert out[2].top_logprobs == []
    for i, n in ((0, 5), (2, 0), (3, 20)):
        tok = out[i]
        assert tok.logprob == pytest.approx(ref[i, tok.token_id].item(), abs=1e-5)
        assert len(tok.top_logprobs) == n
        expected = ref[i].topk(n) if n else None
        for (tid, lp), v, j in zip(tok.top_logprobs, *(expected or ((), ()))):
            assert tid == j.item() and lp == pytest.approx(v.item(), abs=1e-5)
        values = [lp for _, lp in tok.top_logprobs]
        assert values == sorted(values, reverse=True)


# --- logits processors ---------------------------------------------------------------------


def test_logits_processors_apply_to_their_row_only():
    seen = []

    def force_7(output_ids, row):
        seen.append((list(output_ids), row.shape))
        row[:] = float("-inf")
        row[7] = 0.0
        return row

    logits = rand_logits(3, vocab=20)
    states = [state(temperature=0), state(temperature=0, outputs=[4, 5],
                                         logits_processors=[force_7]), state(temperature=0)]
    out = ids(sample(logits, states))
    assert out[1] == 7
    assert [out[0], out[2]] == logits.argmax(-1)[[0, 2]].tolist()
    assert seen == [([4, 5], torch.Size([20]))]


def test_logits_processor_may_return_a_new_tensor():
    logits = rand_logits(2, vocab=10)

    def bump(_ids, row):
        return row + torch.nn.functional.one_hot(torch.tensor(3), 10) * 100

    assert ids(sample(logits, [state(temperature=0, logits_processors=[bump])] * 2)) == [3, 3]


# --- statistics ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, expected",
    [
        (dict(), [0.5, 0.3, 0.15, 0.05]),
        (dict(temperature=2.0), None),  # p ** (1/2), renormalised
        (dict(top_k=2), [0.625, 0.375, 0, 0]),
        (dict(top_p=0.75), [0.625, 0.375, 0, 0]),
    ],
)
def test_frequencies_match_distribution(kw, expected):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    if expected is None:
        expected = (probs.sqrt() / probs.sqrt().sum()).tolist()
    n = 20000
    # one unseeded state may stand for many rows: it has no generator to share
    out = sample(probs.log().repeat(n, 1), [state(**kw)] * n, Sampler(seed=42))
    freq = torch.bincount(torch.tensor(ids(out)), minlength=4) / n
    assert freq.tolist() == pytest.approx(expected, abs=0.015)


def test_seeded_rows_follow_the_distribution_too():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    n = 5000
    states = [state(seed=i) for i in range(n)]
    out = sample(probs.log().repeat(n, 1), states)
    freq = torch.bincount(torch.tensor(ids(out)), minlength=4) / n
    assert freq.tolist() == pytest.approx(probs.tolist(), abs=0.025)


# --- SamplingParams ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("n", 0), ("temperature", -0.1), ("temperature", float("nan")), ("top_p", 0.0),
        ("top_p", 1.5), ("top_k", -2), ("min_p", 1.1), ("presence_penalty", 2.5),
        ("frequency_penalty", -3.0), ("repetition_penalty", 0.0), ("max_tokens", 0),
        ("min_tokens", -1), ("logprobs", 21), ("logprobs", -1), ("stop_token_ids", [-1]),
        ("logits_processors", ["not callable"]),
    ],
)
def test_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})


def test_min_tokens_above_max_tokens():
    with pytest.raises(ValueError, match="min_tokens"):
        SamplingParams(max_tokens=4, min_tokens=5)
    SamplingParams(max_tokens=None, min_tokens=50)


def test_params_defaults_and_normalisation():
    p = SamplingParams(stop="###", stop_token_ids=None, top_k=-1)
    assert p.stop == ["###"] and p.stop_token_ids == [] and p.logits_processors == []
    assert not p.greedy and SamplingParams(temperature=0).greedy
    assert SamplingParams(temperature=1e-6).greedy and not SamplingParams(temperature=1e-4).greedy
    assert SamplingParams().max_tokens == 16 and SamplingParams().extra == {}


def test_unseeded_sampler_seed_is_reproducible():
    logits = rand_logits(8, scale=0.3)
    a = ids(sample(logits, [state() for _ in range(8)], Sampler(seed=3)))
    b = ids(sample(logits, [state() for _ in range(8)], Sampler(seed=3)))
    assert a == b
    assert not math.isnan(sum(a))


def test_ties_at_the_cutoff_survive_and_do_not_depend_on_the_batch():
    """Quantised models tie logits: the surviving set is by value, whatever block topk saw."""
    logits = torch.tensor([[3.0, 1.0, 2.0, 2.0, 2.0, 0.0]])
    assert keep_mask(logits[0], top_k=2).tolist() == [True, False, True, True, True, False]
    tied = rand_logits(1, vocab=5000, seed=9, scale=1.5).round()  # a few hundred tokens per value
    for k, p in ((0, 0.5), (0, 0.9), (200, 1.0), (300, 0.8)):
        alone = survivors(tied, [SamplingParams(top_k=k, top_p=p)])[0]
        # a neighbour with a large top-k changes the block sizes this row is read from
        pair = [SamplingParams(top_k=4000), SamplingParams(top_k=k, top_p=p)]
        crowded = survivors(tied.repeat(2, 1), pair)[1]
        assert torch.equal(alone, crowded) and torch.equal(alone, reference_cut(tied[0], k, p))


def test_seeded_tokens_with_tied_logits_ignore_batch():
    tied = rand_logits(1, vocab=5000, seed=9, scale=1.5).round()
    alone, crowded = state(seed=11, top_p=0.9), state(seed=11, top_p=0.9)
    a = [Sampler()(tied.clone(), [alone])[0].token_id for _ in range(5)]
    batch = [state(top_k=4000), crowded, state()]
    b = [Sampler()(tied.repeat(3, 1), batch)[1].token_id for _ in range(5)]
    assert a == b and len(set(a)) > 1


def test_min_p_then_top_k_with_few_finite_logits():
    probs = torch.tensor([0.6, 0.3, 0.05, 0.03, 0.02] + [0.0] * 300)
    out = sample(probs.log().repeat(300, 1), [state(min_p=0.2, top_k=50)] * 300)
    assert set(ids(out)) == {0, 1}


def test_repetition_penalty_below_one_encourages():
    logits = torch.tensor([[2.0, -1.0, 1.0]])
    _apply_penalties(logits, [state(prompt=[0, 1], repetition_penalty=0.5)])
    assert logits[0].tolist() == [4.0, -0.5, 1.0]


def test_bf16_logits_are_accepted():
    logits = rand_logits(3).bfloat16()
    assert ids(sample(logits, [state(temperature=0)] * 3)) == logits.float().argmax(-1).tolist()
