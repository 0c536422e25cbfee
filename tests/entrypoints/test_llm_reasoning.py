"""Offline `LLM(..., reasoning_parser=...)` and `LLM.chat(..., thinking_token_budget=...)` on the
tiny random Llama under the Qwen3-style thinking template (`tests/thinking_template.py`): each
output's `reasoning` holds the thought, `content` the answer, `tool_calls` the parsed calls.
The random model never closes a thought by itself; the budget does."""

import json

import jsonschema
import pytest

from callm import LLM, SamplingParams
from thinking_template import THINKING_TEMPLATE, WEATHER

ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
GREEDY = SamplingParams(temperature=0, max_tokens=120)


@pytest.fixture(scope="module")
def llm(tiny_llama_dir):
    with LLM(str(tiny_llama_dir), reasoning_parser="qwen3", chat_template=THINKING_TEMPLATE,
             dtype="float32", kv_cache_memory=32 * 2**20, max_model_len=512) as llm:
        yield llm


def test_budget_then_required_tool_call(llm):
    [out] = llm.chat(ASK, GREEDY, tools=[WEATHER], tool_choice="required",
                     parallel_tool_calls=False, thinking_token_budget=6)
    [completion] = out.outputs
    assert completion.reasoning and "</think>" not in completion.reasoning
    assert completion.content is None
    [call] = completion.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    # the raw text keeps the markup: the thought, the forced end, the call
    assert completion.text.lstrip().startswith(completion.reasoning)
    assert "</think>" in completion.text and "<tool_call>" in completion.text
    assert llm.tokenizer.decode(out.prompt_token_ids).endswith("<|im_start|>assistant\n<think>\n")


def test_without_tools_reasoning_and_content_split(llm):
    params = SamplingParams(temperature=0, max_tokens=16)
    [budgeted] = llm.chat(ASK, params, thinking_token_budget=4)
    c = budgeted.outputs[0]
    assert c.reasoning and c.content and c.tool_calls is None
    assert "</think>" not in c.reasoning + c.content
    assert c.text.index(c.reasoning) < c.text.index("</think>") < c.text.index(c.content)
    assert len(c.token_ids) == 16

    # no budget: the random model never ends its thought, so it is all reasoning
    [unbounded] = llm.chat(ASK, params)
    c = unbounded.outputs[0]
    assert c.reasoning == c.text.strip() and c.content is None and c.tool_calls is None
    # thinking switched off in the template: all content, nothing split off
    [off] = llm.chat(ASK, params, chat_template_kwargs={"enable_thinking": False},
                     thinking_token_budget=2)
    c = off.outputs[0]
    assert c.reasoning is None and c.content == c.text and "</think>" not in c.text
    assert llm.tokenizer.decode(off.prompt_token_ids).endswith("<think>\n\n</think>\n\n")


def test_budget_needs_a_reasoning_parser(tiny_llama_dir):
    plain = LLM(str(tiny_llama_dir), dtype="float32", kv_cache_memory=8 * 2**20,
                max_model_len=256)
    with plain:
        with pytest.raises(ValueError, match="thinking_token_budget"):
            plain.chat(ASK, SamplingParams(max_tokens=2), thinking_token_budget=4)


def test_unknown_reasoning_parser_fails_at_construction(tiny_llama_dir):
    with pytest.raises(KeyError, match="qwen3"):
        LLM(str(tiny_llama_dir), reasoning_parser="nope", dtype="float32",
            kv_cache_memory=8 * 2**20, max_model_len=256)


def test_budget_needs_a_declared_format(llm):
    """A hand-written reasoning parser (no ReasoningFormat) cannot have its thought ended by a
    budget: the request is refused rather than left unbounded."""
    from callm.entrypoints.chat import ChatPipeline, ChatRequestError
    from callm.entrypoints.openai.protocol import ChatCompletionRequest
    from callm.reasoning import ReasoningParser

    class Formless(ReasoningParser):
        def extract_reasoning(self, model_output, request):
            return None, model_output

    pipeline = ChatPipeline(llm.tokenizer, THINKING_TEMPLATE, reasoning_parser_cls=Formless)
    pipeline.prepare(ChatCompletionRequest(messages=ASK))  # fine without a budget
    with pytest.raises(ChatRequestError, match="ReasoningFormat; Formless") as e:
        pipeline.prepare(ChatCompletionRequest(messages=ASK, thinking_token_budget=3))
    assert e.value.param == "thinking_token_budget"
