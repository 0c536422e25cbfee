"""A hand-written Qwen3-style thinking chat template for the reasoning tests.

ChatML; tools listed Hermes-style in the system turn; earlier assistant calls written as
`<tool_call>\\n{json}\\n</tool_call>`; an earlier turn's `reasoning_content` written as
`<think>\\n...\\n</think>\\n\\n` before its content; tool results as `<tool_response>` blocks in a
user turn; `reasoning_effort` (a template variable) as a line of the system turn. The
generation prompt opens the thought (`<|im_start|>assistant\\n<think>\\n`), or
writes an empty one when `enable_thinking` is false.
"""

THINKING_TEMPLATE = r"""
{%- set thinking = enable_thinking is not defined or enable_thinking -%}
{%- if messages[0].role == "system" -%}
    {%- set system_prompt = messages[0].content -%}
    {%- set turns = messages[1:] -%}
{%- else -%}
    {%- set system_prompt = "" -%}
    {%- set turns = messages -%}
{%- endif -%}
{%- if reasoning_effort is defined -%}
    {%- set system_prompt = ("Reasoning effort: " + reasoning_effort + "\n\n" + system_prompt) | trim -%}
{%- endif -%}
{%- if tools or system_prompt -%}
    {{- "<|im_start|>system\n" + system_prompt -}}
    {%- if tools -%}
        {%- if system_prompt %}{{ "\n\n" }}{% endif -%}
        {{- "# Tools\n\nYou may call functions. Their signatures, as JSON, inside <tools></tools>:\n<tools>" -}}
        {%- for tool in tools -%}
            {{- "\n" + (tool | tojson) -}}
        {%- endfor -%}
        {{- "\n</tools>\n\nWrite each call as a JSON object inside <tool_call></tool_call> tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>" -}}
    {%- endif -%}
    {{- "<|im_end|>\n" -}}
{%- endif -%}
{%- for message in turns -%}
    {%- if message.role == "assistant" -%}
        {{- "<|im_start|>assistant\n" -}}
        {%- if message.reasoning_content -%}
            {{- "<think>\n" + message.reasoning_content.strip() + "\n</think>\n\n" -}}
        {%- endif -%}
        {{- message.content or "" -}}
        {%- for call in message.tool_calls or [] -%}
            {%- if message.content or not loop.first %}{{ "\n" }}{% endif -%}
            {{- "<tool_call>\n" + ({"name": call.function.name, "arguments": call.function.arguments} | tojson) + "\n</tool_call>" -}}
        {%- endfor -%}
        {{- "<|im_end|>\n" -}}
    {%- elif message.role == "tool" -%}
        {%- if loop.first or loop.previtem.role != "tool" %}{{ "<|im_start|>user" }}{% endif -%}
        {{- "\n<tool_response>\n" + message.content + "\n</tool_response>" -}}
        {%- if loop.last or loop.nextitem.role != "tool" %}{{ "<|im_end|>\n" }}{% endif -%}
    {%- else -%}
        {{- "<|im_start|>" + message.role + "\n" + message.content + "<|im_end|>\n" -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- "<|im_start|>assistant\n" -}}
    {%- if thinking %}{{ "<think>\n" }}{% else %}{{ "<think>\n\n</think>\n\n" }}{% endif -%}
{%- endif -%}
"""

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}}
