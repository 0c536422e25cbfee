"""MCP tools that `callm serve` runs itself, through the official `openai` client.

    callm serve --mcp-config servers.json --enable-auto-tool-choice
    python examples/openai_mcp_tools.py --server-label calc --tool add

servers.json is the common MCP config: {"mcpServers": {"calc": {"command": ..., "args": [...]}}}.
The request names the MCP server (`{"type": "mcp", "server_label": ...}`); the server offers
its tools to the model, runs the calls, feeds the results back and answers. The calls it ran
come back in `executed_tool_calls` (a callm extension the openai client keeps as an extra
field) — whole, or in a stream one chunk per call as each finishes.
"""

import argparse

from openai import OpenAI


def main(base_url: str = "http://127.0.0.1:8000/v1", model: str | None = None,
         server_label: str = "calc", tool: str = "add",
         question: str = "What is 2 + 3?", max_tokens: int = 128) -> tuple:
    client = OpenAI(base_url=base_url, api_key="unused")
    model = model or client.models.list().data[0].id
    request = dict(model=model, messages=[{"role": "user", "content": question}],
                   tools=[{"type": "mcp", "server_label": server_label,
                           "allowed_tools": [tool]}],
                   tool_choice="required",  # small models: force the first call
                   parallel_tool_calls=False,  # one call per turn
                   max_tokens=max_tokens, temperature=0,
                   extra_body={"max_tool_rounds": 2})

    whole = client.chat.completions.create(**request)
    for call in whole.executed_tool_calls:
        print(f"ran {call['server_label']}.{call['name']}({call['arguments']}) -> "
              f"{call['output']!r}{' (error)' if call['is_error'] else ''} "
              f"in {call['latency_ms']:.0f} ms")
    print("answer:", whole.choices[0].message.content)

    streamed, answer = [], ""
    for chunk in client.chat.completions.create(**request, stream=True):
        for call in (chunk.model_extra or {}).get("executed_tool_calls") or []:
            streamed.append(call)
            print(f"  (stream) ran {call['name']} -> {call['output']!r}")
        for choice in chunk.choices:
            answer += choice.delta.content or ""
    print("streamed answer:", answer)
    return whole, streamed, answer


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default=None, help="default: the one the server serves")
    parser.add_argument("--server-label", default="calc")
    parser.add_argument("--tool", default="add")
    parser.add_argument("--question", default="What is 2 + 3?")
    args = parser.parse_args()
    main(args.base_url, args.model, args.server_label, args.tool, args.question)
