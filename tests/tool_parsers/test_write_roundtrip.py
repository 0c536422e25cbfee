"""Every built-in format reads back what its own description writes (`formats.write_calls`):
random calls with nested, unicode and typed arguments, at several chunkings, whole and
streamed alike. Markup formats get a schema that types each argument, as a request would."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streaming_parity import assert_streaming_parity

from callm.entrypoints.openai.protocol import ChatCompletionRequest
from callm.tool_parsers import ToolParserManager
from callm.tool_parsers.formats import HarmonyMessage, write_calls

BUILTIN_CLASSES = {}
for _name in ToolParserManager.list_registered():
    BUILTIN_CLASSES.setdefault(ToolParserManager.get_tool_parser(_name), _name)

# Text that markup formats can carry verbatim: no tag openers, no quote-mark collisions.
text = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="<\\"),
               max_size=12)
keys = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
scalars = st.one_of(text, st.integers(-10**6, 10**6), st.booleans(), st.none(),
                    st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3)))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=6)
arguments = st.dictionaries(keys, values, max_size=4)
calls = st.lists(st.tuples(st.sampled_from(["get_weather", "search_docs", "do_it"]), arguments),
                 min_size=1, max_size=3)

JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number",
              type(None): "null", list: "array", dict: "object"}


def schema_of(values: list) -> dict:
    """A schema typing all `values` (of one JSON type), nested values included."""
    kind = JSON_TYPES[type(values[0])]
    if kind == "object":
        keys = {k for v in values for k in v}
        return {"type": "object", "properties": {
            k: schema_of([v[k] for v in values if k in v]) for k in keys}}
    if kind == "array":
        items = [e for v in values for e in v]
        return {"type": "array", **({"items": schema_of(items)} if items else {})}
    return {"type": kind}


def homogeneous(values: list) -> bool:
    """Every value at one place in the nesting has one JSON type, so one schema types them."""
    if len({JSON_TYPES[type(v)] for v in values}) > 1:
        return False
    if values and isinstance(values[0], dict):
        return all(homogeneous([v[k] for v in values if k in v]) for v in values for k in v)
    if values and isinstance(values[0], list):
        return homogeneous([e for v in values for e in v])
    return True


def request_for(generated) -> ChatCompletionRequest:
    """Tools whose schemas type every generated argument, nested values included."""
    by_name: dict[str, list] = {}
    for name, args in generated:
        by_name.setdefault(name, []).append(args)
    return ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], tools=[
        {"type": "function", "function": {"name": name, "parameters": schema_of(calls)}}
        for name, calls in by_name.items()])


def consistent(generated):
    """Calls of one tool whose arguments one schema can type."""
    by_name: dict[str, list] = {}
    for name, args in generated:
        by_name.setdefault(name, []).append(args)
    return all(homogeneous(calls) for calls in by_name.values())


@pytest.mark.parametrize("parser_cls", list(BUILTIN_CLASSES), ids=list(BUILTIN_CLASSES.values()))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.filter_too_much])
@given(generated=calls.filter(consistent))
def test_reads_back_what_its_format_writes(parser_cls, generated):
    fmt = parser_cls.formats[0]
    output = write_calls(fmt, generated)
    # Text before the markup (Harmony has none: its messages are the whole output).
    prefixed = bool(fmt.marker) and not isinstance(fmt.encoding, HarmonyMessage)
    if prefixed:
        output = "Let me check. " + output
    request = request_for(generated)
    result = assert_streaming_parity(parser_cls, output, request, all_splits=False)
    assert [(n, json.loads(a)) for n, a in result.calls] == [(n, a) for n, a in generated]
    assert result.content == ("Let me check." if prefixed else None)
