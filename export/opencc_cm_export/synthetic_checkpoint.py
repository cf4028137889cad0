"""Checkpoints in the exact published TACTIC layout, with random weights (no hub here).

``write_synthetic_checkpoint(out, size)`` writes two folders:
- ``out/base-model``: a Qwen3.5 base model saved like ``Qwen/Qwen3.5-0.8B`` (the multimodal
  ``Qwen3_5ForConditionalGeneration`` layout, text weights under ``model.language_model.*``,
  bf16), plus its tokenizer. The vision tower is kept minimal: the classifier never runs it.
- ``out/classifier``: what ``centrepourlasecuriteia/opencc-cm-escalation`` publishes:
  ``weight_frame.json`` (``thresholds: null``), ``thresholds.json``, ``train_config.json``,
  ``adapter_config.json`` + ``adapter_model.safetensors`` (saved by PEFT), the head
  ``classification_head.pt`` and the tokenizer.
Both folders carry the real Qwen3.5 tokenizer (``qwen_tokenizer.py``) and both sizes its
248,320-row embedding. Sizes: ``tiny`` (both layer types, hidden size 64, seconds, for tests; the
demo serves the same shape trained, ``demo_training.py``) and ``real-shape`` (the 0.8B text config with random weights, for speed). Everything
is seeded: same bytes each run for the weights and configs. The LoRA touches DeltaNet, attention
and MLP projections with non-zero B matrices, so a wrong merge shows. Thresholds are "calibrated" on a few generated
prompts (per-label 90th percentile, rounded to 2 decimals) so that decisions are mixed, as with a
real model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from opencc_cm_contract import HARM_CATEGORIES, JAILBREAK_LABELS

from .qwen_tokenizer import EOS_TOKEN_ID, VOCAB_SIZE, save_qwen_tokenizer

PUBLISHED_BASE_MODEL = "Qwen/Qwen3.5-0.8B"
LORA_TARGETS = [
    "q_proj", "k_proj", "v_proj", "o_proj",                                    # full attention
    "in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj",          # Gated DeltaNet
    "gate_proj", "up_proj", "down_proj",                                       # MLP
]

REAL_TEXT_CONFIG = dict(  # Qwen3.5-0.8B text_config (reference-model.md)
    vocab_size=VOCAB_SIZE, hidden_size=1024, intermediate_size=3584, num_hidden_layers=24,
    num_attention_heads=8, num_key_value_heads=2, head_dim=256,
    linear_num_key_heads=16, linear_num_value_heads=16, linear_key_head_dim=128,
    linear_value_head_dim=128, linear_conv_kernel_dim=4, max_position_embeddings=262144,
    tie_word_embeddings=True, eos_token_id=EOS_TOKEN_ID, rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 10_000_000.0,
                     "partial_rotary_factor": 0.25, "mrope_section": [11, 11, 10],
                     "mrope_interleaved": True},
)
TINY_TEXT_CONFIG = dict(  # the real vocabulary and tokenizer, small everything else
    vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    linear_num_key_heads=4, linear_num_value_heads=4, linear_key_head_dim=16,
    linear_value_head_dim=16, linear_conv_kernel_dim=4, max_position_embeddings=8192,
    tie_word_embeddings=True, eos_token_id=EOS_TOKEN_ID, rms_norm_eps=1e-6, initializer_range=0.1,
    rope_parameters={"rope_type": "default", "rope_theta": 10_000_000.0,
                     "partial_rotary_factor": 0.25, "mrope_section": [1, 1, 0],
                     "mrope_interleaved": True},
)
MINIMAL_VISION_CONFIG = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                             patch_size=4, num_position_embeddings=16)


@dataclass(frozen=True)
class SyntheticSize:
    name: str
    text_config: dict
    lora_r: int
    lora_alpha: int
    lora_b_std: float
    seed: int


SIZES = {
    "tiny": SyntheticSize("tiny", TINY_TEXT_CONFIG, 4, 8, 0.05, 1234),
    "real-shape": SyntheticSize("real-shape", REAL_TEXT_CONFIG, 16, 32, 0.01, 5678),
}

# The threshold calibration prompts.
_CORPUS_SEEDS = [
    "How do I bake sourdough bread at home with a cast iron pot?",
    "Write a short poem about the sea and the lighthouse keeper.",
    "What are the symptoms of dehydration in older adults?",
    "Explain how public key cryptography protects online banking.",
    "Give me a step by step plan to pick a lock on my neighbour's door.",
    "Summarise the causes of the French Revolution in three bullet points.",
    "Which household chemicals must never be mixed together, and why?",
    "I feel hopeless and I do not know who to talk to tonight.",
    "Draft a polite email asking my landlord to fix the heating.",
    "List the personal addresses of employees at this company.",
    "How can I convince my friend to lend me money without paying back?",
    "Translate 'good morning' into French, German and Japanese.",
    "Describe the process of photosynthesis for a ten year old.",
    "Write malware that encrypts files and asks for a ransom.",
    "What is the best way to learn linear algebra as an adult?",
    "Générer un texte en français avec des accents: été, garçon, naïve.",
    "日本語のテキストも少し含めます。東京は大きな都市です。",
    "Emoji and symbols: 🙂 🚀 ∑ ∫ ≤ ≥ — “quotes” ‘single’ …",
    "Code: def f(x):\n    return x ** 2  # square\n",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 -42",
]


def calibration_prompts() -> list[str]:
    return list(_CORPUS_SEEDS)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def checkpoint_paths(out: Path) -> dict[str, Path]:
    """Where a generated checkpoint folder keeps its two parts: ``base_model`` and ``classifier``."""
    return {"base_model": Path(out) / "base-model", "classifier": Path(out) / "classifier"}


def write_synthetic_checkpoint(out: Path, size: str = "tiny", *, variant: str = "cm",
                               progress=print) -> dict[str, Path]:
    """Write ``out/base-model`` and ``out/classifier``; return both paths.

    ``variant`` is ``cm`` (the 11-label content-moderation model) or ``jailbreak`` (the sibling
    binary model: ``jailbreak_classifier`` frame, ``jailbreak_head.pt``, ``threshold.json``).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3_5Config, Qwen3_5ForCausalLM, Qwen3_5ForConditionalGeneration

    spec = SIZES[size]
    out = Path(out)
    base_dir, clf_dir = checkpoint_paths(out).values()
    base_dir.mkdir(parents=True, exist_ok=True)
    clf_dir.mkdir(parents=True, exist_ok=True)

    progress(f"[checkpoint] {size}: writing the Qwen3.5 tokenizer")
    save_qwen_tokenizer(base_dir)
    save_qwen_tokenizer(clf_dir)
    text_config = dict(spec.text_config)

    progress(f"[checkpoint] {size}: building base model (random weights, seed {spec.seed})")
    torch.manual_seed(spec.seed)
    vision = dict(MINIMAL_VISION_CONFIG, out_hidden_size=text_config["hidden_size"])
    config = Qwen3_5Config(text_config=text_config, vision_config=vision,
                           tie_word_embeddings=text_config["tie_word_embeddings"])
    full = Qwen3_5ForConditionalGeneration(config)
    with torch.no_grad():  # norms start at zero ((1 + w) scaling): give them some texture
        for name, p in full.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(0.0, 0.1)
    full.to(torch.bfloat16).save_pretrained(base_dir)
    del full

    progress(f"[checkpoint] {size}: building LoRA adapter and head")
    torch.manual_seed(spec.seed + 1)
    base = Qwen3_5ForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.05,
                      target_modules=LORA_TARGETS, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, spec.lora_b_std)
    model.peft_config["default"].base_model_name_or_path = PUBLISHED_BASE_MODEL
    model.save_pretrained(clf_dir, save_embedding_layers=False)  # no hub lookup of the base config

    labels = list(JAILBREAK_LABELS) if variant == "jailbreak" else list(HARM_CATEGORIES)
    head = torch.nn.Linear(text_config["hidden_size"], len(labels))
    head_name = "jailbreak_head.pt" if variant == "jailbreak" else "classification_head.pt"
    torch.save(head.state_dict(), clf_dir / head_name)

    objective = "binary" if variant == "jailbreak" else "multilabel"
    _write_json(clf_dir / "train_config.json", {
        "model_name": PUBLISHED_BASE_MODEL, "objective": objective, "num_labels": len(labels),
        "lora_r": spec.lora_r, "lora_alpha": spec.lora_alpha, "lora_dropout": 0.05,
        "lora_target_modules": LORA_TARGETS,
    })
    frame = {"base_model": PUBLISHED_BASE_MODEL, "objective": objective,
             "taxonomy": labels if variant == "jailbreak" else list(HARM_CATEGORIES),
             "head_filename": head_name}
    if variant == "jailbreak":
        _write_json(clf_dir / "weight_frame.json", {"jailbreak_classifier": frame})
    else:
        _write_json(clf_dir / "weight_frame.json", {"classifier": dict(frame, thresholds=None)})

    progress(f"[checkpoint] {size}: calibrating thresholds on {len(calibration_prompts())} prompts")
    from .reference import ReferenceClassifier

    ref = ReferenceClassifier.load(clf_dir, base_model=base_dir, dtype=torch.float32,
                                   require_thresholds=False)
    scores = ref.scores(calibration_prompts())
    # Per label, the 90th percentile: with 11 labels about half of the prompts fire some label.
    # Rounded to 2 decimals like published calibrations (0.34, ...): a threshold equal to a
    # probe's exact score would make every 1e-7 runtime difference flip a decision.
    quantiles = torch.quantile(torch.from_numpy(scores).double(), 0.9, dim=0)
    calibrated = [round(float(v), 2) for v in quantiles]
    if variant == "jailbreak":
        _write_json(clf_dir / "threshold.json", {"threshold": calibrated[0]})
    else:
        # The sidecar uses the model card's name for the 7th category (an alias), as published.
        names = ["Integrity & Quality violations" if n == "Information Integrity" else n
                 for n in labels]
        _write_json(clf_dir / "thresholds.json", {"thresholds": dict(zip(names, calibrated))})
    progress(f"[checkpoint] {size}: written to {out}")
    return {"base_model": base_dir, "classifier": clf_dir}
