"""Reasoning parsers: a thinking model's output -> thought (`reasoning`) and answer (`content`),
one declarative `ReasoningFormat` per family (see `formats.py`, `families.py`).

Built-in parsers register lazily: importing this package imports none of them.
"""

from callm.reasoning.abstract_reasoning_parser import (FormatReasoningParser, ReasoningParser,
                                                        ReasoningParserManager)
from callm.reasoning.formats import ReasoningFormat

__all__ = ["FormatReasoningParser", "ReasoningFormat", "ReasoningParser",
           "ReasoningParserManager"]

_BUILTIN_PARSERS = {  # name -> "module:Class", kept equal to the modules' register_module calls
    "qwen3": "families:Qwen3ReasoningParser",
    "mimo": "families:Qwen3ReasoningParser",
    "nemotron_v3": "families:Qwen3ReasoningParser",
    "interns1": "families:Qwen3ReasoningParser",
    "nemotron_3": "families:Qwen3ReasoningParser",
    "deepseek_r1": "families:DeepSeekR1ReasoningParser",
    "deepseek-r1": "families:DeepSeekR1ReasoningParser",
    "step3": "families:DeepSeekR1ReasoningParser",
    "step3p5": "families:DeepSeekR1ReasoningParser",
    "qwen3-thinking": "families:DeepSeekR1ReasoningParser",
    "deepseek_v3": "families:DeepSeekV3ReasoningParser",
    "deepseek-v3": "families:DeepSeekV3ReasoningParser",
    "poolside_v1": "families:DeepSeekV3ReasoningParser",
    "holo2": "families:Holo2ReasoningParser",
    "deepseek_v4": "families:Holo2ReasoningParser",
    "deepseek-v4": "families:Holo2ReasoningParser",
    "glm45": "families:Glm45ReasoningParser",
    "glm47": "families:Glm45ReasoningParser",
    "ling3": "families:Glm45ReasoningParser",
    "kimi_k2": "families:Glm45ReasoningParser",
    "minimax_m2": "families:Glm45ReasoningParser",
    "minimax": "families:Glm45ReasoningParser",
    "olmo3": "families:Glm45ReasoningParser",
    "minimax_m2_append_think": "families:MiniMaxM2AppendThinkReasoningParser",
    "minimax-append-think": "families:MiniMaxM2AppendThinkReasoningParser",
    "minimax_m3": "families:MiniMaxM3ReasoningParser",
    "minimax-m3": "families:MiniMaxM3ReasoningParser",
    "seed_oss": "families:SeedOssReasoningParser",
    "mistral": "families:MistralReasoningParser",
    "openai_gptoss": "families:GptOssReasoningParser",
    "gpt-oss": "families:GptOssReasoningParser",
    "gemma4": "families:Gemma4ReasoningParser",
    "granite": "families:GraniteReasoningParser",
    "granite_thinking_parser": "families:GraniteThinkingReasoningParser",
    "ernie45": "families:Ernie45ReasoningParser",
    "hunyuan_a13b": "families:HunyuanA13BReasoningParser",
    "hunyuan": "families:HunyuanA13BReasoningParser",
    "hy_v3": "families:HYV3ReasoningParser",
    "hy_v4": "families:HYV4ReasoningParser",
    "kimi_k3": "families:KimiK3ReasoningParser",
    "kimi": "families:KimiReasoningParser",
    "cohere_command3": "families:CohereCommandReasoningParser",
    "cohere_command4": "families:CohereCommandReasoningParser",
    "inkling": "families:InklingReasoningParser",
    "muse_glimmer": "families:MuseGlimmerReasoningParser",
    "apertus": "families:ApertusReasoningParser",
    "apertus2509": "families:ApertusReasoningParser",
    "k2_horizon": "families:K2HorizonReasoningParser",
    "k2_v3": "families:K2HorizonReasoningParser",
}

for _name, _target in _BUILTIN_PARSERS.items():
    ReasoningParserManager.register_lazy_module(_name, f"{__name__}.{_target}")
