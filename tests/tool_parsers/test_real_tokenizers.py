"""Parsers fed token by token through real tokenizers, markers as single special tokens (Qwen2.5,
Llama 3.2, Mistral v3/v7/tekken) or split into several ordinary tokens (SmolLM2, Mistral v1)."""

import pytest
from parser_fixtures import FIXTURES, request_with_tools
from real_tokenizers import (llama32_tokenizer, mistral_tokenizer, qwen25_tokenizer,
                             smollm2_tokenizer, stream_token_deltas)
from streaming_parity import parse_whole, reassemble

from callm.tool_parsers import ToolParserManager

PAIRS = [
    ("hermes", qwen25_tokenizer, "<tool_call>", True),
    ("hermes", smollm2_tokenizer, "<tool_call>", False),
    ("llama3_json", llama32_tokenizer, "<|python_tag|>", True),
    ("pythonic", llama32_tokenizer, None, None),
    ("llama4_pythonic", llama32_tokenizer, "<|python_start|>", False),
    ("mistral", lambda: mistral_tokenizer("v3"), "[TOOL_CALLS]", True),
    ("mistral", lambda: mistral_tokenizer("v7"), "[TOOL_CALLS]", True),
    ("mistral", lambda: mistral_tokenizer("tekken"), "[TOOL_CALLS]", True),
    ("mistral", lambda: mistral_tokenizer("v1"), "[TOOL_CALLS]", False),
]


@pytest.mark.parametrize("parser_name,load,marker,single_token", PAIRS,
                         ids=[f"{p[0]}-{i}" for i, p in enumerate(PAIRS)])
def test_token_by_token_equals_whole(parser_name, load, marker, single_token):
    tokenizer = load()
    if marker is not None:
        assert (tokenizer.token_id(marker) is not None) == single_token
    parser_cls = ToolParserManager.get_tool_parser(parser_name)
    request = request_with_tools()
    for case_id, output, expected_calls, expected_content in FIXTURES[parser_name]:
        deltas = stream_token_deltas(tokenizer, output)
        assert "".join(text for text, _ in deltas) == output
        parser = parser_cls(tokenizer.raw)
        messages, previous, previous_ids = [], "", []
        for text, ids in deltas:
            current, current_ids = previous + text, previous_ids + ids
            messages.append(parser.extract_tool_calls_streaming(
                previous, current, text, previous_ids, current_ids, ids, request))
            previous, previous_ids = current, current_ids
        messages.append(parser.finish_streaming(request))
        whole = parse_whole(parser_cls, output, request)
        assert reassemble(messages).normalized() == whole.normalized(), case_id
        assert [name for name, _ in whole.calls] == [name for name, _ in expected_calls], case_id
        assert whole.content == expected_content, case_id
