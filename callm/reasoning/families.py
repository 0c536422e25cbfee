"""The built-in reasoning families: each is a `ReasoningFormat`, a few lines of description.

Whether an output starts inside its thought is read from the prompt (a template that opens
`<think>` in the generation prompt), so one description serves a family's templates that do
and don't. A tool-call marker met while thinking ends the thought (the server passes the tool
parser's markers as `interrupts`).
"""

from callm.entrypoints.openai.protocol import DeltaMessage
from callm.reasoning.abstract_reasoning_parser import (FormatReasoningParser,
                                                        ReasoningParserManager)
from callm.reasoning.formats import ReasoningFormat

THINKING_SWITCH = ("thinking", "enable_thinking")


@ReasoningParserManager.register_module(["qwen3", "mimo", "nemotron_v3", "interns1", "nemotron_3"])
class Qwen3ReasoningParser(FormatReasoningParser):
    """Qwen3 / QwQ / Qwen3.5, MiMo, Nemotron 3: `<think>…</think>`; `enable_thinking=False`
    (template writes an empty thought); the 2507-thinking templates open `<think>` in the prompt."""

    format = ReasoningFormat()


@ReasoningParserManager.register_module(["deepseek_r1", "deepseek-r1", "step3", "step3p5",
                                         "qwen3-thinking"])
class DeepSeekR1ReasoningParser(FormatReasoningParser):
    """DeepSeek-R1 / R1-0528, Step-3 / 3.5, Qwen3 thinking-only models: the output starts inside
    the thought (`<think>` optional) and `</think>` ends it; always thinks."""

    format = ReasoningFormat(always_opens=True, switch=())


@ReasoningParserManager.register_module(["deepseek_v3", "deepseek-v3", "poolside_v1"])
class DeepSeekV3ReasoningParser(FormatReasoningParser):
    """DeepSeek V3.1 / V3.2, Poolside: `<think>…</think>` only with `thinking=True` (off by
    default; the template then opens `<think>` in the prompt)."""

    format = ReasoningFormat(switch=THINKING_SWITCH, thinks_by_default=False)


@ReasoningParserManager.register_module(["holo2", "deepseek_v4", "deepseek-v4"])
class Holo2ReasoningParser(FormatReasoningParser):
    """Holo2, DeepSeek V4: `<think>…</think>`, `thinking`/`enable_thinking` on by default."""

    format = ReasoningFormat(switch=THINKING_SWITCH)


@ReasoningParserManager.register_module(["glm45", "glm47", "ling3", "kimi_k2", "minimax_m2",
                                         "minimax", "olmo3"])
class Glm45ReasoningParser(FormatReasoningParser):
    """GLM-4.5 / 4.6 / 4.7, Ling 3, Kimi K2, MiniMax-M2, OLMo 3 Think: `<think>…</think>`
    (GLM-4.7 and MiniMax-M2 templates open it in the prompt); `thinking`/`enable_thinking`
    switch it off."""

    format = ReasoningFormat(switch=THINKING_SWITCH)


@ReasoningParserManager.register_module(["minimax_m2_append_think", "minimax-append-think"])
class MiniMaxM2AppendThinkReasoningParser(FormatReasoningParser):
    """MiniMax-M2 with the thought kept in `content` as `<think>…</think>answer` (nothing split),
    so a client that sends history back resends the thought as the model wrote it."""

    format = ReasoningFormat(always_opens=True, switch=())
    _sent_think = False

    def extract_reasoning(self, model_output, request=None):
        return None, "<think>" + model_output

    def extract_reasoning_streaming(self, previous_text, current_text, delta_text, *ids):
        if not delta_text:  # an empty first delta must not send "<think>" twice
            return None
        text = ("" if self._sent_think else "<think>") + delta_text
        self._sent_think = True
        return DeltaMessage(content=text)

    def finish_streaming(self):
        if self._sent_think:
            return None
        self._sent_think = True
        return DeltaMessage(content="<think>")


@ReasoningParserManager.register_module(["minimax_m3", "minimax-m3"])
class MiniMaxM3ReasoningParser(FormatReasoningParser):
    """MiniMax M3: `<mm:think>…</mm:think>` with `thinking_mode="enabled"`."""

    format = ReasoningFormat(start="<mm:think>", end="</mm:think>", switch=("thinking_mode",),
                             thinks_by_default=False)


