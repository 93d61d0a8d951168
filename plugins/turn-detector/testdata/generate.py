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

Run (needs the PyPI packages `onnx` and `tokenizers`; output is deterministic):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install onnx tokenizers
    /tmp/venv/bin/python plugins/turn-detector/testdata/generate.py
"""

import json
import os

import onnx
from onnx import TensorProto, helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

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


if __name__ == "__main__":
    main()
