"""Generates the tiny end-of-turn model and tokenizer used by the tests of
livekit-plugins-turn-detector.

The real models (Hugging Face `livekit/turn-detector`, ~100-400 MB) cannot be fetched on the
build machines, so the tests exercise the whole path (download, load, chat template, tokenize,
ONNX inference, thresholds) on files with the same names and the same model signature:

- `onnx/model_q8.onnx`: input `input_ids` int64 [1, seq], output `prob` float32 [1, seq].
  The graph is a single `Gather` from a probability table indexed by token id, so the
  probability at each position is a fixed function of that position's token. The plugin reads
  the last element, so the last word of the open user turn decides the result:
  words in LIKELY -> 0.97, words in UNLIKELY -> 0.002, anything else -> 0.4.
- `tokenizer.json`: a word-level tokenizer (lowercasing, whitespace/punctuation split) with the
  chat special tokens `<|im_start|>` and `<|im_end|>`.
- `tokenizer_config.json`: special tokens and a ChatML chat template (the format of the real
  model's Qwen-style template).
- `languages.json`: per-language `{"threshold": float}`.

The output directories are named after the pinned revisions so a test HTTP server can serve
`/livekit/turn-detector/resolve/<revision>/<path>` straight from this folder.

It also writes `bpe/tokenizer.json`, a small byte-level BPE tokenizer built like the Qwen2
family's (NFC, the look-ahead split regex, byte level), and `golden_format.json`: conversations and the text and token ids the Python
reference pipeline produces for them (message selection, normalization, merging, chat template
rendered by Jinja2 the way `transformers` does, cut at the last `<|im_end|>`, tokenization,
left truncation, with both tokenizers), written independently here from the reference's description, so the Rust
preprocessing can be checked against Python's `unicodedata`, `re`, Jinja2 and `tokenizers`.

Run (needs the PyPI packages `onnx`, `tokenizers` and `jinja2`; output is deterministic):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install onnx tokenizers jinja2
    /tmp/venv/bin/python plugins/turn-detector/testdata/generate.py
"""

import json
import os
import re
import unicodedata

import onnx
from onnx import TensorProto, helper
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))

SPECIAL = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ROLES = ["system", "user", "assistant"]
# Words after which a speaker has usually finished.
LIKELY = ["thanks", "bye", "yes", "no", "done", "please", "okay", "gracias", "merci", "danke",
          "obrigado", ".", "?", "!"]
# Words after which a speaker usually goes on.
UNLIKELY = ["and", "um", "uh", "the", "to", "but", "because", "so", "y", "et", "und", "e", "-",
            ","]
OTHER = ["i", "you", "want", "need", "book", "a", "table", "for", "two", "hello", "hi", "how",
         "can", "help", "what", "is", "my", "name", "order", "pizza", "it", "that", "'", "s",
         "don", "t", "think", "about", "moment", "hola", "quiero", "una", "mesa", "bonjour",
         "je", "veux", "hallo", "ich", "m\u00f6chte", "ol\u00e1", "quero", "\u4f60\u597d"]

P_LIKELY = 0.97
P_UNLIKELY = 0.002
P_OTHER = 0.4

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

REVISIONS = {
    # English model: English only.
    "v1.2.2-en": {"en": {"threshold": 0.0289}},
    # Multilingual model: a few languages, one with a region-specific entry so the tests can
    # check "full code first, then base language".
    "v0.4.1-intl": {
        "en": {"threshold": 0.0289},
        "es": {"threshold": 0.0153},
        "fr": {"threshold": 0.0211},
        "de": {"threshold": 0.0047},
        "pt": {"threshold": 0.0120},
        "pt-BR": {"threshold": 0.0135},
        "zh": {"threshold": 0.0600},
    },
}


def vocab() -> list[str]:
    words = SPECIAL + ROLES + LIKELY + UNLIKELY + OTHER
    assert len(words) == len(set(words)), "duplicate vocabulary entry"
    return words


def build_tokenizer(words: list[str]) -> Tokenizer:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIAL)
    return tok


