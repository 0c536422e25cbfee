"""Realistic model outputs for each built-in parser, with the calls and content they must give.

Each case: (id, model output, expected [(name, arguments)], expected content). Arguments are
compared as JSON; a string stands for arguments that are not valid JSON (a truncated call).
"""

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
     [("get_weather", '{"ci')], None),
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
