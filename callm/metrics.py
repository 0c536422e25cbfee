"""Prometheus metrics under the `callm:` prefix, named after vLLM's.

Each server owns its own registry (tests run several servers in one process). Engine state —
queue lengths, KV-cache use, prefix-cache hits — is read when Prometheus scrapes; request
latencies and token counts are recorded by the HTTP handlers as requests finish.
"""

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5)


class _EngineCollector:
    def __init__(self, engine, model_name: str):
        self.engine, self.labels = engine, {"model_name": model_name}

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        g = GaugeMetricFamily(name, doc, labels=list(self.labels))
        g.add_metric(list(self.labels.values()), value)
        return g

    def collect(self):
        scheduler = self.engine.scheduler
        blocks = self.engine.block_manager
        yield self._gauge("callm:num_requests_running", "Sequences in the running batch.",
                          len(scheduler.running))
        yield self._gauge("callm:num_requests_waiting", "Sequences waiting to be scheduled.",
                          len(scheduler.waiting))
        yield self._gauge("callm:kv_cache_usage_perc", "Fraction of KV-cache blocks in use.",
                          blocks.usage)
        yield self._gauge("callm:prefix_cache_hit_rate",
                          "Prompt tokens found in the prefix cache / prompt tokens looked up.",
                          blocks.prefix_hit_rate)
        for name, doc, value in (
                ("callm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.",
                 blocks.prefix_queries),
                ("callm:prefix_cache_hits", "Prompt tokens found in the prefix cache.",
                 blocks.prefix_hits),
                ("callm:num_preemptions", "Requests preempted for lack of KV blocks.",
                 scheduler.num_preemptions)):
            c = CounterMetricFamily(name, doc, labels=list(self.labels))
            c.add_metric(list(self.labels.values()), value)
            yield c


class Metrics:
    def __init__(self, engine=None, model_name: str = ""):
        self.registry = CollectorRegistry()
        self.model_name = model_name
        labels = ["model_name"]
        r = self.registry
        self.prompt_tokens = Counter("callm:prompt_tokens", "Prompt tokens processed.", labels,
                                     registry=r)
        self.generation_tokens = Counter("callm:generation_tokens", "Tokens generated.", labels,
                                         registry=r)
        self.requests_finished = Counter("callm:request_success", "Finished requests.",
                                         labels + ["finished_reason"], registry=r)
        self.ttft = Histogram("callm:time_to_first_token_seconds", "Time to first token.",
                              labels, buckets=LATENCY_BUCKETS, registry=r)
        self.inter_token = Histogram("callm:inter_token_latency_seconds",
                                     "Time between output tokens.", labels,
                                     buckets=TOKEN_BUCKETS, registry=r)
        self.e2e = Histogram("callm:e2e_request_latency_seconds", "Request latency.", labels,
                             buckets=LATENCY_BUCKETS, registry=r)
        self.tool_calls = Counter("callm:tool_calls_parsed", "Tool calls parsed from outputs.",
                                  labels + ["parser"], registry=r)
        self.tool_parse_failures = Counter(
            "callm:tool_parse_failures", "Outputs whose tool-call markup did not parse cleanly.",
            labels + ["parser"], registry=r)
        # tools the server runs itself (`{"type": "mcp"}` tools, callm.agents.server_loop)
        tool = labels + ["server", "tool"]
        self.tool_rounds = Counter("callm:tool_rounds", "Rounds of tool calls the server ran.",
                                   labels, registry=r)
        self.tool_calls_executed = Counter("callm:tool_calls_executed",
                                           "Tool calls the server ran.", tool, registry=r)
        self.tool_call_failures = Counter(
            "callm:tool_call_failures",
            "Tool calls the server ran that ended in an error (raised, timed out, server died).",
            tool, registry=r)
        self.tool_call_latency = Histogram("callm:tool_call_latency_seconds",
                                           "Time one tool call took.", tool,
                                           buckets=LATENCY_BUCKETS, registry=r)
        if engine is not None:
            r.register(_EngineCollector(engine, model_name))

    def request_finished(self, prompt_tokens: int, completion_tokens: int, ttft: float,
                         e2e: float, inter_token: list[float], finish_reasons: list[str]) -> None:
        m = self.model_name
        self.prompt_tokens.labels(m).inc(prompt_tokens)
        self.generation_tokens.labels(m).inc(completion_tokens)
        self.ttft.labels(m).observe(ttft)
        self.e2e.labels(m).observe(e2e)
        for seconds in inter_token:
            self.inter_token.labels(m).observe(seconds)
        for reason in finish_reasons:
            self.requests_finished.labels(m, reason).inc()

    def tool_parse(self, parser: str, calls: int, failed: bool) -> None:
        self.tool_calls.labels(self.model_name, parser).inc(calls)
        if failed:
            self.tool_parse_failures.labels(self.model_name, parser).inc()

    def tool_call(self, server: str, tool: str, seconds: float, is_error: bool) -> None:
        """A tool call the server ran (a round is counted by `tool_rounds`)."""
        m = self.model_name
        self.tool_calls_executed.labels(m, server, tool).inc()
        self.tool_call_latency.labels(m, server, tool).observe(seconds)
        if is_error:
            self.tool_call_failures.labels(m, server, tool).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
