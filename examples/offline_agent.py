"""An offline agent: `LLM.run_tools` runs the tools the model calls — Python functions (sync or
async), a `tool_callback` for OpenAI tool dicts, and the tools of MCP servers — feeds the results
back and generates again, for a whole batch of conversations in one continuous batch.

    python examples/offline_agent.py                                    # embedded SmolLM2
    python examples/offline_agent.py --model qwen2.5-coder-0.5b-instruct
    python examples/offline_agent.py --mcp-config servers.json          # + MCP servers' tools

servers.json is the common MCP config: {"mcpServers": {"name": {"command": ..., "args": [...]}}}.
"""

import argparse
import asyncio
from typing import Literal

from callm import LLM, SamplingParams


def get_current_weather(location: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Get the current weather in a given location.

    Args:
        location: The city, e.g. Boston.
        unit: The temperature unit.
    """
    return f"21 degrees {unit}, sunny, in {location}"


async def get_local_time(city: str) -> str:
    """The local time in a city.

    Args:
        city: The city, e.g. Tokyo.
    """
    await asyncio.sleep(0.05)  # e.g. an HTTP call; other conversations keep decoding meanwhile
    return f"It is 14:05 in {city}."


def main(model: str = "smollm2-135m-instruct", mcp_config: str | None = None,
         max_tokens: int = 64, **llm_args) -> list:
    llm = LLM(model, mcp_config=mcp_config, **{"max_model_len": 2048, **llm_args})
    conversations = [[{"role": "user", "content": "What's the weather like in Boston today?"}],
                     [{"role": "user", "content": "What time is it in Tokyo?"}]]
    # A small model rarely calls tools unasked: force a call in the first turn, then let it answer.
    results = llm.run_tools(conversations, tools=[get_current_weather, get_local_time],
                            sampling_params=SamplingParams(temperature=0, max_tokens=max_tokens),
                            tool_choice="required", reset_tool_choice=True, max_tool_rounds=3)
    for result in results:
        print(f"--- {result.finish_reason} after {result.rounds} round(s) of tools")
        for message in result.messages:
            if message.get("tool_calls"):
                for call in message["tool_calls"]:
                    print(f"  call {call['id']}: {call['function']['name']}"
                          f"({call['function']['arguments']})")
            else:
                print(f"  {message['role']}: {message['content']!r}")
        print("answer:", result.content)
    llm.shutdown()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--mcp-config", default=None)
    args = parser.parse_args()
    main(args.model, args.mcp_config)