def build_model(words: list[str]) -> onnx.ModelProto:
    table = []
    for w in words:
        if w in LIKELY:
            table.append(P_LIKELY)
        elif w in UNLIKELY:
            table.append(P_UNLIKELY)
        else:
            table.append(P_OTHER)
    probs = helper.make_tensor("prob_table", TensorProto.FLOAT, [len(table)], table)
    gather = helper.make_node("Gather", ["prob_table", "input_ids"], ["prob"], axis=0)
    graph = helper.make_graph(
        [gather],
        "tiny_eou",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "seq"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, "seq"])],
        initializer=[probs],
    )
    model = helper.make_model(
        graph,
        producer_name="livekit-plugins-turn-detector/testdata/generate.py",
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tokenizer_config() -> dict:
    return {
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<unk>",
        "model_max_length": 1024,
        "truncation_side": "left",
        "chat_template": CHAT_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def write_json(path: str, value: object) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False, sort_keys=True)
        f.write("\n")


# The pre-tokenizer split of Qwen2-family tokenizers (the multilingual model's base): look-ahead
# and Unicode classes, which the Rust `tokenizers` crate runs with `fancy-regex`.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

BPE_CORPUS = [
    "hello how can i help you today",
    "i want a table for two please and thanks",
    "hola quiero una mesa para dos y gracias",
    "bonjour je veux une table pour deux merci",
    "hallo ich möchte einen tisch für zwei danke",
    "你好 我想要一张两人桌 谢谢",
    "message 1 2 3 4 5 6 7 8 9 0 it's don't we'll i'm",
    "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n",
]


def build_bpe_tokenizer() -> Tokenizer:
    """A small byte-level BPE tokenizer built like Qwen2's (NFC, regex split, byte level)."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(BPE_CORPUS * 20, trainer=trainer)
    return tok


MAX_HISTORY_TURNS = 6
MAX_HISTORY_TOKENS = 128

GOLDEN_CASES = {
    "simple": [
        ("system", "You are a booking assistant."),
        ("assistant", "Hello! How can I help?"),
        ("user", "I want a table for two, please."),
    ],
    "merged_and_spanish": [
        ("assistant", "¡Hola! ¿Cómo puedo ayudarte?"),
        ("user", "Hola,   quiero una mesa"),
        ("user", "y…"),
    ],
    "unicode": [
        ("user", "ＡＢＣ ﬁne — it’s «quoted» and don't-stop\t\nnow"),
        ("assistant", "ΟΔΟΣ 你好，世界。"),
        ("user", "e.g. 3.5% (approx.) ½"),
    ],
    "emptied_turns": [
        ("assistant", "Sure."),
        ("user", "..."),
        ("user", "?"),
    ],
    "only_punctuation": [
        ("user", "?!"),
    ],
    "history_and_truncation": [
        (("user" if i % 2 == 0 else "assistant"), f"message {i}: i want a table for two and " * 4)
        for i in range(10)
    ] + [("user", "thanks")],
}


def reference_normalize(text: str) -> str:
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text.lower())
    text = "".join(
        ch for ch in text if not (unicodedata.category(ch).startswith("P") and ch not in ["'", "-"])
    )
    return re.sub(r"\s+", " ", text).strip()


def reference_format(messages, template: str, tok: Tokenizer, bpe: Tokenizer) -> dict:
    selected = [
        {"role": role, "content": content}
        for role, content in messages
        if role in ("user", "assistant") and content
    ][-MAX_HISTORY_TURNS:]
    merged = []
    last = None
    for msg in selected:
        content = reference_normalize(msg["content"])
        if last and last["role"] == msg["role"]:
            last["content"] += f" {content}"
        else:
            msg["content"] = content
            merged.append(msg)
            last = msg
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(template).render(messages=merged, add_generation_prompt=False)
    text = text[: text.rfind("<|im_end|>")]
    ids = tok.encode(text, add_special_tokens=False).ids[-MAX_HISTORY_TOKENS:]
    bpe_ids = bpe.encode(text, add_special_tokens=False).ids[-MAX_HISTORY_TOKENS:]
    return {"text": text, "input_ids": ids, "bpe_input_ids": bpe_ids}


def golden(tok: Tokenizer, bpe: Tokenizer) -> list:
    cases = []
    for name, messages in GOLDEN_CASES.items():
        out = reference_format(messages, CHAT_TEMPLATE, tok, bpe)
        cases.append(
            {
                "name": name,
                "messages": [{"role": r, "content": c} for r, c in messages],
                **out,
            }
        )
    return cases


def main() -> None:
    words = vocab()
    tok = build_tokenizer(words)
    model = build_model(words)
    for revision, languages in REVISIONS.items():
        out = os.path.join(HERE, revision)
        os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
        onnx.save(model, os.path.join(out, "onnx", "model_q8.onnx"))
        tok.save(os.path.join(out, "tokenizer.json"), pretty=True)
        write_json(os.path.join(out, "tokenizer_config.json"), tokenizer_config())
        write_json(os.path.join(out, "languages.json"), languages)
        print(f"wrote {out}")
    bpe = build_bpe_tokenizer()
    os.makedirs(os.path.join(HERE, "bpe"), exist_ok=True)
    bpe.save(os.path.join(HERE, "bpe", "tokenizer.json"))
    write_json(os.path.join(HERE, "golden_format.json"), golden(tok, bpe))
    print("wrote bpe/tokenizer.json and golden_format.json")


if __name__ == "__main__":
    main()
