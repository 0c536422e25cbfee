"""Model outputs for each built-in reasoning family, with the thought and answer they must give.

A case: id, output, expected `reasoning`, expected `content`, and the parser's constructor
kwargs (`prompt`: the rendered prompt, whose open thought means the output starts inside it;
`chat_template_kwargs`: the thinking switch; `interrupts`: the tool parser's call markers).
`FIXTURES` has one list per parser class (aliases share it); `FIXTURES_BY_NAME` maps every
built-in name to its class's list.

Layout the splitter drops: whitespace around a thought and between a thought and its answer, so
`<think>\\n\\n</think>\\n\\nanswer` has no thought; several thoughts (gpt-oss) join with "\\n".
"""

from dataclasses import dataclass, field

from callm.reasoning import _BUILTIN_PARSERS, ReasoningParserManager


@dataclass(frozen=True)
class Case:
    id: str
    output: str
    reasoning: str | None
    content: str | None
    kwargs: dict = field(default_factory=dict)


def case(id, output, reasoning, content, **kwargs) -> Case:
    return Case(id, output, reasoning, content, kwargs)


THOUGHT = "Let me think: 2 + 2 = 4."
ANSWER = "The answer is 4."
UNI_THOUGHT = "Réfléchissons… 東京は晴れ 🌧️ — “quotes” ∑"
UNI_ANSWER = "Ответ: 4 ✓ 👍"
CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


