"""LLM.run_tools on the tiny random model: grammar-forced calls (required / named) make it call."""

import asyncio
import json
import threading
import time
from typing import Annotated, Literal

import pydantic
import pytest

from callm import LLM, SamplingParams

PARAMS = SamplingParams(temperature=0, max_tokens=64)


@pytest.fixture(scope="module")
def llm(tiny_llama_dir):
    llm = LLM(str(tiny_llama_dir), dtype="float32", max_model_len=1024,
              kv_cache_memory=32 * 2**20)
    yield llm
    llm.shutdown()


def pick(color: Literal["red", "green"]) -> str:
    """Pick a color."""
    return f"picked {color}"


def shade(dark: bool) -> str:
    """Choose a shade."""
    return f"dark={dark}"


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def check_transcript(result) -> int:
    """Every call of every round that ran has a tool message with its id, in order; returns
    how many calls ran."""
    messages, ran = result.messages, 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or not m.get("tool_calls"):
            continue
        calls = m["tool_calls"]
        answers = messages[i + 1:i + 1 + len(calls)]
        if i == len(messages) - 1:  # the last turn: calls left when the rounds ran out
            assert result.finish_reason == "max_tool_rounds"
            continue
        assert [a["role"] for a in answers] == ["tool"] * len(calls)
        assert [a["tool_call_id"] for a in answers] == [c["id"] for c in calls]
        assert [a["name"] for a in answers] == [c["function"]["name"] for c in calls]
        ran += len(calls)
    return ran


def test_every_call_of_a_round_runs_and_rounds_are_capped(llm):
    """EOS is banned until a turn holds two calls, so each round has (at least) two; every one
    runs, and `required` keeps calling until max_tool_rounds ends the loop."""
    eos = list(llm.engine.eos_token_ids)

    def two_calls(ids, logits):
        if llm.tokenizer.decode(ids).count("</tool_call>") < 2:
            logits[eos] = float("-inf")
        return logits

    runs = []

    def count(fn):
        def wrapped(**kw):
            runs.append(fn.__name__)
            return fn(**kw)
        wrapped.__signature__ = __import__("inspect").signature(fn)
        wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
        wrapped.__annotations__ = fn.__annotations__
        return wrapped

    params = SamplingParams(temperature=0, max_tokens=96, logits_processors=[two_calls])
    results = llm.run_tools([ask("paint it"), ask("colors?")], tools=[count(pick), count(shade)],
                            sampling_params=params, tool_choice="required", max_tool_rounds=2)
    for result in results:
        assert result.finish_reason == "max_tool_rounds" and result.rounds == 2
        turns = [m for m in result.messages if m["role"] == "assistant"]
        assert len(turns) == 3 and all(len(t["tool_calls"]) >= 2 for t in turns)
        ran = check_transcript(result)
        assert ran >= 4
        for call, answer in zip(result.tool_calls, result.tool_results):
            args = json.loads(call["function"]["arguments"])
            expected = pick(**args) if call["function"]["name"] == "pick" else shade(**args)
            assert answer.content == expected and not answer.is_error
    assert len(runs) == sum(len(r.tool_results) for r in results)


def reject(value: str) -> str:  # a rule the JSON Schema (and so the grammar) cannot express
    raise ValueError("cities must be spelled in capitals")


def city(name: Annotated[Literal["paris", "rome"], pydantic.AfterValidator(reject)]) -> str:
    """Look a city up."""
    return "never"


def boom(color: Literal["red"]) -> str:
    """Explodes."""
    raise RuntimeError("the tool broke")


MYSTERY = {"type": "function", "function": {"name": "mystery", "parameters": {
    "type": "object", "properties": {}}}}


def named(name: str) -> dict:
    return {"type": "function", "function": {"name": name}}


def test_errors_become_tool_messages_and_the_batch_completes(llm):
    results = llm.run_tools(
        [ask("a"), ask("b"), ask("c"), ask("d")], tools=[boom, city, pick, MYSTERY],
        sampling_params=PARAMS, max_tool_rounds=1,
        tool_choice=[named("boom"), named("city"), named("mystery"), named("pick")])
    boom_r, city_r, mystery_r, pick_r = results
    assert all(r.rounds == 1 and check_transcript(r) for r in results)
    assert boom_r.tool_results[0].is_error
    assert "RuntimeError: the tool broke" in boom_r.messages[2]["content"]
    assert city_r.tool_results[0].is_error
    assert "invalid arguments for city" in city_r.messages[2]["content"]
    assert "spelled in capitals" in city_r.messages[2]["content"]
    assert mystery_r.tool_results[0].is_error and "mystery" in mystery_r.messages[2]["content"]
    assert not pick_r.tool_results[0].is_error
    assert pick_r.messages[2]["content"].startswith("picked ")


def test_bad_arguments_unknown_tools_and_callbacks_without_a_model():
    from callm.agents.tools import ToolBox

    seen = []

    def callback(name, arguments):
        seen.append((name, arguments))
        return {"ok": True}

    box = ToolBox([pick, MYSTERY], callback)
    run = lambda *a: asyncio.run(box.run("id1", *a))  # noqa: E731
    assert run("pick", '{"color": "blue"}').is_error  # not in the Literal
    assert "color" in run("pick", '{"color": "blue"}').content
    assert "not valid JSON" in run("pick", '{"color": ').content
    assert run("pick", '{"color": "red", "extra": 1}').is_error  # unknown argument
    assert run("pick", '["red"]').is_error
    assert run("mystery", '{"x": 1}').content == '{"ok": true}'
    assert seen == [("mystery", {"x": 1})]
    no_callback = ToolBox([pick, MYSTERY])
    assert "no tool_callback" in asyncio.run(no_callback.run("id3", "mystery", "{}")).content
    result = asyncio.run(no_callback.run("id2", "nope", "{}"))
    assert result.is_error and "no tool named 'nope'" in result.content
    assert result.message() == {"role": "tool", "tool_call_id": "id2", "name": "nope",
                                "content": result.content}


