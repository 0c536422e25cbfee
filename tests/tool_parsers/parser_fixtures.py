"""Realistic model outputs for each built-in parser, with the calls and content they must give.

Each case: (id, model output, expected [(name, arguments)], expected content). Arguments are
compared as JSON; a string stands for arguments that are not valid JSON (a truncated call). An
expected call may carry a third item, the call id the model wrote (Kimi, Cohere), kept as the
OpenAI call id. `FIXTURES` has one list per parser class; `FIXTURES_BY_NAME` maps every
registered name, aliases included, to its class's list.
"""

import json

from callm.entrypoints.openai.protocol import ChatCompletionRequest

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    {"type": "function", "function": {
        "name": "search_docs", "parameters": {"type": "object", "properties": {
            "query": {"type": "string"}, "filters": {"type": "object"},
            "limit": {"type": "integer"}}}}},
    {"type": "function", "function": {
        "name": "set_options", "parameters": {"type": "object", "properties": {
            "enabled": {"type": "boolean"}, "ratio": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "level": {"type": ["integer", "null"]}, "note": {"type": "string"}}}}},
]


def request_with_tools(tools=TOOLS) -> ChatCompletionRequest:
    return ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], tools=tools)


NESTED = {"query": "tool calling", "filters": {"lang": ["en", "fr"], "year": {"gte": 2023},
                                               "draft": False, "owner": None}, "limit": 5}
UNICODE = {"city": "São Paulo 🌧️ 東京", "unit": "c"}
ESCAPED = {"query": 'say "hi" \\ then\nnewline\t{not a brace}', "limit": 1}

HERMES = [
    ("single", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     [("get_weather", {"city": "Paris"})], None),
    ("parallel", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}'
     '\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
     [("get_weather", {"city": "Paris", "unit": "c"}), ("get_time", {})], None),
    ("nested", '<tool_call>\n{"name": "search_docs", "arguments": '
     '{"query": "tool calling", "filters": {"lang": ["en", "fr"], "year": {"gte": 2023}, '
     '"draft": false, "owner": null}, "limit": 5}}\n</tool_call>',
     [("search_docs", NESTED)], None),
    ("unicode", '<tool_call>\n{"name": "get_weather", "arguments": '
     '{"city": "São Paulo 🌧️ 東京", "unit": "c"}}\n</tool_call>', [("get_weather", UNICODE)], None),
    ("escaped", '<tool_call>\n{"name": "search_docs", "arguments": {"query": '
     '"say \\"hi\\" \\\\ then\\nnewline\\t{not a brace}", "limit": 1}}\n</tool_call>',
     [("search_docs", ESCAPED)], None),
    ("content_around", "Let me look that up.\n<tool_call>\n"
     '{"name": "get_time", "arguments": {"timezone": "UTC"}}\n</tool_call>\nOne moment.',
     [("get_time", {"timezone": "UTC"})], "Let me look that up.\n\nOne moment."),
    ("no_arguments_key", '<tool_call>\n{"name": "get_time"}\n</tool_call>', [("get_time", {})],
     None),
    ("arguments_as_string", '<tool_call>\n{"name": "get_weather", "arguments": '
     '"{\\"city\\": \\"Rome\\"}"}\n</tool_call>', [("get_weather", {"city": "Rome"})], None),
    ("keys_reversed", '<tool_call>{"arguments": {"city": "Oslo"}, "name": "get_weather"}'
     "</tool_call>", [("get_weather", {"city": "Oslo"})], None),
    ("extra_closing_brace", '<tool_call>\n{"name": "get_time", "arguments": {}}}\n</tool_call>',
     [("get_time", {})], None),
    ("bare_json_drift", '{"name": "get_weather", "arguments": {"city": "Tokyo"}}',
     [("get_weather", {"city": "Tokyo"})], None),
    ("fenced_json_drift", 'Sure!\n```json\n{"name": "get_weather", "arguments": '
     '{"city": "Lima", "unit": "f"}}\n```', [("get_weather", {"city": "Lima", "unit": "f"})],
     "Sure!"),
    ("plain_answer", "The capital of France is Paris.", [], "The capital of France is Paris."),
    ("json_answer_not_a_tool", '{"name": "Alice", "age": 30}', [], '{"name": "Alice", "age": 30}'),
    ("fenced_other_json", '```json\n{"result": [1, 2]}\n```', [], '```json\n{"result": [1, 2]}\n```'),
    ("marker_lookalike", "Use a <tool> tag or <tool_cal> text; 3 < 4.", [],
     "Use a <tool> tag or <tool_cal> text; 3 < 4."),
    ("malformed_body", "<tool_call>\nnot json at all\n</tool_call>", [],
     "<tool_call>\nnot json at all\n</tool_call>"),
    ("name_not_string", '<tool_call>{"name": 42, "arguments": {}}</tool_call>', [],
     '<tool_call>{"name": 42, "arguments": {}}</tool_call>'),
    ("truncated", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par',
     [("get_weather", '{"city": "Par')], None),
    ("truncated_before_name", '<tool_call>\n{"name": "get_wea', [], '<tool_call>\n{"name": "get_wea'),
]

MISTRAL = [
    ("list_single", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]',
     [("get_weather", {"city": "Paris"})], None),
    ("list_parallel", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, '
     '{"name": "search_docs", "arguments": {"query": "tool calling", "filters": {"lang": '
     '["en", "fr"], "year": {"gte": 2023}, "draft": false, "owner": null}, "limit": 5}}]',
     [("get_weather", {"city": "Paris"}), ("search_docs", NESTED)], None),
    ("list_unicode", '[TOOL_CALLS] [{"name": "get_weather", "arguments": '
     '{"city": "São Paulo 🌧️ 東京", "unit": "c"}}]', [("get_weather", UNICODE)], None),
    ("v11_args", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "c"}',
     [("get_weather", {"city": "Paris", "unit": "c"})], None),
    ("v11_parallel", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}',
     [("get_weather", {"city": "Paris"}), ("get_time", {})], None),
    ("v11_no_args_marker", '[TOOL_CALLS]search_docs{"query": "say \\"hi\\" \\\\ then\\nnewline'
     '\\t{not a brace}", "limit": 1}', [("search_docs", ESCAPED)], None),
    ("v11_call_id", '[TOOL_CALLS]get_time[CALL_ID]a1B2c3D4e[ARGS]{"timezone": "CET"}',
     [("get_time", {"timezone": "CET"})], None),
    ("content_before", 'I will check both.[TOOL_CALLS][{"name": "get_time", "arguments": {}}]',
     [("get_time", {})], "I will check both."),
    ("plain_answer", "Bonjour! [This is] not a call.", [], "Bonjour! [This is] not a call."),
    ("malformed", "[TOOL_CALLS] sorry, no", [], "[TOOL_CALLS] sorry, no"),
    ("truncated_list", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Pa',
     [("get_weather", '{"city": "Pa')], None),
]