@ReasoningParserManager.register_module("seed_oss")
class SeedOssReasoningParser(FormatReasoningParser):
    """Seed-OSS: `<seed:think>…</seed:think>`."""

    format = ReasoningFormat(start="<seed:think>", end="</seed:think>")


@ReasoningParserManager.register_module("mistral")
class MistralReasoningParser(FormatReasoningParser):
    """Magistral: `[THINK]…[/THINK]` (v13+ tokenizers), `<think>…</think>` as text (v11);
    off with `reasoning_effort="none"`."""

    format = ReasoningFormat(start="[THINK]", end="[/THINK]", start_variants=("<think>",),
                             end_variants=("</think>",), switch=("reasoning_effort",))


@ReasoningParserManager.register_module(["openai_gptoss", "gpt-oss"])
class GptOssReasoningParser(FormatReasoningParser):
    """gpt-oss (Harmony): `<|channel|>analysis<|message|>…<|end|>` messages are the thought,
    `<|start|>assistant<|channel|>final<|message|>…` the answer; always thinks
    (`reasoning_effort` low / medium / high sets how much)."""

    format = ReasoningFormat(
        start="<|channel|>analysis<|message|>", end="<|end|>",
        start_variants=("<|start|>assistant<|channel|>analysis<|message|>",),
        repeats=True, switch=(),
        answer_markers=("<|start|>assistant<|channel|>final<|message|>",
                        "<|channel|>final<|message|>", "<|return|>"))


@ReasoningParserManager.register_module("gemma4")
class Gemma4ReasoningParser(FormatReasoningParser):
    """Gemma 4: `<|channel>thought\\n…<channel|>` with `enable_thinking=True` (off by default)."""

    format = ReasoningFormat(start="<|channel>", end="<channel|>",
                             start_variants=("<|channel>thought\n", "<|channel>thought"),
                             thinks_by_default=False)


@ReasoningParserManager.register_module("granite")
class GraniteReasoningParser(FormatReasoningParser):
    """Granite 3.2: `Here is my thought process: … Here is my response: …` with `thinking=True`
    (off by default)."""

    format = ReasoningFormat(start="Here is my thought process:", end="Here is my response:",
                             start_variants=("Here's my thought process:",),
                             end_variants=("Here's my response:",), switch=("thinking",),
                             thinks_by_default=False)


@ReasoningParserManager.register_module("granite_thinking_parser")
class GraniteThinkingReasoningParser(FormatReasoningParser):
    """Granite 3.3+: `<think>…</think><response>…</response>` with `thinking=True`."""

    format = ReasoningFormat(answer_markers=("<response>", "</response>"), switch=("thinking",),
                             thinks_by_default=False)


@ReasoningParserManager.register_module("ernie45")
class Ernie45ReasoningParser(FormatReasoningParser):
    """ERNIE 4.5 Thinking: the output starts inside the thought, `</think>` ends it, and the
    answer may sit in `\\n\\n<response>\\n…\\n</response>\\n` (the wrapper and its newlines
    are markup)."""

    format = ReasoningFormat(always_opens=True, switch=(),
                             answer_markers=("<response>\n", "<response>", "\n</response>\n",
                                             "\n</response>", "</response>"))


@ReasoningParserManager.register_module(["hunyuan_a13b", "hunyuan"])
class HunyuanA13BReasoningParser(FormatReasoningParser):
    """Hunyuan-A13B: `<think>\\n…\\n</think>\\n` then `<answer>\\n…\\n</answer>` (wrapper and its
    newlines are markup)."""

    format = ReasoningFormat(answer_markers=("<answer>\n", "<answer>", "\n</answer>",
                                             "</answer>"), switch=())


@ReasoningParserManager.register_module("hy_v3")
class HYV3ReasoningParser(FormatReasoningParser):
    """Hunyuan 3: `<think>…</think>` when `reasoning_effort` is set (default "no_think")."""

    format = ReasoningFormat(switch=("reasoning_effort",), thinks_by_default=False)


@ReasoningParserManager.register_module("hy_v4")
class HYV4ReasoningParser(FormatReasoningParser):
    """Hunyuan 4: `<think>…</think>` opened in the prompt; `reasoning_effort="no_think"` is off."""

    format = ReasoningFormat(switch=("reasoning_effort",))


