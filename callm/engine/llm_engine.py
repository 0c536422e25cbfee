"""LLMEngine: requests in, one batched model step at a time, outputs back.

`step()` asks the scheduler for this step's work, runs it on the executor, samples a token for
every request whose tokens are all computed, detokenizes, applies stop conditions and returns a
`RequestOutput` for each request that moved. The async server and the offline `LLM` both drive
this same core.
"""

import dataclasses
import logging
import time

import torch

from callm.config import EngineConfig
from callm.engine.detokenizer import IncrementalDetokenizer
from callm.engine.kv_cache import BlockManager
from callm.engine.request import Request, RequestOutput
from callm.engine.sampler import Sampler, SamplingState
from callm.engine.sampling_params import SamplingParams
from callm.engine.scheduler import Scheduler
from callm.engine.structured_output import StructuredOutputManager
from callm.model_executor.worker import SequenceInput

logger = logging.getLogger(__name__)

# End-of-turn tokens that stop generation when the tokenizer has them (GGUF files carry no
# generation config listing them).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>")
MAX_DEFAULT_CONTEXT = 8192


def eos_token_ids(tokenizer) -> frozenset[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return frozenset(ids)


class LLMEngine:
    def __init__(self, config: EngineConfig | None = None, **kwargs):
        from callm.model_executor.dtype import resolve_dtype, set_num_threads
        from callm.model_executor.executor import DTYPES, make_executor
        from callm.model_executor.loader import load_config
        from callm.model_files import load_tokenizer, resolve_model
        from callm.plugins import load_general_plugins

        load_general_plugins()
        config = config or EngineConfig(**kwargs)
        threads = set_num_threads(config.num_threads)
        choice = resolve_dtype(config.dtype)  # "auto": by CPU capability and a short probe
        logger.info("dtype %s (%s: %s); %d threads%s", choice.dtype, config.dtype, choice.reason,
                    threads, "" if config.num_threads else " (all cores)")
        if choice.dtype != config.dtype:
            config = dataclasses.replace(config, dtype=choice.dtype)
        self.config = config
        torch.manual_seed(config.seed)
        self.model_path = resolve_model(config.model)
        self.tokenizer = load_tokenizer(config.tokenizer or config.model)
        model_config = load_config(self.model_path)
        if config.quantization == "auto":  # the GGUF's precision class, if its kernel is faster
            from callm.model_executor.layers.quantization import resolve_quantization

            method, why = resolve_quantization(
                "auto", getattr(model_config, "gguf_quant_type", None), DTYPES[config.dtype],
                (2 * model_config.intermediate_size, model_config.hidden_size))
            logger.info("quantization %s (auto: %s)", method, why)
            config = self.config = dataclasses.replace(config, quantization=method)
        context = getattr(model_config, "max_position_embeddings", None) or MAX_DEFAULT_CONTEXT
        self.max_model_len = config.max_model_len or min(context, MAX_DEFAULT_CONTEXT)
        # uni / mp / ray by tensor_parallel_size and distributed_executor_backend
        self.executor = make_executor(config, self.model_path, self.max_model_len)
        self.block_manager = BlockManager(self.executor.num_blocks, config.block_size,
                                          config.enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs,
                                   config.max_num_batched_tokens)
        self.sampler = Sampler()
        self.eos_token_ids = eos_token_ids(self.tokenizer)
        # grammars for structured outputs / tool calls; backends load on first use
        self.structured_outputs = StructuredOutputManager(
            self.tokenizer, getattr(model_config, "vocab_size", None) or len(self.tokenizer),
            self.eos_token_ids, config.structured_outputs_backend)
        self.groups: dict[str, list[Request]] = {}
        kv_tokens = self.executor.num_blocks * config.block_size
        logger.info("model %s (%s), dtype %s, quantization %s: %d KV blocks of %d tokens = "
                    "%d tokens of KV cache, max concurrency %.1f at %d tokens per request",
                    config.model,
                    self.model_path.name, config.dtype, config.quantization,
                    self.executor.num_blocks,
                    config.block_size, kv_tokens, kv_tokens / self.max_model_len,
                    self.max_model_len)

    # ----- requests -----

    def add_request(self, request_id: str, prompt: str | list[int],
                    params: SamplingParams | None = None, add_special_tokens: bool = True) -> None:
        if request_id in self.groups:
            raise ValueError(f"request id {request_id!r} is already in use")
        params = params or SamplingParams()
        if isinstance(prompt, str):
            prompt_text = prompt
            prompt_ids = self.tokenizer.encode(prompt, add_special_tokens=add_special_tokens)
        else:
            prompt_text, prompt_ids = None, list(prompt)
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        if len(prompt_ids) >= self.max_model_len:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens, but the model's context "
                             f"is {self.max_model_len} tokens (including the output)")
        capacity = self.block_manager.num_blocks * self.block_manager.block_size
        if len(prompt_ids) >= capacity:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens, more than the KV cache "
                             f"holds ({capacity})")
        vocab = len(self.tokenizer)
        if any(not 0 <= t < vocab for t in prompt_ids):
            raise ValueError(f"prompt token ids must be in [0, {vocab})")
        grammar = None  # compiled (or cached) here: a bad schema is the caller's ValueError
        if params.structured_outputs is not None:
            grammar = self.structured_outputs.compile(params.structured_outputs)
        children = []
        for index in range(params.n):
            detokenizer = IncrementalDetokenizer(
                self.tokenizer, prompt_ids, params.skip_special_tokens, params.stop,
                params.include_stop_str_in_output)
            children.append(Request(
                request_id, index, prompt_text, prompt_ids, params,
                SamplingState.create(params, prompt_ids, seed_offset=index,
                                     eos_token_ids=self.eos_token_ids),
                detokenizer, self.eos_token_ids))
            if grammar is not None:
                children[-1].grammar = self.structured_outputs.new_matcher(grammar)
        self.groups[request_id] = children
        for child in children:
            self.scheduler.add(child)

    def abort_request(self, request_id: str | list[str]) -> None:
        for rid in [request_id] if isinstance(request_id, str) else request_id:
            for req in self.groups.pop(rid, []):
                if not req.finished:
                    req.finish_reason = "abort"
                    req.finish_time = time.monotonic()
                    self.scheduler.finish(req)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished()

    # ----- one step -----

    def step(self) -> list[RequestOutput]:
        scheduled = self.scheduler.schedule()
        if not scheduled:
            return self._outputs(self._drop_unschedulable())
        seqs = [SequenceInput(req.token_ids[req.num_computed_tokens:req.num_computed_tokens + n],
                              req.num_computed_tokens, req.block_ids) for req, n in scheduled]
        logits = self.executor.execute_model(seqs)
        ready_rows, ready = [], []
        for row, (req, n) in enumerate(scheduled):
            req.num_computed_tokens += n
            self.block_manager.commit(req)
            if req.num_computed_tokens == req.num_tokens:
                ready_rows.append(row)
                ready.append(req)
        touched = {req.request_id for req, _ in scheduled}
        if ready:
            ready_logits = logits[ready_rows]
            if any(req.grammar is not None for req in ready):
                ready, ready_logits = self._apply_grammars(ready, ready_logits)
        if ready:
            sampled = self.sampler(ready_logits, [req.sampling for req in ready])
            now = time.monotonic()
            for req, token in zip(ready, sampled):
                self._append_token(req, token, now)
        return self._outputs(touched)

    def _apply_grammars(self, ready: list[Request], logits):
        """Mask the logits of requests with a grammar (one bitmask for the batch). A request
        whose grammar allows nothing but the end of its output finishes here ("stop")."""
        logits = logits.float()
        ended = self.structured_outputs.apply_bitmask(logits, [req.grammar for req in ready])
        if not ended:
            return ready, logits
        now = time.monotonic()
        for i in ended:
            req = ready[i]
            req.finish_reason = "stop"
            if not req.detokenizer.finished:
                req.detokenizer.flush()
            req.finish_time = now
            self.scheduler.finish(req)
        keep = [i for i in range(len(ready)) if i not in set(ended)]
        return [ready[i] for i in keep], logits[keep]

    def _append_token(self, req: Request, token, now: float) -> None:
        t = token.token_id
        req.token_ids.append(t)
        req.sampling.output_token_ids.append(t)
        if req.first_token_time is None:
            req.first_token_time = now
        if req.logprobs is not None:
            req.logprobs.append({"token_id": t, "logprob": token.logprob,
                                 "top": token.top_logprobs or []})
            req.cumulative_logprob += token.logprob
        params = req.params
        if req.grammar is not None and t not in self.eos_token_ids and \
                not req.grammar.accept_token(t):  # cannot happen unless logits were all -inf
            logger.error("request %s: sampled token %d is outside its grammar; stopping it",
                         req.request_id, t)
            req.finish_reason = "stop"
        elif t in self.eos_token_ids and not params.ignore_eos:
            req.finish_reason = "stop"
        elif t in params.stop_token_ids:
            req.finish_reason, req.stop_reason = "stop", t
        else:
            req.detokenizer.add([t])
            if req.detokenizer.finished:
                req.finish_reason, req.stop_reason = "stop", req.detokenizer.stop_reason
            elif params.max_tokens is not None and req.num_output_tokens >= params.max_tokens:
                req.finish_reason = "length"
            elif req.num_tokens >= self.max_model_len:
                req.finish_reason = "length"
        if req.finish_reason is not None:
            if not req.detokenizer.finished:
                req.detokenizer.flush()
            req.finish_time = now
            self.scheduler.finish(req)

    def _drop_unschedulable(self) -> set[str]:
        """Nothing running and the next request cannot get blocks even alone: it has outgrown
        the KV cache, so it ends with "length" instead of waiting forever."""
        if self.scheduler.running or not self.scheduler.waiting:
            return set()
        req = self.scheduler.waiting[0]
        req.finish_reason = "length"
        req.detokenizer.flush()
        req.finish_time = time.monotonic()
        self.scheduler.finish(req)
        return {req.request_id}

    def _outputs(self, request_ids) -> list[RequestOutput]:
        outputs = []
        for rid in request_ids:
            children = self.groups.get(rid)
            if not children:
                continue
            finished = all(c.finished for c in children)
            first = children[0]
            outputs.append(RequestOutput(
                rid, first.prompt, first.prompt_token_ids,
                [c.completion_output() for c in children], finished, first.num_cached_tokens,
                {"arrival_time": first.arrival_time, "first_token_time": first.first_token_time,
                 "finish_time": max((c.finish_time or 0) for c in children) or None}))
            if finished:
                del self.groups[rid]
        return outputs

    def check_health(self) -> None:
        """Raise the executor's WorkerDiedError if a worker has died (even while idle)."""
        self.executor.check_health()

    def shutdown(self) -> None:
        """Stop the workers (processes, Ray actors; Ray itself if the engine started it).
        Idempotent; also runs at interpreter exit for an executor never shut down."""
        self.executor.shutdown()
