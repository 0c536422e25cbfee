"""Turn raw model output into OpenAI tool calls, whole and streamed, with callm's parsers.

    python examples/parse_tool_calls.py            # every built-in format
    python examples/parse_tool_calls.py hermes     # one of them
"""

import sys

from callm.entrypoints.openai.protocol import ChatCompletionRequest
from callm.tool_parsers import ToolParserManager

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}

OUTPUTS = {
    "hermes": 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": '
              '{"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", '
              '"arguments": {"city": "Tokyo"}}\n</tool_call>',
    "mistral": '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_weather[ARGS]'
               '{"city": "Tokyo"}',
    "llama3_json": '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
                   '{"name": "get_weather", "parameters": {"city": "Tokyo"}}',
    "pythonic": "[get_weather(city='Paris'), get_weather(city='Tokyo')]",
    "llama4_pythonic": "<|python_start|>[get_weather(city='Paris')]<|python_end|>",
}


def main(names: list[str]) -> None:
    request = ChatCompletionRequest(messages=[{"role": "user", "content": "Weather?"}],
                                    tools=[WEATHER_TOOL])
    for name in names or list(OUTPUTS):
        parser_cls = ToolParserManager.get_tool_parser(name)
        output = OUTPUTS[name]
        print(f"== {name}: {output!r}")
        info = parser_cls(None).extract_tool_calls(output, request)
        print(f"   content: {info.content!r}")
        for call in info.tool_calls:
            print(f"   call: {call.function.name}({call.function.arguments})")
        # Streamed three characters at a time, as a server would receive tokens.
        parser, text = parser_cls(None), ""
        for i in range(0, len(output), 3):
            previous, text = text, output[:i + 3]
            delta = parser.extract_tool_calls_streaming(previous, text, text[len(previous):],
                                                        [], [], [], request)
            for tc in delta.tool_calls if delta else []:
                print(f"   delta: {tc.model_dump_json()}")
        parser.finish_streaming(request)


if __name__ == "__main__":
    main(sys.argv[1:])