@ReasoningParserManager.register_module("kimi_k3")
class KimiK3ReasoningParser(FormatReasoningParser):
    """Kimi K3: `<|open|>think<|sep|>…<|close|>think<|sep|>`; the reply's response-channel
    markers are markup, and opening the response channel also ends a thought."""

    format = ReasoningFormat(start="<|open|>think<|sep|>", end="<|close|>think<|sep|>",
                             end_variants=("<|open|>response<|sep|>",), switch=THINKING_SWITCH,
                             answer_markers=("<|open|>response<|sep|>", "<|close|>response<|sep|>",
                                             "<|close|>message<|sep|>"))


@ReasoningParserManager.register_module("kimi")
class KimiReasoningParser(FormatReasoningParser):
    """Kimi k1.5: `◁think▷…◁/think▷`."""

    format = ReasoningFormat(start="◁think▷", end="◁/think▷", switch=())


@ReasoningParserManager.register_module(["cohere_command3", "cohere_command4"])
class CohereCommandReasoningParser(FormatReasoningParser):
    """Cohere Command A Reasoning / Command 4: `<|START_THINKING|>…<|END_THINKING|>`, the answer
    in `<|START_RESPONSE|>…<|END_RESPONSE|>` (or `<|START_TEXT|>…<|END_TEXT|>`), whose opening
    also ends a thought; template switch `reasoning`."""

    format = ReasoningFormat(start="<|START_THINKING|>", end="<|END_THINKING|>",
                             end_variants=("<|START_RESPONSE|>", "<|START_TEXT|>"),
                             switch=("reasoning",),
                             answer_markers=("<|START_RESPONSE|>", "<|END_RESPONSE|>",
                                             "<|START_TEXT|>", "<|END_TEXT|>"))


@ReasoningParserManager.register_module("inkling")
class InklingReasoningParser(FormatReasoningParser):
    """Inkling: `<|message_model|><|content_thinking|>…<|end_message|>` blocks are the thought;
    the text blocks' markup around the answer (`<|message_model|><|content_text|>…
    <|end_message|>`, `<|content_model_end_sampling|>`) is not content."""

    format = ReasoningFormat(start="<|content_thinking|>", end="<|end_message|>",
                             start_variants=("<|message_model|><|content_thinking|>",),
                             repeats=True, switch=(),
                             answer_markers=("<|message_model|><|content_text|>",
                                             "<|content_text|>", "<|message_model|>",
                                             "<|end_message|>", "<|content_model_end_sampling|>"))


@ReasoningParserManager.register_module("muse_glimmer")
class MuseGlimmerReasoningParser(FormatReasoningParser):
    """MuseGlimmer: messages to `self` (`to=self<|message|>…<|eom|>`) are the thought, those to
    `user` the answer."""

    format = ReasoningFormat(start="to=self<|message|>", end="<|eom|>",
                             start_variants=("<|start|>assistant to=self<|message|>",
                                             " to=self<|message|>"),
                             repeats=True, switch=(),
                             answer_markers=("<|start|>assistant to=user<|message|>",
                                             " to=user<|message|>", "to=user<|message|>",
                                             "<|eot|>"))


@ReasoningParserManager.register_module(["apertus", "apertus2509"])
class ApertusReasoningParser(FormatReasoningParser):
    """Apertus: `<|inner_prefix|>…<|inner_suffix|>`."""

    format = ReasoningFormat(start="<|inner_prefix|>", end="<|inner_suffix|>", switch=())


@ReasoningParserManager.register_module(["k2_horizon", "k2_v3"])
class K2HorizonReasoningParser(FormatReasoningParser):
    """K2 Horizon: `<ifm|think>…</ifm|think>`, the template opening the tag for the request's
    `reasoning_effort` (`<ifm|think_fast>` medium, `<ifm|think_faster>` low); any of the three
    closing tags ends the thought, as the model mixes them."""

    format = ReasoningFormat(start="<ifm|think>", end="</ifm|think>",
                             start_variants=("<ifm|think_fast>", "<ifm|think_faster>"),
                             end_variants=("</ifm|think_fast>", "</ifm|think_faster>"))