def test_own_tools_hide_mcp_tools_of_the_same_name():
    from callm.agents.tools import ToolBox

    async def remote(arguments):
        return "remote", False

    extra = {"pick": ({"type": "function", "function": {"name": "pick"}}, remote),
             "other": ({"type": "function", "function": {"name": "other"}}, remote)}
    box = ToolBox([pick], extra=extra)
    assert [t["function"]["name"] for t in box.tools] == ["pick", "other"]
    assert asyncio.run(box.run("a", "pick", '{"color": "red"}')).content == "picked red"
    assert asyncio.run(box.run("b", "other", "{}")).content == "remote"
    with pytest.raises(ValueError, match="named pick"):
        ToolBox([pick, {"type": "function", "function": {"name": "pick"}}])


def test_tool_callback_and_async_tools(llm):
    seen = []

    def callback(name, arguments):
        seen.append((name, arguments, threading.current_thread().name))
        return f"callback ran {name}"

    async def wait_a_bit(color: Literal["red", "green"]) -> str:
        """Waits, then answers."""
        await asyncio.sleep(0.01)
        return f"awaited {color}"

    results = llm.run_tools([ask("x"), ask("y")], tools=[MYSTERY, wait_a_bit],
                            tool_callback=callback, sampling_params=PARAMS, max_tool_rounds=1,
                            tool_choice=[named("mystery"), named("wait_a_bit")])
    assert results[0].messages[2]["content"] == "callback ran mystery"
    assert seen[0][:2] == ("mystery", {})
    assert results[1].messages[2]["content"].startswith("awaited ")


def test_other_conversations_decode_while_a_tool_runs(llm, monkeypatch):
    """A slow sync tool in conversation 0 waits until the engine has decoded conversation 1
    for several steps: only possible if the engine keeps stepping while the tool runs."""
    steps: list[set[int]] = []  # per engine step: the conversations that moved
    engine_step = llm.engine.step

    def counting_step():
        outputs = engine_step()
        steps.append({int(o.request_id.split("-")[2]) for o in outputs})
        return outputs

    monkeypatch.setattr(llm.engine, "step", counting_step)
    observed = {}

    def slow(color: Literal["red"]) -> str:
        """Takes a while."""
        start = len(steps)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(1 in s for s in steps[start:]) >= 5:
                observed["other_steps"] = sum(1 in s for s in steps[start:])
                break
            time.sleep(0.002)
        return "done"

    long_answer = SamplingParams(temperature=0, max_tokens=80, min_tokens=80)
    results = llm.run_tools([ask("slow one"), ask("keep talking")], tools=[slow],
                            sampling_params=[PARAMS, long_answer], max_tool_rounds=1,
                            tool_choice=[named("slow"), "none"])
    assert observed.get("other_steps", 0) >= 5, "the engine idled while the tool ran"
    assert results[0].rounds == 1 and results[0].messages[2]["content"] == "done"
    assert results[1].rounds == 0 and len(results[1].output.outputs[0].token_ids) == 80


def test_reset_tool_choice_lets_the_model_answer(llm):
    [result] = llm.run_tools(ask("pick"), tools=[pick], sampling_params=PARAMS,
                             tool_choice="required", reset_tool_choice=True, max_tool_rounds=3)
    assert result.rounds >= 1 and check_transcript(result)
    assert result.messages[1]["tool_calls"]


def test_each_conversation_has_its_own_tools(llm):
    def other(size: Literal["s", "m"]) -> str:
        """Choose a size."""
        return f"size {size}"

    results = llm.run_tools([ask("a"), ask("b")], tools=[[pick], [other, shade]],
                            sampling_params=PARAMS, max_tool_rounds=1,
                            tool_choice=[named("pick"), named("other")])
    first, second = results
    assert first.messages[2]["content"].startswith("picked ")
    assert second.messages[2]["content"].startswith("size ")
    prompts = [llm.tokenizer.decode(r.output.prompt_token_ids) for r in results]
    assert "pick" in prompts[0] and "shade" not in prompts[0] and "other" not in prompts[0]
    assert "shade" in prompts[1] and "other" in prompts[1] and "Pick a color" not in prompts[1]
    with pytest.raises(ValueError, match="1 tool lists"):
        llm.run_tools([ask("a"), ask("b")], tools=[[pick]], sampling_params=PARAMS)


def test_tool_limits_time_out_and_cut_results(llm, monkeypatch):
    from callm.agents import ToolLimits

    async def stall(color: Literal["red"]) -> str:
        """Never answers in time."""
        await asyncio.sleep(30)
        return "late"

    def flood(color: Literal["red"]) -> str:
        """Answers at length."""
        return "y" * 1000

    monkeypatch.setattr(llm, "tool_limits", ToolLimits(timeout=0.3, max_result_chars=50))
    start = time.monotonic()
    stalled, flooded = llm.run_tools([ask("a"), ask("b")], tools=[stall, flood],
                                     sampling_params=PARAMS, max_tool_rounds=1,
                                     tool_choice=[named("stall"), named("flood")])
    assert time.monotonic() - start < 20
    [result] = stalled.tool_results
    assert result.is_error and result.content == "Error: stall timed out after 0.3 s"
    assert 300 <= result.latency_ms < 5000
    [result] = flooded.tool_results
    assert not result.is_error and result.content.startswith("y" * 50)
    assert "y" * 51 not in result.content and "50 of 1000 characters" in result.content
    with pytest.raises(ValueError, match="timeout must be positive"):
        ToolLimits(timeout=0)
