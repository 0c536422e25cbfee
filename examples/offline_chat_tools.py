"""Offline batch chat with tools: `LLM.chat` renders each conversation with the model's chat
template (tools included), runs them as one continuous batch and returns parsed tool calls.

    python examples/offline_chat_tools.py                                   # embedded SmolLM2
    python examples/offline_chat_tools.py --model qwen2.5-coder-0.5b-instruct
"""

import argparse

from callm import LLM, SamplingParams


def get_current_weather(location: str, unit: str = "celsius") -> str:
    """Get the current weather in a given location.

    Args:
        location: The city, e.g. Boston.
        unit: celsius or fahrenheit.
    """
    return f"21 degrees {unit} in {location}"


def main(model: str) -> list:
    llm = LLM(model, max_model_len=2048)
    conversations = [[{"role": "user", "content": "What's the weather like in Boston today?"}],
                     [{"role": "user", "content": "Write one sentence about the sea."}]]
    outputs = llm.chat(conversations, SamplingParams(temperature=0, max_tokens=96),
                       tools=[get_current_weather])
    for output in outputs:
        completion = output.outputs[0]
        print(repr(completion.text))
        for call in completion.tool_calls or []:
            print("  call:", call.function.name, call.function.arguments)
    return outputs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    main(parser.parse_args().model)