def family_cases(S: str, E: str, *, open_prompt: str, interrupt: str | None = None,
                 off: dict | None = None, off_prompt: str = "", on: dict | None = None,
                 always_opens: bool = False, repeats: bool = False) -> list[Case]:
    """The cases every `S…E` family shares. `open_prompt` ends inside a thought; `off` switches
    thinking off (`off_prompt`: what the template then renders); `on` is needed when the
    family thinks only when asked; `always_opens`: the output starts inside the thought;
    `repeats`: a thought may open after an answer part."""
    on = {"chat_template_kwargs": on} if on else {}
    opened = {"prompt": open_prompt, **on}
    half = E[:max(1, len(E) // 2)]
    cases = [
        case("thought_answer", f"{S}{THOUGHT}{E}{ANSWER}", THOUGHT, ANSWER, **on),
        case("layout", f"{S}\n{THOUGHT}\n{E}\n\n{ANSWER}\n", THOUGHT, ANSWER + "\n", **on),
        case("multiline", f"{S}\nStep 1: read.\n\n  Step 2: add.\n{E}\n\nLine 1.\n\nLine 2.",
             "Step 1: read.\n\n  Step 2: add.", "Line 1.\n\nLine 2.", **on),
        case("opened_in_prompt", f"{THOUGHT}\n{E}\n\n{ANSWER}", THOUGHT, ANSWER, **opened),
        case("opened_in_prompt_start_repeated", f"{S}{THOUGHT}{E}{ANSWER}", THOUGHT, ANSWER,
             **opened),
        case("opened_in_prompt_leading_space", f"\n\n{THOUGHT}{E}{ANSWER}", THOUGHT, ANSWER,
             **opened),
        case("empty_thought", f"{S}{E}{ANSWER}", None, ANSWER, **on),
        case("empty_thought_layout", f"{S}\n\n{E}\n\n{ANSWER}", None, ANSWER, **on),
        case("empty_thought_in_prompt", f"{E}\n\n{ANSWER}", None, ANSWER, **opened),
        case("cut_off", f"{S}{THOUGHT} Then", THOUGHT + " Then", None, **on),
        case("cut_off_in_prompt", f"{THOUGHT} Then", THOUGHT + " Then", None, **opened),
        case("cut_off_mid_marker", f"{S}{THOUGHT}\n{half}", f"{THOUGHT}\n{half}".rstrip(),
             None, **on),
        case("cut_off_after_marker", f"{S}{THOUGHT}{E}\n\n", THOUGHT, None, **on),
        case("only_a_start", f"{S}", None, None, **on),
        case("marker_lookalike", f"{S}a {half} b, {E[:-1]} c{E}{ANSWER}",
             f"a {half} b, {E[:-1]} c", ANSWER, **on),
        case("unicode", f"{S}{UNI_THOUGHT}{E}{UNI_ANSWER}", UNI_THOUGHT, UNI_ANSWER, **on),
        case("unicode_in_prompt", f"{UNI_THOUGHT}\n{E}\n{UNI_ANSWER}", UNI_THOUGHT, UNI_ANSWER,
             **opened),
    ]
    if always_opens:
        cases += [
            case("no_thought_is_all_thought", ANSWER, ANSWER, None),
            case("no_start_marker", f"{THOUGHT}{E}{ANSWER}", THOUGHT, ANSWER),
        ]
    else:
        cases += [
            case("no_thought", ANSWER, None, ANSWER, **on),
            case("no_thought_leading_space", f"\n {ANSWER}", None, f"\n {ANSWER}", **on),
            *([] if repeats else [case("start_marker_later_is_content", f"{ANSWER} {S}x{E}y",
                                       None, f"{ANSWER} {S}x{E}y", **on)]),
            case("closed_prompt_thought", ANSWER, None, ANSWER,
                 prompt=f"{open_prompt}{THOUGHT}{E}\n\n", **on),
        ]
    if off is not None:
        cases += [
            case("switched_off", ANSWER, None, ANSWER, chat_template_kwargs=off,
                 prompt=off_prompt),
            case("switched_off_beats_open_prompt", f"{ANSWER}", None, ANSWER,
                 chat_template_kwargs=off, prompt=open_prompt),
        ]
    if on:
        cases += [case("not_switched_on", ANSWER, None, ANSWER, prompt=open_prompt)]
    if interrupt is not None:
        call = f"{interrupt}{CALL}"
        cases += [
            case("interrupt", f"{S}I should check the weather.\n\n{call}",
                 "I should check the weather.", call, interrupts=[interrupt], **on),
            case("interrupt_in_prompt_thought", f"Checking.{call}", "Checking.", call,
                 interrupts=[interrupt], **opened),
            case("interrupt_at_thought_start", f"{S}{call}", None, call,
                 interrupts=[interrupt], **on),
            case("interrupt_after_thought", f"{S}{THOUGHT}{E}Sure.{call}", THOUGHT,
                 f"Sure.{call}", interrupts=[interrupt], **on),
            case("interrupt_not_passed", f"{S}Check {call}{E}Done.", f"Check {call}", "Done.",
                 **on),
            case("interrupt_lookalike", f"{S}a {interrupt[:-1]} b{E}{ANSWER}",
                 f"a {interrupt[:-1]} b", ANSWER, interrupts=[interrupt], **on),
        ]
    return cases


def _extra(*cases: Case) -> list[Case]:
    return list(cases)


QWEN_PROMPT = "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n<think>\n"
QWEN_OFF_PROMPT = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEEPSEEK_PROMPT = "<｜begin▁of▁sentence｜><｜User｜>What is 2 + 2?<｜Assistant｜><think>"
DEEPSEEK_OFF_PROMPT = "<｜User｜>What is 2 + 2?<｜Assistant｜></think>"
GLM_PROMPT = "[gMASK]<sop><|user|>\nWhat is 2 + 2?<|assistant|><think>"
GLM_OFF_PROMPT = "[gMASK]<sop><|user|>\nWhat is 2 + 2?/nothink<|assistant|>\n<think></think>\n"

FIXTURES: dict[str, list[Case]] = {
    "Qwen3ReasoningParser": family_cases(
        "<think>", "</think>", open_prompt=QWEN_PROMPT, interrupt="<tool_call>",
        off={"enable_thinking": False}, off_prompt=QWEN_OFF_PROMPT) + _extra(
        case("qwen3_model_writes_think", f"<think>\n{THOUGHT}\n</think>\n\n{ANSWER}", THOUGHT,
             ANSWER, prompt="<|im_start|>assistant\n"),
        case("switch_off_string", ANSWER, None, ANSWER,
             chat_template_kwargs={"enable_thinking": "false"}, prompt=QWEN_PROMPT),
        # With thinking off the template closes the thought; a thought the model writes anyway
        # is still split off, as vLLM's DeepSeek-V4 does (vLLM's Qwen3 keeps it as content).
        case("thought_despite_switch", f"<think>{THOUGHT}</think>{ANSWER}", THOUGHT, ANSWER,
             chat_template_kwargs={"enable_thinking": False}, prompt=QWEN_OFF_PROMPT),
        case("tool_call_after_layout", "<think>\nI need to read the file.\n\n</think>\n\n"
             f"<tool_call>\n{CALL}\n</tool_call>", "I need to read the file.",
             f"<tool_call>\n{CALL}\n</tool_call>", interrupts=["<tool_call>"]),
        case("history_thought_in_prompt", f"{THOUGHT}</think>{ANSWER}", THOUGHT, ANSWER,
             prompt="<|im_start|>assistant\n<think>\nold</think>old answer<|im_end|>\n"
                    "<|im_start|>assistant\n<think>\n"),
        case("stray_end_without_prompt", f"{THOUGHT}</think>{ANSWER}", None,
             f"{THOUGHT}</think>{ANSWER}"),
    ),
    "DeepSeekR1ReasoningParser": family_cases(
        "<think>", "</think>", open_prompt=DEEPSEEK_PROMPT, interrupt="<｜tool▁calls▁begin｜>",
        always_opens=True) + _extra(
        case("r1_without_start", f"{THOUGHT}\n</think>\n\n{ANSWER}", THOUGHT, ANSWER),
        case("r1_0528_with_start", f"<think>\n{THOUGHT}\n</think>\n\n{ANSWER}", THOUGHT, ANSWER),
        case("step3_second_end_is_content", f"{THOUGHT}</think>{ANSWER}</think>x", THOUGHT,
             f"{ANSWER}</think>x"),
        case("switch_ignored", f"{THOUGHT}</think>{ANSWER}", THOUGHT, ANSWER,
             chat_template_kwargs={"enable_thinking": False}),
    ),
    "DeepSeekV3ReasoningParser": family_cases(
        "<think>", "</think>", open_prompt=DEEPSEEK_PROMPT, interrupt="<｜tool▁calls▁begin｜>",
        on={"thinking": True}, off={"thinking": False}, off_prompt=DEEPSEEK_OFF_PROMPT) + _extra(
        case("enable_thinking_key", f"{THOUGHT}</think>{ANSWER}", THOUGHT, ANSWER,
             chat_template_kwargs={"enable_thinking": True}, prompt=DEEPSEEK_PROMPT),
        case("off_by_default", ANSWER, None, ANSWER, prompt=DEEPSEEK_OFF_PROMPT),
    ),
    "Holo2ReasoningParser": family_cases(
        "<think>", "</think>", open_prompt=DEEPSEEK_PROMPT, interrupt="<｜DSML｜tool_calls>",
        off={"thinking": False}, off_prompt=DEEPSEEK_OFF_PROMPT) + _extra(
        case("enable_thinking_off", ANSWER, None, ANSWER,
             chat_template_kwargs={"enable_thinking": False}, prompt=DEEPSEEK_PROMPT),
    ),
    "Glm45ReasoningParser": family_cases(
        "<think>", "</think>", open_prompt=GLM_PROMPT, interrupt="<tool_call>",
        off={"enable_thinking": False}, off_prompt=GLM_OFF_PROMPT) + _extra(
        case("thinking_key_off", ANSWER, None, ANSWER, chat_template_kwargs={"thinking": False},
             prompt=GLM_PROMPT),
        case("glm45_model_writes_empty_thought", f"<think></think>\n{ANSWER}", None, ANSWER,
             prompt="<|assistant|>"),
        case("kimi_k2_section_interrupt", "<think>some reasoning<|tool_calls_section_begin|>"
             "<|tool_call_begin|>functions.get_weather:0", "some reasoning",
             "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0",
             interrupts=["<|tool_calls_section_begin|>", "<|tool_call_begin|>"]),
        case("minimax_m2_prompt_opens", f"{THOUGHT}\n</think>\n\n{ANSWER}", THOUGHT, ANSWER,
             prompt="]~b]ai\n<think>\n"),
        case("minimax_m2_tool_interrupt", f"{THOUGHT}\n<minimax:tool_call>\n<invoke name=\"f\">",
             THOUGHT, "<minimax:tool_call>\n<invoke name=\"f\">", prompt="]~b]ai\n<think>\n",
             interrupts=["<minimax:tool_call>"]),
        case("olmo3_plain_text_markers", f"<think>{THOUGHT}</think>{ANSWER}", THOUGHT, ANSWER),
    ),
    "MiniMaxM2AppendThinkReasoningParser": [
        case("thought_answer_kept_whole", f"{THOUGHT}\n</think>\n\n{ANSWER}", None,
             f"<think>{THOUGHT}\n</think>\n\n{ANSWER}", prompt="]~b]ai\n<think>\n"),
        case("cut_off", THOUGHT, None, f"<think>{THOUGHT}"),
        case("empty_output", "", None, "<think>"),
        case("unicode", f"{UNI_THOUGHT}</think>{UNI_ANSWER}", None,
             f"<think>{UNI_THOUGHT}</think>{UNI_ANSWER}"),
        case("tool_call_kept", f"{THOUGHT}</think><minimax:tool_call>x", None,
             f"<think>{THOUGHT}</think><minimax:tool_call>x",
             interrupts=["<minimax:tool_call>"]),
    ],
    "MiniMaxM3ReasoningParser": family_cases(
        "<mm:think>", "</mm:think>", open_prompt="<assistant><mm:think>",
        interrupt="<minimax:tool_call>", on={"thinking_mode": "enabled"},
        off={"thinking_mode": "disabled"}, off_prompt="<assistant>"),
    "SeedOssReasoningParser": family_cases(
        "<seed:think>", "</seed:think>", open_prompt="<seed:bos>assistant\n<seed:think>",
        interrupt="<seed:tool_call>", off={"enable_thinking": False},
        off_prompt="<seed:bos>assistant\n") + _extra(
        case("budget_reflect_stays_in_thought",
             "<seed:think>\n<seed:cot_budget_reflect>The current thinking budget is 0, so I "
             "will directly start answering the question.</seed:cot_budget_reflect>\n"
             f"</seed:think>{ANSWER}",
             "<seed:cot_budget_reflect>The current thinking budget is 0, so I will directly "
             "start answering the question.</seed:cot_budget_reflect>", ANSWER),
        case("qwen_markers_are_text", f"<seed:think><think>x</think></seed:think>{ANSWER}",
             "<think>x</think>", ANSWER),
    ),
    "MistralReasoningParser": family_cases(
        "[THINK]", "[/THINK]", open_prompt="[INST]What is 2 + 2?[/INST][THINK]",
        interrupt="[TOOL_CALLS]", off={"reasoning_effort": "none"},
        off_prompt="[INST]What is 2 + 2?[/INST]") + _extra(
        case("v11_text_markers", f"<think>\n{THOUGHT}\n</think>\n{ANSWER}", THOUGHT, ANSWER),
        case("effort_high_is_on", f"{THOUGHT}[/THINK]{ANSWER}", THOUGHT, ANSWER,
             chat_template_kwargs={"reasoning_effort": "high"},
             prompt="[INST]What is 2 + 2?[/INST][THINK]"),
    ),
    "GptOssReasoningParser": family_cases(
        "<|channel|>analysis<|message|>", "<|end|>",
        open_prompt="<|start|>user<|message|>What is 2 + 2?<|end|><|start|>assistant"
                    "<|channel|>analysis<|message|>", repeats=True) + _extra(
        case("analysis_then_final",
             f"<|channel|>analysis<|message|>{THOUGHT}<|end|><|start|>assistant<|channel|>final"
             f"<|message|>{ANSWER}<|return|>", THOUGHT, ANSWER),
        case("repeated_analysis",
             "<|channel|>analysis<|message|>First, read.<|end|><|start|>assistant<|channel|>"
             "analysis<|message|>Then, add.<|end|><|start|>assistant<|channel|>final<|message|>"
             f"{ANSWER}<|return|>", "First, read.\nThen, add.", ANSWER),
        case("final_only", f"<|channel|>final<|message|>{ANSWER}<|return|>", None, ANSWER),
        case("header_variant",
             f"<|start|>assistant<|channel|>analysis<|message|>{THOUGHT}<|end|>"
             f"<|start|>assistant<|channel|>final<|message|>{UNI_ANSWER}", THOUGHT, UNI_ANSWER),
        case("analysis_then_tool_call",
             f"<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>"
             'commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}'
             "<|call|>", "Need weather.",
             "<|start|>assistant<|channel|>commentary to=functions.get_weather "
             '<|constrain|>json<|message|>{"city":"Paris"}<|call|>'),
        case("analysis_after_final_part",
             "<|channel|>analysis<|message|>A<|end|><|start|>assistant<|channel|>final"
             "<|message|>B<|start|>assistant<|channel|>analysis<|message|>C<|end|>"
             "<|start|>assistant<|channel|>final<|message|>D<|return|>", "A\nC", "BD"),
        case("final_cut_off", f"<|channel|>analysis<|message|>{THOUGHT}<|end|><|start|>assistant"
             "<|channel|>final<|message|>The ans", THOUGHT, "The ans"),
        case("effort_ignored", f"<|channel|>analysis<|message|>{THOUGHT}<|end|>", THOUGHT, None,
             chat_template_kwargs={"reasoning_effort": "low"}),
    ),
    "Gemma4ReasoningParser": family_cases(
        "<|channel>thought\n", "<channel|>", open_prompt="<|turn>model\n<|channel>thought\n",
        interrupt="<|tool_call>", on={"enable_thinking": True}) + _extra(
        case("label_stripped", f"<|channel>thought\n{THOUGHT}<channel|>{ANSWER}", THOUGHT,
             ANSWER, chat_template_kwargs={"enable_thinking": True}),
        case("label_without_newline", f"<|channel>thought{THOUGHT}<channel|>{ANSWER}", THOUGHT,
             ANSWER, chat_template_kwargs={"enable_thinking": True}),
        case("diverging_label_kept", f"<|channel>thousands of steps<channel|>{ANSWER}",
             "thousands of steps", ANSWER, chat_template_kwargs={"enable_thinking": True}),
        case("bare_channel", f"<|channel>{THOUGHT}<channel|>{ANSWER}", THOUGHT, ANSWER),
        case("label_only_cut_off", "<|channel>thought", None, None),
        case("tool_call_without_thought", '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}'
             "<tool_call|>", None, '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}'
             "<tool_call|>", interrupts=["<|tool_call>"]),
        case("continuation_after_tool_response", f"{THOUGHT}<channel|>{ANSWER}", THOUGHT,
             ANSWER, chat_template_kwargs={"enable_thinking": True},
             prompt="<|tool_response>response:get_weather{temp:20}<tool_response|>"
                    "<|channel>thought\n"),
    ),
    "GraniteReasoningParser": family_cases(
        "Here is my thought process:", "Here is my response:",
        open_prompt="<|start_of_role|>assistant<|end_of_role|>Here is my thought process:",
        interrupt="<|tool_call|>", on={"thinking": True}) + _extra(
        case("heres_variants", f"Here's my thought process:\n{THOUGHT}\n\nHere's my response:\n"
             f"{ANSWER}", THOUGHT, ANSWER, chat_template_kwargs={"thinking": True}),
        case("mixed_variants", f"Here is my thought process: {THOUGHT} Here's my response: "
             f"{ANSWER}", THOUGHT, ANSWER, chat_template_kwargs={"thinking": True}),
        case("heres_cut_off", f"Here's my thought process:\n{THOUGHT}\nHere's my",
             f"{THOUGHT}\nHere's my", None, chat_template_kwargs={"thinking": True}),
        case("phrase_inside_answer_is_content", f"{ANSWER} Here is my response: yes", None,
             f"{ANSWER} Here is my response: yes", chat_template_kwargs={"thinking": True}),
    ),
    "GraniteThinkingReasoningParser": family_cases(
        "<think>", "</think>", open_prompt="<|start_of_role|>assistant<|end_of_role|><think>",
        interrupt="<tool_call>", on={"thinking": True}) + _extra(
        case("response_wrapper", f"<think>{THOUGHT}</think><response>{ANSWER}</response>",
             THOUGHT, ANSWER, chat_template_kwargs={"thinking": True}),
        case("response_wrapper_cut_off", f"<think>{THOUGHT}</think>\n<response>The", THOUGHT,
             "The", chat_template_kwargs={"thinking": True}),
    ),
    "Ernie45ReasoningParser": family_cases(
        "<think>", "</think>", open_prompt="<|im_start|>assistant\n<think>\n",
        interrupt="<tool_call>", always_opens=True) + _extra(
        case("response_wrapper", "abc\n</think>\n\n<response>\ndef\n</response>\n", "abc", "def"),
        case("no_wrapper", "abc\n</think>\ndef", "abc", "def"),
        case("wrapper_multiline", "abc\n</think>\n\n<response>\nline 1\n\nline 2\n</response>\n",
             "abc", "line 1\n\nline 2"),
        case("wrapper_cut_off", "abc\n</think>\n\n<response>\nde", "abc", "de"),
        case("wrapper_without_newlines", "abc</think><response>def</response>", "abc", "def"),
        case("tool_call_after_thought", "abc\n</think>\n\n<tool_call>\n{}\n</tool_call>\n", "abc",
             "<tool_call>\n{}\n</tool_call>\n"),
    ),
    "HunyuanA13BReasoningParser": family_cases(
        "<think>", "</think>", open_prompt="<|startoftext|>What?<|extra_0|><think>",
        interrupt="<tool_calls>") + _extra(
        case("answer_wrapper", f"<think>\n{THOUGHT}\n</think>\n<answer>\n{ANSWER}\n</answer>",
             THOUGHT, ANSWER),
        case("fast_think", f"<think>\n\n</think>\n<answer>\n{ANSWER}\n</answer>", None, ANSWER),
        case("answer_cut_off", f"<think>\n{THOUGHT}\n</think>\n<answer>\nThe ans", THOUGHT,
             "The ans"),
        case("answer_multiline", "<think>\nx\n</think>\n<answer>\nline 1\n\nline 2\n</answer>",
             "x", "line 1\n\nline 2"),
        case("wrapper_without_newlines", f"<think>{THOUGHT}</think><answer>{ANSWER}</answer>",
             THOUGHT, ANSWER),
        case("tool_calls_after_thought", "<think>\nx\n</think>\n<tool_calls>[]</tool_calls>", "x",
             "<tool_calls>[]</tool_calls>"),
    ),
    "HYV3ReasoningParser": family_cases(
        "<think>", "</think>", open_prompt="<|hy_Assistant|><think>", interrupt="<tool_calls>",
        on={"reasoning_effort": "high"}, off={"reasoning_effort": "no_think"}) + _extra(
        case("no_think_by_default", ANSWER, None, ANSWER, prompt="<|hy_Assistant|><think>"),
    ),
    "HYV4ReasoningParser": family_cases(
        "<think>", "</think>", open_prompt="<|hy_Assistant|><think>", interrupt="<tool_calls>",
        off={"reasoning_effort": "no_think"}) + _extra(
        case("effort_low_still_thinks", f"{THOUGHT}</think>{ANSWER}", THOUGHT, ANSWER,
             chat_template_kwargs={"reasoning_effort": "low"}, prompt="<|hy_Assistant|><think>"),
    ),
    "KimiK3ReasoningParser": family_cases(
        "<|open|>think<|sep|>", "<|close|>think<|sep|>",
        open_prompt="<|open|>assistant<|sep|><|open|>think<|sep|>",
        interrupt="<|open|>tools<|sep|>", off={"thinking": False}) + _extra(
        case("response_channel", f"<|open|>think<|sep|>{THOUGHT}<|close|>think<|sep|>"
             f"<|open|>response<|sep|>{ANSWER}<|close|>response<|sep|><|close|>message<|sep|>",
             THOUGHT, ANSWER),
        case("response_opening_ends_thought", f"<|open|>think<|sep|>{THOUGHT}"
             f"<|open|>response<|sep|>{ANSWER}<|close|>response<|sep|>", THOUGHT, ANSWER),
        case("response_in_prompt_thought", f"{THOUGHT}<|open|>response<|sep|>{ANSWER}", THOUGHT,
             ANSWER, prompt="<|open|>think<|sep|>"),
        case("response_only", f"<|open|>response<|sep|>{UNI_ANSWER}<|close|>response<|sep|>",
             None, UNI_ANSWER),
        case("tools_after_response", f"<|open|>think<|sep|>x<|close|>think<|sep|><|open|>"
             "response<|sep|>Checking.<|close|>response<|sep|><|open|>tools<|sep|>[]", "x",
             "Checking.<|open|>tools<|sep|>[]", interrupts=["<|open|>tools<|sep|>"]),
        case("history_close_in_prompt", ANSWER, None, ANSWER,
             prompt="<|open|>think<|sep|>old<|close|>think<|sep|>old answer"),
    ),
    "KimiReasoningParser": family_cases(
        "◁think▷", "◁/think▷", open_prompt="<|im_assistant|>assistant<|im_middle|>◁think▷",
        interrupt="<|tool_calls_section_begin|>"),
    "CohereCommandReasoningParser": family_cases(
        "<|START_THINKING|>", "<|END_THINKING|>",
        open_prompt="<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|>",
        interrupt="<|START_ACTION|>", off={"reasoning": False},
        off_prompt="<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|>"
                   "<|END_THINKING|>") + _extra(
        case("command3_response", f"<|START_THINKING|>{THOUGHT}<|END_THINKING|>"
             f"<|START_RESPONSE|>{ANSWER}<|END_RESPONSE|>", THOUGHT, ANSWER),
        case("command4_text", f"<|START_THINKING|>{THOUGHT}<|END_THINKING|><|START_TEXT|>"
             f"{UNI_ANSWER}<|END_TEXT|>", THOUGHT, UNI_ANSWER),
        case("text_opening_ends_thought", f"{THOUGHT}<|START_TEXT|>{ANSWER}<|END_TEXT|>",
             THOUGHT, ANSWER, prompt="<|CHATBOT_TOKEN|><|START_THINKING|>"),
        case("response_opening_ends_thought", f"{THOUGHT}<|START_RESPONSE|>{ANSWER}",
             THOUGHT, ANSWER, prompt="<|CHATBOT_TOKEN|><|START_THINKING|>"),
        case("action_after_thought", f"<|START_THINKING|>{THOUGHT}<|END_THINKING|>"
             '<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "f", "parameters": {}}]'
             "<|END_ACTION|>", THOUGHT,
             '<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "f", "parameters": {}}]'
             "<|END_ACTION|>"),
    ),
    "InklingReasoningParser": family_cases(
        "<|message_model|><|content_thinking|>", "<|end_message|>",
        open_prompt="<|message_model|><|content_thinking|>",
        interrupt="<|content_invoke_tool_json|>", repeats=True) + _extra(
        case("text_block", f"<|message_model|><|content_thinking|>{THOUGHT}<|end_message|>"
             f"<|message_model|><|content_text|>{ANSWER}<|end_message|>"
             "<|content_model_end_sampling|>", THOUGHT, ANSWER),
        case("bare_thinking_block", f"<|content_thinking|>{THOUGHT}<|end_message|>"
             f"<|content_text|>{ANSWER}<|end_message|>", THOUGHT, ANSWER),
        case("thought_text_thought_text",
             "<|message_model|><|content_thinking|>A<|end_message|><|message_model|>"
             "<|content_text|>B<|end_message|><|message_model|><|content_thinking|>C"
             "<|end_message|><|message_model|><|content_text|>D<|end_message|>", "A\nC", "BD"),
        case("tool_block_after_thought",
             "<|message_model|><|content_thinking|>x<|end_message|><|message_model|>"
             f"<|content_invoke_tool_json|>{CALL}<|end_message|>", "x",
             f"<|content_invoke_tool_json|>{CALL}"),
    ),
    "MuseGlimmerReasoningParser": family_cases(
        "to=self<|message|>", "<|eom|>", open_prompt="<|start|>assistant to=self<|message|>",
        interrupt="<atem:function_calls>", repeats=True) + _extra(
        case("self_then_user", f"<|start|>assistant to=self<|message|>{THOUGHT}<|eom|>"
             f"<|start|>assistant to=user<|message|>{ANSWER}<|eot|>", THOUGHT, ANSWER),
        case("header_after_prompt", f" to=self<|message|>{THOUGHT}<|eom|> to=user<|message|>"
             f"{ANSWER}<|eot|>", THOUGHT, ANSWER, prompt="<|start|>assistant"),
        case("user_only", f"<|start|>assistant to=user<|message|>{UNI_ANSWER}<|eot|>", None,
             UNI_ANSWER),
        case("two_self_messages", "<|start|>assistant to=self<|message|>A<|eom|><|start|>"
             "assistant to=self<|message|>B<|eom|><|start|>assistant to=user<|message|>C<|eot|>",
             "A\nB", "C"),
    ),
    "ApertusReasoningParser": family_cases(
        "<|inner_prefix|>", "<|inner_suffix|>",
        open_prompt="<|assistant_start|><|inner_prefix|>", interrupt="<|tools_prefix|>"),
    "K2HorizonReasoningParser": family_cases(
        "<ifm|think>", "</ifm|think>", open_prompt="<|ifm|im_start|>assistant\n<ifm|think>",
        interrupt="<ifm|tool_calls>", off={"enable_thinking": False},
        off_prompt="<|ifm|im_start|>assistant\n") + _extra(
        case("fast_tag_closed_by_high_tag", f"{THOUGHT}</ifm|think>{ANSWER}", THOUGHT, ANSWER,
             prompt="<|ifm|im_start|>assistant\n<ifm|think_fast>"),
        case("faster_tags", f"<ifm|think_faster>{THOUGHT}</ifm|think_faster>{ANSWER}", THOUGHT,
             ANSWER),
    ),
}

FIXTURES_BY_NAME: dict[str, list[Case]] = {
    name: FIXTURES[ReasoningParserManager.get_reasoning_parser(name).__name__]
    for name in _BUILTIN_PARSERS
}
