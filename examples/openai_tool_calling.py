"""Tool calling through the official `openai` client against `callm serve`.

    callm serve qwen2.5-coder-0.5b-instruct --enable-auto-tool-choice --tool-call-parser hermes
    python examples/openai_tool_calling.py --model qwen2.5-coder-0.5b-instruct

Shows a call in one response, the same call accumulated from a stream, and an agent loop that
runs the tools it registered (and nothing else) and sends the results back.
"""

import argparse
import json

from openai import OpenAI


def get_current_weather(location: str, unit: str = "celsius") -> dict:
    """The tool the agent may run: a stand-in for a real weather service."""
    return {"location": location, "temperature": 21 if unit == "celsius" else 70, "unit": unit}


TOOLS = [{"type": "function", "function": {
    "name": "get_current_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "The city, e.g. Boston"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}]
REGISTERED = {"get_current_weather": get_current_weather}  # only these ever run


def one_call(client: OpenAI, model: str, question: str):
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], tools=TOOLS,
        temperature=0, max_tokens=128)
    message = response.choices[0].message
    print("whole:   ", response.choices[0].finish_reason, message.content,
          [(c.function.name, c.function.arguments) for c in message.tool_calls or []])
    return message


def streamed_call(client: OpenAI, model: str, question: str):
    """Accumulate the deltas: a call's first delta has its id and name, later ones argument
    pieces, all keyed by the call's index."""
    content, calls, finish = "", {}, None
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], tools=TOOLS,
        temperature=0, max_tokens=128, stream=True)
    for chunk in stream:
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": delta.id, "name": "", "arguments": ""})
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    print("streamed:", finish, content or None, [(c["name"], c["arguments"]) for c in calls.values()])
    return content, list(calls.values())


def agent(client: OpenAI, model: str, question: str, max_turns: int = 3) -> str | None:
    messages = [{"role": "user", "content": question}]
    for _ in range(max_turns):
        response = client.chat.completions.create(model=model, messages=messages, tools=TOOLS,
                                                  temperature=0, max_tokens=128)
        message = response.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            print("agent:   ", message.content)
            return message.content
        for call in message.tool_calls:
            tool = REGISTERED.get(call.function.name)
            try:  # model output is data: parse it, and only run registered tools
                result = tool(**json.loads(call.function.arguments)) if tool else \
                    {"error": f"unknown tool {call.function.name}"}
            except (ValueError, TypeError) as e:
                result = {"error": str(e)}
            print("tool:    ", call.function.name, call.function.arguments, "->", result)
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": json.dumps(result)})
    return None


def main(base_url: str, model: str, question: str) -> None:
    client = OpenAI(base_url=base_url, api_key="unused")
    one_call(client, model, question)
    streamed_call(client, model, question)
    agent(client, model, question)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--question", default="What's the weather like in Boston today?")
    args = parser.parse_args()
    main(args.base_url, args.model, args.question)