LLAMA3_JSON = [
    ("tagged", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',
     [("get_weather", {"city": "Paris"})], None),
    ("untagged", '{"name": "get_weather", "parameters": {"city": "São Paulo 🌧️ 東京", '
     '"unit": "c"}}', [("get_weather", UNICODE)], None),
    ("arguments_key", '{"name": "search_docs", "arguments": {"query": "tool calling", "filters":'
     ' {"lang": ["en", "fr"], "year": {"gte": 2023}, "draft": false, "owner": null}, "limit": 5}}',
     [("search_docs", NESTED)], None),
    ("semicolon_parallel", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Rome"}}; '
     '{"name": "get_time", "parameters": {}}',
     [("get_weather", {"city": "Rome"}), ("get_time", {})], None),
    ("escaped", '{"name": "search_docs", "parameters": {"query": "say \\"hi\\" \\\\ then\\nnewline'
     '\\t{not a brace}", "limit": 1}}', [("search_docs", ESCAPED)], None),
    ("content_then_tag", 'Checking.<|python_tag|>{"name": "get_time", "parameters": {}}',
     [("get_time", {})], "Checking."),
    ("plain_answer", "It is sunny {mostly} today.", [], "It is sunny {mostly} today."),
    ("json_not_a_call", '{"temperature": 21}', [], '{"temperature": 21}'),
    ("truncated", '<|python_tag|>{"name": "get_weather", "parameters": {"ci',
     [("get_weather", "{")], None),  # the key waits for its value
]

PYTHONIC = [
    ("single", "[get_weather(city='Paris')]", [("get_weather", {"city": "Paris"})], None),
    ("parallel", '[get_weather(city="Paris", unit="c"), get_time()]',
     [("get_weather", {"city": "Paris", "unit": "c"}), ("get_time", {})], None),
    ("nested", "[search_docs(query='tool calling', filters={'lang': ['en', 'fr'], 'year': "
     "{'gte': 2023}, 'draft': False, 'owner': None}, limit=5)]", [("search_docs", NESTED)], None),
    ("unicode", "[get_weather(city='São Paulo 🌧️ 東京', unit='c')]", [("get_weather", UNICODE)],
     None),
    ("escaped", "[search_docs(query='say \"hi\" \\\\ then\\nnewline\\t{not a brace}', limit=1)]",
     [("search_docs", ESCAPED)], None),
    ("triple_quoted_and_negative", "[search_docs(query='''it's (x, y)''', limit=-3)]",
     [("search_docs", {"query": "it's (x, y)", "limit": -3})], None),
    ("whitespace", "  [ get_time( ) ,\n  get_weather( city = 'Oslo' ) ]",
     [("get_time", {}), ("get_weather", {"city": "Oslo"})], None),
    ("not_a_literal", "[search_docs(query=os.getcwd(), limit=2)]",
     [("search_docs", {"query": "os.getcwd()", "limit": 2})], None),
    ("plain_answer", "Paris is the capital.", [], "Paris is the capital."),
    ("list_of_numbers", "[1, 2, 3]", [], "[1, 2, 3]"),
    ("call_not_at_start", "Try [get_time()]", [], "Try [get_time()]"),
    ("truncated", "[get_weather(city='Paris', unit='c", [("get_weather", '{"city": "Paris"')], None),
]

LLAMA4_PYTHONIC = [
    ("tagged", "<|python_start|>[get_weather(city='Paris'), get_time()]<|python_end|>",
     [("get_weather", {"city": "Paris"}), ("get_time", {})], None),
    ("untagged", "[get_weather(city='São Paulo 🌧️ 東京', unit='c')]", [("get_weather", UNICODE)],
     None),
    ("content_then_tag", "Let me see.<|python_start|>[get_time()]<|python_end|>",
     [("get_time", {})], "Let me see."),
    ("plain_answer", "No tools needed.", [], "No tools needed."),
]

FIXTURES = {
    "hermes": HERMES,
    "mistral": MISTRAL,
    "llama3_json": LLAMA3_JSON,
    "pythonic": PYTHONIC,
    "llama4_pythonic": LLAMA4_PYTHONIC,
}


# ---------------------------------------------------------------------------------------------
# Every other family. Each family writes the same calls in its own markup through a small
# renderer below (the layout its model writes, spelled out by hand here rather than derived from
# the parser's description), plus literal cases for the family's own variants and failure modes.

SINGLE = [("get_weather", {"city": "Paris"})]
PARALLEL = [("get_weather", {"city": "Paris", "unit": "c"}), ("get_time", {})]
PARALLEL3 = [("get_weather", {"city": "Paris"}), ("search_docs", NESTED),
             ("get_time", {"timezone": "UTC"})]
TYPED = {"enabled": True, "ratio": 0.5, "tags": ["a", "b"], "level": None, "note": "42"}
PLAIN = "The weather in Paris is mild {usually} [citation needed]; 3 < 4 > 2."
BEFORE, AFTER = "Let me check.\n", "\nDone."


