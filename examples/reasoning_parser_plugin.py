"""A third-party reasoning format in a few lines.

Suppose a model reflects in `<reflect>…</reflect>` before it answers, and its chat template
takes `reflect=False` to skip that. Load this file with

    callm serve MODEL --reasoning-parser-plugin examples/reasoning_parser_plugin.py \\
        --reasoning-parser reflect

or install it as a package that declares

    [project.entry-points."callm.reasoning_parsers"]
    reflect = "reasoning_parser_plugin:ReflectReasoningParser"

The reflection then arrives in `reasoning_content`, the answer in `content`. Because the format
is declared rather than hand-parsed, streaming at any chunking, a template that opens
`<reflect>` in the generation prompt, the `chat_template_kwargs` switch, and a tool call that
starts before `</reflect>` come with it.
"""

from callm.reasoning import FormatReasoningParser, ReasoningFormat, ReasoningParserManager


@ReasoningParserManager.register_module("reflect")
class ReflectReasoningParser(FormatReasoningParser):
    format = ReasoningFormat(start="<reflect>", end="</reflect>", switch=("reflect",))


if __name__ == "__main__":
    parser = ReflectReasoningParser(None)
    print(parser.extract_reasoning("<reflect>The user wants a greeting.</reflect>\nHello!", None))
