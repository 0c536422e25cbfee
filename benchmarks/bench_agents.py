"""Batched agents: many conversations' tool loops through one continuous batch (`LLM.run_tools`)
against the same conversations run one by one, in one run, on the same model.

Every conversation is forced to call a tool each turn (tool_choice "required") for `--rounds`
rounds; the tool is I/O-bound (it sleeps, awaited: `--tool-sleep` seconds on average, 0.4x to
1.6x depending on the city, as real tools differ, so the agents fall out of step). Prints
agent-rounds per second both ways and their ratio, and how many engine steps ran while some
tool was sleeping — the engine decoding other agents instead of idling on a tool.

    python benchmarks/bench_agents.py [--agents 16] [--rounds 3] [--tool-sleep 0.2] [--quick]
"""

import argparse
import asyncio
import time
from typing import Literal

from callm import LLM, SamplingParams

CITIES = ["Paris", "Tokyo", "Nairobi", "Lima", "Oslo", "Hanoi", "Quebec", "Cairo"]


class SleepyTools:
    """The agents' tool, and a count of engine steps taken while one of its calls sleeps."""

    def __init__(self, llm: LLM, sleep: float):
        self.sleep, self.sleeping, self.steps, self.steps_while_sleeping = sleep, 0, 0, 0
        step = llm.engine.step

        def counting_step():
            self.steps += 1
            self.steps_while_sleeping += self.sleeping > 0
            return step()

        llm.engine.step = counting_step

        async def get_weather(city: Literal[tuple(CITIES)]) -> str:  # noqa: F821
            """Current weather in a city."""
            self.sleeping += 1
            try:  # 0.4x, 0.8x, 1.2x or 1.6x --tool-sleep: 1x on average
                await asyncio.sleep(self.sleep * (1 + CITIES.index(city) % 4) / 2.5)
            finally:
                self.sleeping -= 1
            return f"18 degrees and cloudy in {city}"

        self.tool = get_weather

    def reset(self) -> None:
        self.steps = self.steps_while_sleeping = 0


def conversations(count: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"What is the weather in {CITIES[i % len(CITIES)]} "
                                         "today, and tomorrow, and the day after?"}]
            for i in range(count)]


def run(llm: LLM, tools: SleepyTools, convs, rounds: int, params, batched: bool):
    tools.reset()
    start = time.perf_counter()
    groups = [convs] if batched else [[c] for c in convs]
    results = []
    for group in groups:
        results += llm.run_tools(group, tools=[tools.tool], sampling_params=params,
                                 tool_choice="required", max_tool_rounds=rounds,
                                 parallel_tool_calls=False)
    seconds = time.perf_counter() - start
    done = sum(r.rounds for r in results)
    tokens = sum(len(m.get("content") or "") for r in results for m in r.messages)
    return seconds, done, tools.steps, tools.steps_while_sleeping, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of tools per agent")
    parser.add_argument("--tool-sleep", type=float, default=0.2, help="seconds per tool call")
    parser.add_argument("--max-tokens", type=int, default=48, help="per turn")
    parser.add_argument("--quantization", default="auto", help="none, int8, int4 or auto")
    parser.add_argument("--quick", action="store_true", help="8 agents, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.rounds = 8, 2

    llm = LLM(args.model, quantization=args.quantization, max_model_len=2048)
    tools = SleepyTools(llm, args.tool_sleep)
    params = SamplingParams(temperature=0, max_tokens=args.max_tokens)
    convs = conversations(args.agents)
    llm.run_tools(convs[:1], tools=[tools.tool], sampling_params=params, tool_choice="required",
                  max_tool_rounds=1)  # warm-up: compile the grammar, touch the weights

    print(f"{args.agents} agents x {args.rounds} rounds of a tool sleeping {args.tool_sleep} s, "
          f"{args.max_tokens} tokens per turn at most, model {args.model}, quantization "
          f"{llm.engine.config.quantization}")
    figures = {}
    for name, batched in (("one by one", False), ("batched", True)):
        seconds, done, steps, while_sleeping, _ = run(llm, tools, convs, args.rounds, params,
                                                      batched)
        figures[name] = done / seconds
        print(f"{name:>11}: {done} agent-rounds in {seconds:6.2f} s = {done / seconds:6.2f} "
              f"agent-rounds/s; {steps} engine steps, {while_sleeping} of them while a tool "
              "was sleeping")
    print(f"batched / one by one: {figures['batched'] / figures['one by one']:.2f}x")
    llm.shutdown()


if __name__ == "__main__":
    main()
