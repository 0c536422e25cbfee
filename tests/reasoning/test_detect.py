"""`--reasoning-parser auto`: the family is read from hand-written templates of each kind (the
generation prompt opening the thought, thoughts kept in history, only an end marker), and a
template with no thought markers is an error naming the families tried."""

import pytest

from callm.model_files import load_tokenizer
from callm.reasoning.detect import detect_reasoning_parser, resolve_reasoning_parser

LOOP = "{% for m in messages %}"
TEMPLATES = {
    # the generation prompt opens the thought; history thoughts rendered
    "qwen3": LOOP + "<|im_start|>{{ m.role }}\n{% if m.reasoning_content %}<think>\n"
             "{{ m.reasoning_content }}\n</think>\n\n{% endif %}{{ m.content }}<|im_end|>\n"
             "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}",
    # only the end marker, to strip thoughts from history: the output starts inside one
    "deepseek_r1": LOOP + "{% if m.role == 'user' %}<｜User｜>{{ m.content }}{% else %}"
                   "{{ m.content.split('</think>')[-1] }}{% endif %}{% endfor %}"
                   "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}",
    "seed_oss": LOOP + "<seed:bos>{{ m.role }}\n{% if m.reasoning_content %}<seed:think>"
                "{{ m.reasoning_content }}</seed:think>{% endif %}{{ m.content }}<seed:eos>"
                "{% endfor %}{% if add_generation_prompt %}<seed:bos>assistant\n{% endif %}",
    "mistral": LOOP + "{% if m.role == 'user' %}[INST]{{ m.content }}[/INST]{% else %}"
               "{% if m.reasoning_content %}[THINK]{{ m.reasoning_content }}[/THINK]{% endif %}"
               "{{ m.content }}</s>{% endif %}{% endfor %}",
    "minimax_m3": LOOP + "{{ m.role }}: {% if m.reasoning_content %}<mm:think>"
                  "{{ m.reasoning_content }}</mm:think>{% endif %}{{ m.content }}\n{% endfor %}"
                  "{% if add_generation_prompt %}assistant: <mm:think>{% endif %}",
    "cohere_command3": LOOP + "<|START_OF_TURN_TOKEN|>{{ m.role }}{% if m.reasoning_content %}"
                       "<|START_THINKING|>{{ m.reasoning_content }}<|END_THINKING|>{% endif %}"
                       "<|START_RESPONSE|>{{ m.content }}<|END_RESPONSE|>{% endfor %}",
}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2-135m-instruct")


@pytest.mark.parametrize("expected", sorted(TEMPLATES))
def test_detects_the_family(tokenizer, expected):
    assert detect_reasoning_parser(tokenizer, TEMPLATES[expected]) == expected


def test_a_template_without_thoughts_is_a_clear_error(tokenizer):
    plain = LOOP + "{{ m.role }}: {{ m.content }}\n{% endfor %}"
    with pytest.raises(ValueError, match="no thought markers.*qwen3.*mistral"):
        detect_reasoning_parser(tokenizer, plain)


def test_named_parsers_pass_through(tokenizer):
    assert resolve_reasoning_parser("glm45", tokenizer, None) == "glm45"
    assert resolve_reasoning_parser(None, tokenizer, None) is None
    assert resolve_reasoning_parser("auto", tokenizer, TEMPLATES["qwen3"]) == "qwen3"