def js(value, ascii_only: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def cut(text: str, anchor: str, keep: int) -> str:
    """`text` cut inside its first `anchor`, keeping `keep` characters of it (a truncated call)."""
    return text[:text.index(anchor) + keep]


def common_cases(render, *, parallel: bool = True, truncated: object = '{"city": "Par',
                 before: bool = True, after: bool = True, nested: dict = NESTED) -> list:
    """The cases every family gets, from `render(calls) -> model output`; `nested`: what
    NESTED reads back as (markup leaves the schema does not type stay strings)."""
    cases = [
        ("single", render(SINGLE), SINGLE, None),
        ("nested", render([("search_docs", NESTED)]), [("search_docs", nested)], None),
        ("empty_arguments", render([("get_time", {})]), [("get_time", {})], None),
        ("unicode", render([("get_weather", UNICODE)]), [("get_weather", UNICODE)], None),
        ("escaped", render([("search_docs", ESCAPED)]), [("search_docs", ESCAPED)], None),
        ("plain_answer", PLAIN, [], PLAIN),
        ("truncated", cut(render(SINGLE), "Paris", 3), [("get_weather", truncated)], None),
    ]
    if parallel:
        cases += [("parallel", render(PARALLEL), PARALLEL, None),
                  ("parallel3", render(PARALLEL3),
                   [PARALLEL3[0], ("search_docs", nested), PARALLEL3[2]], None)]
    if before:
        cases.append(("content_before", BEFORE + render(SINGLE), SINGLE, BEFORE.rstrip()))
    if after:
        cases.append(("content_around", BEFORE + render(SINGLE) + AFTER, SINGLE,
                      BEFORE + AFTER))
    return cases


# ----- JSON object families

def obj(name: str, args: dict, args_key: str = "arguments", name_key: str = "name") -> str:
    return js({name_key: name, args_key: args})


def json_list(calls, **keys) -> str:
    return "[" + ", ".join(obj(n, a, **keys) for n, a in calls) + "]"


GRANITE = common_cases(lambda calls: "<|tool_call|>" + json_list(calls)) + [
    ("granite31_tag", "<tool_call>" + json_list(PARALLEL), PARALLEL, None),
    ("ascii_escapes", "<|tool_call|>" + js([{"name": "get_weather", "arguments": UNICODE}], True),
     [("get_weather", UNICODE)], None),
    ("arguments_first", '<|tool_call|>[{"arguments": {"city": "Oslo"}, "name": "get_weather"}]',
     [("get_weather", {"city": "Oslo"})], None),
    ("malformed", "<|tool_call|>I cannot call tools.", [], "<|tool_call|>I cannot call tools."),
    ("list_not_calls", "<|tool_call|>[1, 2]", [], "<|tool_call|>[1, 2]"),
]

GRANITE_20B_FC = common_cases(
    lambda calls: " ".join("<function_call> " + obj(n, a) for n, a in calls)) + [
    ("newline_separated", "<function_call> " + obj(*PARALLEL[0]) + "\n<function_call> "
     + obj(*PARALLEL[1]), PARALLEL, None),
    ("malformed", "<function_call> get_weather(Paris)", [], "<function_call> get_weather(Paris)"),
]

GRANITE4 = common_cases(
    lambda calls: "\n".join(f"<tool_call>{obj(n, a)}</tool_call>" for n, a in calls)) + [
    ("content_between", "First:<tool_call>" + obj(*PARALLEL[0]) + "</tool_call> then:<tool_call>"
     + obj(*PARALLEL[1]) + "</tool_call> done", PARALLEL, "First: then: done"),
    ("repeated_end_markers", "<tool_call>" + obj("get_time", {}) + "</tool_call></tool_call>"
     "</tool_call> ok", [("get_time", {})], " ok"),
    ("malformed", "<tool_call>{oops}</tool_call>", [], "<tool_call>{oops}</tool_call>"),
]

INTERNLM = common_cases(
    lambda calls: "".join(f"<|action_start|><|plugin|>\n{obj(n, a, 'parameters')}<|action_end|>"
                          for n, a in calls), parallel=False) + [
    ("arguments_key", "<|action_start|><|plugin|>\n" + obj("get_weather", {"city": "Rome"})
     + "<|action_end|>", [("get_weather", {"city": "Rome"})], None),
    ("intern_s1_spaced_start", "<|action_start|> <|plugin|>\n" + obj("get_time", {}, "parameters")
     + "<|action_end|>", [("get_time", {})], None),
    ("malformed", "<|action_start|><|plugin|>\nsearch for it<|action_end|>", [],
     "<|action_start|><|plugin|>\nsearch for it<|action_end|>"),
]

JAMBA = common_cases(lambda calls: "<tool_calls>" + json_list(calls) + "</tool_calls>") + [
    ("repeated_region_end", "<tool_calls>" + json_list(SINGLE) + "</tool_calls></tool_calls>"
     "</tool_calls> ok", SINGLE, " ok"),
    ("malformed", "<tool_calls>nothing</tool_calls>", [], "<tool_calls>nothing</tool_calls>"),
]

PHI4_MINI_JSON = common_cases(lambda calls: "functools" + json_list(calls)) + [
    ("parameters_key", "functools" + json_list(SINGLE, args_key="parameters"), SINGLE, None),
    ("word_in_prose", "Python's functools module has lru_cache.", [],
     "Python's functools module has lru_cache."),
]

LONGCAT = common_cases(lambda calls: "\n".join(
    f"<longcat_tool_call>{obj(n, a)}</longcat_tool_call>" for n, a in calls)) + [
    ("no_end_tag", "<longcat_tool_call>" + obj(*SINGLE[0]), SINGLE, None),
    ("malformed", "<longcat_tool_call>later</longcat_tool_call>", [],
     "<longcat_tool_call>later</longcat_tool_call>"),
]

ERNIE45 = common_cases(lambda calls: "\n".join(
    f"<tool_call>\n{obj(n, a)}\n</tool_call>" for n, a in calls)) + [
    ("after_think_newlines", "\n\n\n<tool_call>\n" + obj(*SINGLE[0]) + "\n</tool_call>\n",
     SINGLE, None),
    ("malformed", "<tool_call>\n(no call)\n</tool_call>", [],
     "<tool_call>\n(no call)\n</tool_call>"),
]

GIGACHAT3 = common_cases(
    lambda calls: "".join(f"<|message_sep|>\n\nfunction call<|role_sep|>\n{obj(n, a)}"
                          for n, a in calls), parallel=False, after=False) + [
    ("function_call_token", "<|function_call|>" + obj(*SINGLE[0]), SINGLE, None),
    ("content_then_token", "Checking.<|function_call|>" + obj(*SINGLE[0]), SINGLE,
     "Checking."),
    ("malformed", "<|message_sep|>\n\nfunction call<|role_sep|>\nnope", [],
     "\n\nfunction call<|role_sep|>\nnope"),
]

XLAM = common_cases(json_list, before=False, after=False) + [
    ("text_after_list", json_list(SINGLE) + AFTER, SINGLE, AFTER),
    ("text_before_bare_list", BEFORE + json_list(SINGLE), [], BEFORE + json_list(SINGLE)),
    ("fenced", "Sure:\n```json\n" + json_list(PARALLEL) + "\n```", PARALLEL, "Sure:"),
    ("tool_calls_marker", "[TOOL_CALLS]" + json_list(SINGLE), SINGLE, None),
    ("tool_call_tags", "<tool_call>" + json_list(SINGLE) + "</tool_call>", SINGLE, None),
    ("after_think", "</think>" + json_list(SINGLE), SINGLE, None),
    ("list_of_numbers", "[1, 2, 3]", [], "[1, 2, 3]"),
    ("content_then_marker", "Sure.[TOOL_CALLS]" + json_list(PARALLEL), PARALLEL, "Sure."),
]

MINIMAX = common_cases(lambda calls: "<tool_calls>\n" + "\n".join(obj(n, a) for n, a in calls)
                       + "\n</tool_calls>") + [
    ("malformed", "<tool_calls>\nnone\n</tool_calls>", [], "<tool_calls>\nnone\n</tool_calls>"),
]

APERTUS = common_cases(lambda calls: "<|tools_prefix|>" + js([{n: a} for n, a in calls])
                       + "<|tools_suffix|>") + [
    ("no_suffix", "<|tools_prefix|>" + js([{"get_weather": {"city": "Paris"}}]), SINGLE, None),
    ("malformed", "<|tools_prefix|>[\"get_weather\"]<|tools_suffix|>", [],
     "<|tools_prefix|>[\"get_weather\"]<|tools_suffix|>"),
]


def cohere(calls) -> str:
    items = ",\n".join("    " + js({"tool_call_id": str(i), "tool_name": n, "parameters": a})
                       for i, (n, a) in enumerate(calls))
    return "<|START_ACTION|>\n[\n" + items + "\n]\n<|END_ACTION|>"


COHERE = common_cases(cohere) + [
    ("ids_kept", cohere(PARALLEL), [(*PARALLEL[0], "0"), (*PARALLEL[1], "1")], None),
    ("response", "<|START_RESPONSE|>It is 21 degrees.<|END_RESPONSE|>", [], "It is 21 degrees."),
    ("malformed", "<|START_ACTION|>\nnot json\n<|END_ACTION|>", [],
     "<|START_ACTION|>\nnot json\n<|END_ACTION|>"),
]

INKLING = common_cases(lambda calls: "".join(
    "<|message_model|><|content_invoke_tool_json|>" + obj(n, a, "args") + "<|end_message|>"
    for n, a in calls)) + [
    ("text_block_then_call", "<|message_model|><|content_text|>Checking.<|end_message|>"
     "<|message_model|><|content_invoke_tool_json|>" + obj(*SINGLE[0], "args") + "<|end_message|>",
     SINGLE, "Checking."),
    ("malformed", "<|content_invoke_tool_json|>{broken<|end_message|>", [],
     "<|content_invoke_tool_json|>{broken"),
]

# ----- name + JSON families

DS_CALLS_BEGIN, DS_CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
DS_CALL_BEGIN, DS_CALL_END, DS_SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"


def deepseek_v3(calls) -> str:
    return DS_CALLS_BEGIN + "\n".join(
        f"{DS_CALL_BEGIN}function{DS_SEP}{n}\n```json\n{js(a)}\n```{DS_CALL_END}"
        for n, a in calls) + DS_CALLS_END


def deepseek_v31(calls) -> str:
    return DS_CALLS_BEGIN + "".join(f"{DS_CALL_BEGIN}{n}{DS_SEP}{js(a)}{DS_CALL_END}"
                                    for n, a in calls) + DS_CALLS_END


DEEPSEEK_V3 = common_cases(deepseek_v3) + [
    ("ascii_lookalike_markers", "<|tool▁calls▁begin|>" + deepseek_v3(SINGLE)[len(DS_CALLS_BEGIN):],
     [], "<|tool▁calls▁begin|>" + deepseek_v3(SINGLE)[len(DS_CALLS_BEGIN):]),
    ("malformed", DS_CALLS_BEGIN + "no calls here" + DS_CALLS_END, [],
     DS_CALLS_BEGIN + "no calls here" + DS_CALLS_END),
]

DEEPSEEK_V31 = common_cases(deepseek_v31) + [
    ("malformed", DS_CALLS_BEGIN + DS_CALL_BEGIN + "get_weather" + DS_SEP + "Paris" + DS_CALL_END
     + DS_CALLS_END, [], DS_CALLS_BEGIN + DS_CALL_BEGIN + "get_weather" + DS_SEP + "Paris"
     + DS_CALL_END + DS_CALLS_END),
]


def kimi(calls, section="calls", prefix="functions.") -> str:
    return f"<|tool_{section}_section_begin|>" + "".join(
        f"<|tool_call_begin|>{prefix}{n}:{i}<|tool_call_argument_begin|>{js(a)}<|tool_call_end|>"
        for i, (n, a) in enumerate(calls)) + f"<|tool_{section}_section_end|>"


KIMI_K2 = common_cases(kimi) + [
    ("ids_kept", kimi(PARALLEL), [(*PARALLEL[0], "functions.get_weather:0"),
                                  (*PARALLEL[1], "functions.get_time:1")], None),
    ("singular_section", kimi(PARALLEL, section="call"), PARALLEL, None),
    ("no_functions_prefix", kimi(SINGLE, prefix=""), [(*SINGLE[0], "get_weather:0")], None),
    ("spaced", "<|tool_calls_section_begin|> <|tool_call_begin|> functions.get_time:0 "
     "<|tool_call_argument_begin|> {} <|tool_call_end|> <|tool_calls_section_end|>",
     [("get_time", {}, "functions.get_time:0")], None),
    ("malformed", "<|tool_calls_section_begin|><|tool_call_begin|>get_weather"
     "<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>", [],
     "<|tool_calls_section_begin|><|tool_call_begin|>get_weather<|tool_call_argument_begin|>{}"
     "<|tool_call_end|><|tool_calls_section_end|>"),
]

# ----- pythonic families


def py_call(name: str, args: dict) -> str:
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"


OLMO3 = common_cases(lambda calls: "<function_calls>\n" + "\n".join(py_call(n, a) for n, a in calls)
                     + "\n</function_calls>", truncated="{") + [
    ("json_literals", "<function_calls>\nsearch_docs(query=\"x\", filters={\"draft\": true, "
     "\"owner\": null}, limit=2)\n</function_calls>",
     [("search_docs", {"query": "x", "filters": {"draft": True, "owner": None}, "limit": 2})],
     None),
    ("malformed", "<function_calls>\n(nothing)\n</function_calls>", [],
     "<function_calls>\n(nothing)\n</function_calls>"),
]

LFM2 = common_cases(lambda calls: "<|tool_call_start|>[" + ", ".join(py_call(n, a)
                                                                     for n, a in calls)
                    + "]<|tool_call_end|>", truncated="{") + [
    ("empty_list_is_no_call", "<|tool_call_start|>[]<|tool_call_end|>Nothing to call.", [],
     "Nothing to call."),
    ("double_quotes", '<|tool_call_start|>[get_weather(location="Paris")]<|tool_call_end|>'
     "The weather is mild.", [("get_weather", {"location": "Paris"})], "The weather is mild."),
    ("echoed_body", '<|tool_call_start|>[get_weather(city="Paris")]<|tool_call_end|>'
     'get_weather(city="Paris")]<|tool_call_end|>It is mild.', SINGLE, "It is mild."),
    ("malformed", "<|tool_call_start|>[oops<|tool_call_end|>", [],
     "<|tool_call_start|>[oops<|tool_call_end|>"),
]

# ----- key/value DSL families


def dsl_value(value, quote: str) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{dsl_value(v, quote)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dsl_value(v, quote) for v in value) + "]"
    if isinstance(value, str):
        return quote + value + quote
    return js(value)


def gemma4(calls) -> str:
    return "".join(f"<|tool_call>call:{n}{dsl_value(a, Q)}<tool_call|>" for n, a in calls)


Q = '<|"|>'
GEMMA4 = common_cases(gemma4, truncated="{") + [
    ("nested_objects_arrays", "<|tool_call>call:set_options{enabled:true,ratio:0.5,tags:[" + Q + "a"
     + Q + "," + Q + "b" + Q + "],level:null,note:" + Q + "42" + Q + "}<tool_call|>",
     [("set_options", TYPED)], None),
    ("quoted_keys", "<|tool_call>call:search_docs{filters:{" + Q + "3" + Q + ":" + Q + "x" + Q + ","
     + Q + "a b" + Q + ":[1,-2.5,{k:false}]}}<tool_call|>",
     [("search_docs", {"filters": {"3": "x", "a b": [1, -2.5, {"k": False}]}})], None),
    ("key_without_value", "<|tool_call>call:search_docs{query:,limit:3}<tool_call|>",
     [("search_docs", {"query": "", "limit": 3})], None),
    ("string_with_delimiters", "<|tool_call>call:search_docs{query:" + Q + "a, b} [c]: d" + Q
     + "}<tool_call|>", [("search_docs", {"query": "a, b} [c]: d"})], None),
    ("truncated_after_value", "<|tool_call>call:search_docs{query:" + Q + "q" + Q + ",limit:5",
     [("search_docs", '{"query": "q", "limit": 5')], None),
    ("malformed", "<|tool_call>get weather please<tool_call|>", [],
     "<|tool_call>get weather please<tool_call|>"),
]

FUNCTIONGEMMA = common_cases(lambda calls: "".join(
    f"<start_function_call>call:{n}{dsl_value(a, '<escape>')}<end_function_call>"
    for n, a in calls), truncated="{") + [
    ("malformed", "<start_function_call>get_weather<end_function_call>", [],
     "<start_function_call>get_weather<end_function_call>"),
]

# ----- Harmony (gpt-oss)


def harmony(calls, order: str = "channel_first") -> str:
    out = []
    for n, a in calls:
        if order == "channel_first":
            header = f"<|channel|>commentary to=functions.{n} <|constrain|>json"
        else:
            header = f" to=functions.{n}<|channel|>commentary json"
        out.append(f"<|start|>assistant{header}<|message|>{js(a)}<|call|>")
    return "".join(out)


OPENAI = common_cases(harmony) + [
    ("recipient_first", harmony(PARALLEL, order="recipient_first"), PARALLEL, None),
    ("analysis_then_call", "<|channel|>analysis<|message|>Need the weather.<|end|>"
     + harmony(SINGLE), SINGLE, "Need the weather."),
    ("final_answer", "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final"
     "<|message|>It is sunny.<|return|>", [], "Easy.It is sunny."),
    ("commentary_preamble", "<|start|>assistant<|channel|>commentary<|message|>Checking.<|end|>"
     + harmony(SINGLE), SINGLE, "Checking."),
    ("builtin_recipient", "<|start|>assistant<|channel|>analysis to=python<|message|>print(1)"
     "<|call|>", [], "print(1)"),
]

# ----- markup families: parameters as tags, values typed by the tool's schema


def text_value(value) -> str:
    return value if isinstance(value, str) else js(value)


def typed_cases(render) -> list:
    """Values typed by the schema: strings stay strings (even digits), integers, booleans,
    numbers, arrays, null and objects are parsed, what does not parse stays text."""
    return [
        ("typed", render([("set_options", TYPED)]), [("set_options", TYPED)], None),
        ("digits_stay_string", render([("get_weather", {"city": "2023"})]),
         [("get_weather", {"city": "2023"})], None),
        ("unparseable_stays_string", render([("search_docs", {"limit": "many",
                                                              "filters": "{oops"})]),
         [("search_docs", {"limit": "many", "filters": "{oops"})], None),
        ("unknown_key_is_string", render([("get_weather", {"city": "Paris", "days": "3"})]),
         [("get_weather", {"city": "Paris", "days": "3"})], None),
    ]


def qwen_xml(calls, start="<tool_call>", end="</tool_call>") -> str:
    return "\n".join(
        f"{start}\n<function={n}>\n" + "".join(f"<parameter={k}>\n{text_value(v)}\n</parameter>\n"
                                                for k, v in a.items()) + f"</function>\n{end}"
        for n, a in calls)


QWEN3_CODER = common_cases(qwen_xml) + typed_cases(qwen_xml) + [
    ("missing_parameter_end", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n"
     "<parameter=unit>\nc\n</function>\n</tool_call>",
     [("get_weather", {"city": "Paris", "unit": "c"})], None),
    ("no_tool_call_tag", "<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
     "</function>", SINGLE, None),
    ("consecutive_without_end", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n"
     "</parameter>\n</function>\n<tool_call>\n<function=get_time>\n</function>\n</tool_call>",
     [("get_weather", {"city": "Paris"}), ("get_time", {})], None),
    ("inline_values", "<tool_call><function=get_weather><parameter=city>Paris</parameter>"
     "</function></tool_call>", SINGLE, None),
    ("value_whitespace", "<tool_call>\n<function=search_docs>\n<parameter=query>\n\n  two lines\n"
     "  indented\n\n</parameter>\n</function>\n</tool_call>",
     [("search_docs", {"query": "\n  two lines\n  indented\n"})], None),
    ("unknown_function_without_tag", "<function=launch>\n</function>", [],
     "<function=launch>\n</function>"),
    ("malformed", "<tool_call>\nget_weather Paris\n</tool_call>", [],
     "<tool_call>\nget_weather Paris\n</tool_call>"),
]


def seed_xml(calls) -> str:
    return qwen_xml(calls, "<seed:tool_call>", "</seed:tool_call>")


SEED_OSS = common_cases(seed_xml) + typed_cases(seed_xml) + [
    ("malformed", "<seed:tool_call>\nsoon\n</seed:tool_call>", [],
     "<seed:tool_call>\nsoon\n</seed:tool_call>"),
]


def glm(calls, newline: bool = True) -> str:
    nl = "\n" if newline else ""
    return nl.join(
        f"<tool_call>{n}{nl}" + "".join(f"<arg_key>{k}</arg_key>{nl}<arg_value>{text_value(v)}"
                                         f"</arg_value>{nl}" for k, v in a.items())
        + "</tool_call>" for n, a in calls)


def glm47(calls) -> str:
    return glm(calls, newline=False)


GLM45 = common_cases(glm) + typed_cases(glm) + [
    ("glm47_no_newlines", glm47(PARALLEL3), PARALLEL3, None),
    ("glm47_zero_arguments", "<tool_call>get_time</tool_call>", [("get_time", {})], None),
    ("repeated_start_markers", "<tool_call><tool_call><tool_call>get_time</tool_call>",
     [("get_time", {})], None),
    ("glm47_typed", glm47([("set_options", TYPED)]), [("set_options", TYPED)], None),
    ("escaped_newline_between_key_and_value", "<tool_call>get_weather<arg_key>city</arg_key>\\n"
     "<arg_value>Paris</arg_value></tool_call>", SINGLE, None),
    ("broken_after_name", "<tool_call>get_weather\n<arg_key>city</arg_key>\nParis\n</tool_call>"
     "\nDone.", [("get_weather", {})], "Done."),
    ("space_between_key_and_value", "<tool_call>get_weather\n<arg_key>city</arg_key> \n "
     "<arg_value>Paris</arg_value>\n</tool_call>", SINGLE, None),
    ("malformed", "<tool_call>\n</tool_call>", [], "<tool_call>\n</tool_call>"),
]


def hy_v3(calls) -> str:
    return "<tool_calls>\n" + "\n".join(
        f"<tool_call>{n}<tool_sep>\n" + "".join(f"<arg_key>{k}</arg_key>\n<arg_value>"
                                                 f"{text_value(v)}</arg_value>\n"
                                                 for k, v in a.items()) + "</tool_call>"
        for n, a in calls) + "\n</tool_calls>"


HY_V3 = common_cases(hy_v3) + typed_cases(hy_v3) + [
    ("zero_arguments_inline", "<tool_calls><tool_call>get_time<tool_sep></tool_call></tool_calls>",
     [("get_time", {})], None),
    ("malformed", "<tool_calls>\nnothing\n</tool_calls>", [],
     "<tool_calls>\nnothing\n</tool_calls>"),
]


def hy_v4(calls) -> str:
    return "<tool_calls>" + glm47(calls) + "</tool_calls>"


HY_V4 = common_cases(hy_v4) + typed_cases(hy_v4) + [
    ("zero_arguments", "<tool_calls><tool_call>get_time</tool_call></tool_calls>",
     [("get_time", {})], None),
    ("malformed", "<tool_calls>nothing</tool_calls>", [], "<tool_calls>nothing</tool_calls>"),
]


def dsml(calls, wrapper: str = "function_calls", tag: str = "DSML",
         string_attr: bool = True) -> str:
    def param(k, v):
        attr = ""
        if string_attr:
            attr = ' string="true"' if isinstance(v, str) else ' string="false"'
        return f'<｜{tag}｜parameter name="{k}"{attr}>{text_value(v)}</｜{tag}｜parameter>\n'

    return f"<｜{tag}｜{wrapper}>\n" + "".join(
        f'<｜{tag}｜invoke name="{n}">\n' + "".join(param(k, v) for k, v in a.items())
        + f"</｜{tag}｜invoke>\n" for n, a in calls) + f"</｜{tag}｜{wrapper}>"


def dsml_v4(calls) -> str:
    return dsml(calls, "tool_calls")


def dsml_cases(render) -> list:
    return common_cases(render) + typed_cases(render) + [
        ("string_false_is_json", render([("get_time", {"offset": 5, "opts": {"a": [1, None]}})]),
         [("get_time", {"offset": 5, "opts": {"a": [1, None]}})], None),
        ("string_true_stays_text", render([("get_time", {"code": "5"})]),
         [("get_time", {"code": "5"})], None),
    ]


DEEPSEEK_V32 = dsml_cases(dsml) + [
    ("string_false_unparseable", '<｜DSML｜function_calls>\n<｜DSML｜invoke name="get_time">\n'
     '<｜DSML｜parameter name="x" string="false">not json</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
     "</｜DSML｜function_calls>", [("get_time", {"x": "not json"})], None),
    ("malformed", "<｜DSML｜function_calls>\noops\n</｜DSML｜function_calls>", [],
     "<｜DSML｜function_calls>\noops\n</｜DSML｜function_calls>"),
]

DEEPSEEK_V4 = dsml_cases(dsml_v4) + [
    ("v32_wrapper_is_text", dsml(SINGLE), [], dsml(SINGLE)),
]


def gcml(calls) -> str:
    return dsml(calls, "tool_calls", "GCML")


GIGACHAT35 = dsml_cases(gcml) + [
    ("string_attribute_absent", dsml([("get_weather", {"city": "Paris"})], "tool_calls", "GCML",
                                     string_attr=False), SINGLE, None),
]


def invoke_xml(calls, region: str) -> str:
    return f"<{region}>\n" + "".join(
        f'<invoke name="{n}">\n' + "".join(f'<parameter name="{k}">{text_value(v)}</parameter>\n'
                                           for k, v in a.items()) + "</invoke>\n"
        for n, a in calls) + f"</{region}>"


def minimax_m2(calls) -> str:
    return invoke_xml(calls, "minimax:tool_call")


MINIMAX_M2 = common_cases(minimax_m2) + typed_cases(minimax_m2) + [
    ("single_quoted", minimax_m2(PARALLEL).replace('"', "'"), PARALLEL, None),
    ("unquoted", minimax_m2(SINGLE).replace('"', ""), SINGLE, None),
    ("value_whitespace_kept_inside", '<minimax:tool_call>\n<invoke name="search_docs">\n'
     '<parameter name="query">  padded  </parameter>\n</invoke>\n</minimax:tool_call>',
     [("search_docs", {"query": "  padded  "})], None),
    ("missing_parameter_end", '<minimax:tool_call>\n<invoke name="get_weather">\n'
     '<parameter name="city">Paris\n<parameter name="unit">c</parameter>\n</invoke>\n'
     "</minimax:tool_call>", [("get_weather", {"city": "Paris", "unit": "c"})], None),
    ("malformed", "<minimax:tool_call>\n<invoke>\n</minimax:tool_call>", [],
     "<minimax:tool_call>\n<invoke>\n</minimax:tool_call>"),
]


def dots(calls) -> str:
    return invoke_xml(calls, "dots_function_call")


DOTS = common_cases(dots) + typed_cases(dots) + [
    ("unquoted", dots([("search_docs", {"query": "weather in Shanghai", "limit": 3})])
     .replace('"', ""), [("search_docs", {"query": "weather in Shanghai", "limit": 3})], None),
    ("json_body", "<dots_function_call>\n" + obj("search_docs", {"query": "x"}, "parameters")
     + "\n</dots_function_call>", [("search_docs", {"query": "x"})], None),
    ("malformed", "<dots_function_call>\nsearch\n</dots_function_call>", [],
     "<dots_function_call>\nsearch\n</dots_function_call>"),
]


def muse_glimmer(calls) -> str:
    """A message to a tool carrying ATEM invokes (`<atem:...>` tags), ended by `<|eom|>`."""
    return "<|start|>assistant to=tool.call<|message|><atem:function_calls>\n" + "".join(
        f'<atem:invoke name="{n}">\n' + "".join(
            f'<atem:parameter name="{k}">{text_value(v)}</atem:parameter>\n'
            for k, v in a.items()) + "</atem:invoke>\n"
        for n, a in calls) + "</atem:function_calls><|eom|>"


MUSE_GLIMMER = common_cases(muse_glimmer) + typed_cases(muse_glimmer) + [
    ("thought_and_answer_headers_are_markup",
     " to=self<|message|>Checking.<|eom|><|start|>assistant to=user<|message|>Sunny.<|eot|>",
     [], "Checking.Sunny."),
    ("header_without_calls_then_call", "<|start|>assistant to=user<|message|>On it.<|eom|>"
     + muse_glimmer(SINGLE), SINGLE, "On it."),
    ("malformed", "<atem:function_calls>\nsearch\n</atem:function_calls>", [],
     "<atem:function_calls>\nsearch\n</atem:function_calls>"),
]


def step3(calls) -> str:
    return "<｜tool_calls_begin｜>" + "".join(
        '<｜tool_call_begin｜>function<｜tool_sep｜><steptml:invoke name="' + n + '">'
        + "".join(f'<steptml:parameter name="{k}">{text_value(v)}</steptml:parameter>'
                  for k, v in a.items()) + "</steptml:invoke><｜tool_call_end｜>"
        for n, a in calls) + "<｜tool_calls_end｜>"


STEP3 = common_cases(step3) + typed_cases(step3) + [
    ("malformed", "<｜tool_calls_begin｜>nothing<｜tool_calls_end｜>", [],
     "<｜tool_calls_begin｜>nothing<｜tool_calls_end｜>"),
]


NS = "]<]minimax[>["


def m3_tag(key: str, value) -> str:
    if isinstance(value, dict):
        inner = "".join(m3_tag(k, v) for k, v in value.items())
    elif isinstance(value, list):
        inner = "".join(m3_tag("item", v) for v in value)
    else:
        inner = text_value(value)
    return f"{NS}<{key}>{inner}{NS}</{key}>"


def minimax_m3(calls) -> str:
    return f"{NS}<tool_call>\n" + "\n".join(
        f'{NS}<invoke name="{n}">' + "".join(m3_tag(k, v) for k, v in a.items()) + f"{NS}</invoke>"
        for n, a in calls) + f"\n{NS}</tool_call>"


MINIMAX_M3 = common_cases(minimax_m3, truncated={}, nested={
    "query": "tool calling", "filters": {"lang": ["en", "fr"], "year": {"gte": "2023"},
                                         "draft": "false", "owner": "null"}, "limit": 5}) + \
    typed_cases(minimax_m3) + [
    ("repeated_key_is_array", f'{NS}<tool_call>\n{NS}<invoke name="search_docs">{NS}<filters>'
     f"{NS}<tag>a{NS}</tag>{NS}<tag>b{NS}</tag>{NS}</filters>{NS}<limit>018{NS}</limit>"
     f"{NS}</invoke>\n{NS}</tool_call>", [("search_docs", {"filters": {"tag": ["a", "b"]},
                                                          "limit": 18})], None),
    ("malformed", f"{NS}<tool_call>\nnothing\n{NS}</tool_call>", [],
     f"{NS}<tool_call>\nnothing\n{NS}</tool_call>"),
]


def minicpm5(calls) -> str:
    return "\n".join(f'<function name="{n}">' + "".join(f'<param name="{k}">{text_value(v)}</param>'
                                                      for k, v in a.items()) + "</function>"
                     for n, a in calls)


MINICPM5 = common_cases(minicpm5) + typed_cases(minicpm5) + [
    ("arguments_wrapper", '<function name="get_weather"><arguments><param name="city">Paris'
     "</param></arguments></function>", SINGLE, None),
    ("malformed", '<function name="">nothing</function>', [],
     '<function name="">nothing</function>'),
]


def solar(calls) -> str:
    return "\n".join(f"<|tool_call:start|>{n}\n" + "".join(
        f"<|tool_arg:start|>{k}<|tool_arg:value|>{text_value(v)}<|tool_arg:end|>"
        for k, v in a.items()) + "<|tool_call:end|>" for n, a in calls)


SOLAR_OPEN2 = common_cases(solar) + typed_cases(solar) + [
    ("call_ends_at_next_start", "<|tool_call:start|>get_weather\n<|tool_arg:start|>city"
     "<|tool_arg:value|>Paris<|tool_arg:end|><|tool_call:start|>get_time\n<|tool_call:end|>",
     [("get_weather", {"city": "Paris"}), ("get_time", {})], None),
    ("dropped_arg_end", "<|tool_call:start|>get_weather\n<|tool_arg:start|>city<|tool_arg:value|>"
     "Paris<|tool_arg:start|>unit<|tool_arg:value|>c<|tool_arg:end|><|tool_call:end|>",
     [("get_weather", {"city": "Paris", "unit": "c"})], None),
    ("malformed", "<|tool_call:start|>\n<|tool_call:end|>", [],
     "<|tool_call:start|>\n<|tool_call:end|>"),
]


def kimi_k3(calls) -> str:
    def arg(k, v):
        kind = "string" if isinstance(v, str) else "object" if isinstance(v, dict) else "number"
        return (f'<|open|>argument key="{k}" type="{kind}"<|sep|>{text_value(v)}'
                "<|close|>argument<|sep|>")

    return "<|open|>tools<|sep|>" + "".join(
        f'<|open|>call tool="{n}" index="{i + 1}"<|sep|>' + "".join(arg(k, v) for k, v in a.items())
        + "<|close|>call<|sep|>" for i, (n, a) in enumerate(calls)) + "<|close|>tools<|sep|>"


KIMI_K3 = common_cases(kimi_k3) + typed_cases(kimi_k3) + [
    ("response_channel", "<|open|>response<|sep|>Checking.<|close|>response<|sep|>"
     + kimi_k3(SINGLE), SINGLE, "Checking."),
    ("response_opened_in_prompt", "Checking.<|close|>response<|sep|>" + kimi_k3(SINGLE), SINGLE,
     "Checking."),
    ("malformed", "<|open|>tools<|sep|>nothing<|close|>tools<|sep|>", [],
     "<|open|>tools<|sep|>nothing<|close|>tools<|sep|>"),
]

FIXTURES.update({
    "apertus": APERTUS,
    "cohere_command3": COHERE,
    "deepseek_v3": DEEPSEEK_V3,
    "deepseek_v31": DEEPSEEK_V31,
    "deepseek_v32": DEEPSEEK_V32,
    "deepseek_v4": DEEPSEEK_V4,
    "dots": DOTS,
    "ernie45": ERNIE45,
    "functiongemma": FUNCTIONGEMMA,
    "gemma4": GEMMA4,
    "gigachat3": GIGACHAT3,
    "gigachat35": GIGACHAT35,
    "glm45": GLM45,
    "granite": GRANITE,
    "granite-20b-fc": GRANITE_20B_FC,
    "granite4": GRANITE4,
    "hunyuan_a13b": JAMBA,
    "hy_v3": HY_V3,
    "hy_v4": HY_V4,
    "inkling": INKLING,
    "internlm": INTERNLM,
    "jamba": JAMBA,
    "kimi_k2": KIMI_K2,
    "kimi_k3": KIMI_K3,
    "lfm2": LFM2,
    "longcat": LONGCAT,
    "minicpm5": MINICPM5,
    "minimax": MINIMAX,
    "minimax_m2": MINIMAX_M2,
    "minimax_m3": MINIMAX_M3,
    "muse_glimmer": MUSE_GLIMMER,
    "olmo3": OLMO3,
    "openai": OPENAI,
    "phi4_mini_json": PHI4_MINI_JSON,
    "qwen3_coder": QWEN3_CODER,
    "seed_oss": SEED_OSS,
    "solar_open2": SOLAR_OPEN2,
    "step3": STEP3,
    "xlam": XLAM,
})

# Cases the parsers do not handle yet (see /tmp/research/stream_bugs.md): run as strict xfails so
# they show, and flip to passes when fixed.
XFAIL = {
    ("lfm2", "echoed_body"): "LFM2 echoes the call after <|tool_call_end|> up to a second, orphan "
    "end marker; dropping the echo needs content held back until that marker (not supported)",
    ("glm45", "broken_after_name"): "after a committed call's body breaks, its remaining markup "
    "(up to </tool_call>) becomes content",
}

# Every registered name, aliases included -> its parser class's fixtures.
ALIASES = {
    "apertus2509": "apertus", "cohere_command4": "cohere_command3", "deepseekv3": "deepseek_v3",
    "deepseekv31": "deepseek_v31", "deepseekv32": "deepseek_v32", "deepseekv4": "deepseek_v4",
    "glm": "glm45", "glm47": "glm45", "ling3": "glm45", "poolside_v1": "glm45",
    "spark25": "glm45", "gpt-oss": "openai", "hunyuan": "hy_v3", "interns1": "internlm",
    "llama3": "llama3_json", "llama4_json": "llama3_json", "mimo": "qwen3_coder",
    "qwen3_xml": "qwen3_coder", "step3p5": "qwen3_coder", "minimax-m2": "minimax_m2",
    "minimax-m3": "minimax_m3", "muse": "muse_glimmer",
    "qwen": "hermes", "qwen25": "hermes", "qwen3_json": "hermes", "trinity": "hermes",
}
FIXTURES_BY_NAME = {**FIXTURES, **{alias: FIXTURES[name] for alias, name in ALIASES.items()}}
