"""An agent loop through the official `ollama` client against `callm serve`, which answers
Ollama's API (/api/chat, ...) on the same port as the OpenAI one.

    callm serve qwen2.5-coder-0.5b-instruct --tool-call-parser hermes
    python examples/ollama_agent.py --model qwen2.5-coder-0.5b-instruct

Plain Python functions are the tools (the client turns their signatures and docstrings into
schemas); the model's calls come back with their arguments as dicts; the loop runs the
functions it registered (and nothing else) and sends each result back as a `tool` message
named by `tool_name`, until the model answers in text. `streamed` shows the same with
`stream=True` (and `think=True` for a model served with --reasoning-parser).
"""

import argparse

from ollama import Client


def add_two_numbers(a: int, b: int) -> int:
    """Add two numbers.

    Args:
      a: The first number
      b: The second number

    Returns:
      int: The sum of the two numbers
    """
    return int(a) + int(b)


def multiply_two_numbers(a: int, b: int) -> int:
    """Multiply two numbers.

    Args:
      a: The first number
      b: The second number

    Returns:
      int: The product of the two numbers
    """
    return int(a) * int(b)


TOOLS = {f.__name__: f for f in (add_two_numbers, multiply_two_numbers)}  # only these ever run


def run_tool(name: str, arguments: dict) -> str:
    tool = TOOLS.get(name)
    if tool is None:
        return f"error: unknown tool {name}"
    try:  # model output is data: only registered functions run, with checked arguments
        return str(tool(**arguments))
    except (TypeError, ValueError) as e:
        return f"error: {e}"


def agent(client: Client, model: str, question: str, max_turns: int = 5) -> str | None:
    messages = [{"role": "user", "content": question}]
    for _ in range(max_turns):
        response = client.chat(model=model, messages=messages, tools=list(TOOLS.values()),
                               options={"temperature": 0, "num_predict": 128})
        messages.append(response.message)
        if not response.message.tool_calls:
            print("answer:", response.message.content)
            return response.message.content
        for call in response.message.tool_calls:
            result = run_tool(call.function.name, dict(call.function.arguments))
            print("tool:", call.function.name, dict(call.function.arguments), "->", result)
            messages.append({"role": "tool", "tool_name": call.function.name, "content": result})
    return None


def streamed(client: Client, model: str, question: str, think: bool | None = None):
    """One turn, streamed: thinking and content arrive in pieces, each call whole."""
    thinking, content, calls = "", "", []
    for chunk in client.chat(model=model, messages=[{"role": "user", "content": question}],
                             tools=list(TOOLS.values()), stream=True, think=think,
                             options={"temperature": 0, "num_predict": 128}):
        thinking += chunk.message.thinking or ""
        content += chunk.message.content or ""
        calls.extend(chunk.message.tool_calls or [])
    print("streamed:", repr(thinking), repr(content),
          [(c.function.name, dict(c.function.arguments)) for c in calls])
    return thinking, content, calls


def main(host: str, model: str, question: str) -> None:
    client = Client(host=host)
    streamed(client, model, question)
    agent(client, model, question)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--question", default="What is three plus one, times two?")
    args = parser.parse_args()
    main(args.host, args.model, args.question)
