"""The demo classifier: the TACTIC recipe in miniature, trained on CPU in one to two minutes.

``train_demo_checkpoint(out)`` writes the same two folders as the random-weight checkpoints
(``out/base-model`` saved like ``Qwen/Qwen3.5-0.8B``, ``out/classifier`` in the published
TACTIC layout), plus ``out/data/{train,validation,test}.jsonl``, the labeled splits of
:mod:`.demo_corpus` (``opencc-cm eval out/data/test.jsonl`` prints the model card's table).

1. Base: the tiny Qwen3.5 text model (both layer types, the real 248,320-token vocabulary) has
   no pretraining to lean on, so it is trained here on the training split: first the embedding
   rows of the tokens the corpus uses, as a bag of words; then every other weight with a linear
   head (BCE over 11 sigmoids at the last real token). It is saved as the base model (bf16, the
   multimodal layout) and stands in for Qwen3.5-0.8B.
2. Adapter: LoRA over that base (reloaded from the saved bf16 weights, as the reference loads
   it) and the linear head, trained with BCE on the same split.
3. Thresholds, per category, calibrated on the validation split the recall-leaning way the
   model card describes: the highest threshold (2 decimals) that keeps the category's recall
   on validation at or above ``target_recall``.

Deterministic: seeded, one CPU thread (also the fastest on a shared two-core machine),
``torch.use_deterministic_algorithms``. Everything it produces is a tiny stand-in on synthetic
data; its scores say nothing about ``opencc-cm-escalation``.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from opencc_cm_contract import HARM_CATEGORIES

from . import demo_corpus
from .qwen_tokenizer import EOS_TOKEN, save_qwen_tokenizer
from .synthetic_checkpoint import (LORA_TARGETS, MINIMAL_VISION_CONFIG, PUBLISHED_BASE_MODEL, TINY_TEXT_CONFIG,
                                   checkpoint_paths)

THRESHOLD_ALIAS = {"Information Integrity": "Integrity & Quality violations"}  # the sidecar's published name


@dataclass(frozen=True)
class DemoTraining:
    """Hyper-parameters of the demo run (recorded in ``train_config.json``)."""

    seed: int = 2026
    threads: int = 1
    batch_size: int = 32
    base_epochs: int = 4
    base_lr: float = 3e-3
    adapter_epochs: int = 2
    adapter_lr: float = 2e-3
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_recall: float = 0.95
    weight_decay: float = 0.01
    token_dropout: float = 0.1
    embedding_epochs: int = 3
    embedding_lr: float = 3e-2
    max_train_samples: int | None = None  # None: the whole train split (fewer: quick runs in tests)


def save_demo_tokenizer(folder: Path) -> None:
    """The tokenizer the demo checkpoint ships: Qwen3.5's, as the other generated checkpoints."""
    save_qwen_tokenizer(folder)


@contextlib.contextmanager
def _deterministic(threads: int):
    """Fixed thread count and deterministic kernels for the block; the caller's settings after."""
    import torch

    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def _targets(samples):
    import torch

    index = {c: i for i, c in enumerate(HARM_CATEGORIES)}
    y = torch.zeros(len(samples), len(HARM_CATEGORIES))
    for row, s in enumerate(samples):
        if s.harmful:
            y[row, index[s.category]] = 1.0
    return y


def _pad(rows: list[list[int]], pad_id: int):
    """Right padding, as the reference tokenizer call does."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


def _drop_tokens(ids: list[int], rate: float, rng: random.Random) -> list[int]:
    """Each token left out with probability ``rate`` (at least one kept): the model cannot lean on
    one exact wording, so new wordings of a request score like the ones it trained on."""
    kept = [t for t in ids if rng.random() >= rate]
    return kept or ids[-1:]


def _loss(text_model, head, ids, mask, targets):
    """BCE of the head on the final-norm hidden state at the last real token (the reference's pooling)."""
    import torch.nn.functional as F

    from .reference import last_token_pool

    hidden = text_model(input_ids=ids, attention_mask=mask).last_hidden_state
    return F.binary_cross_entropy_with_logits(head(last_token_pool(hidden, mask)), targets)


def _fit_token_embeddings(embedding, encoded, targets, *, cfg, progress):
    """Word vectors first: the rows of the tokens the corpus uses, trained as a bag of words (mean
    over the prompt, a linear head, BCE) at a high rate, then written into the embedding. From
    random rows the transformer hardly moves the rare rows that carry the meaning; from these it
    learns in a few epochs."""
    import torch
    import torch.nn.functional as F

    used = sorted({t for row in encoded for t in row})
    local = {t: i for i, t in enumerate(used)}
    table = torch.nn.Parameter(embedding.weight.detach()[used].clone())
    head = torch.nn.Linear(table.shape[1], targets.shape[1])
    optimizer = torch.optim.Adam([table, *head.parameters()], lr=cfg.embedding_lr)
    order = random.Random(cfg.seed - 1)
    for epoch in range(cfg.embedding_epochs):
        perm = list(range(len(encoded)))
        order.shuffle(perm)
        total = 0.0
        for b in range(0, len(perm), cfg.batch_size):
            rows = perm[b:b + cfg.batch_size]
            ids, mask = _pad([[local[t] for t in encoded[r]] for r in rows], 0)
            pooled = (table[ids] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            loss = F.binary_cross_entropy_with_logits(head(pooled), targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        progress(f"[demo] word vectors epoch {epoch + 1}/{cfg.embedding_epochs}: BCE {total / len(encoded):.4f}")
    with torch.no_grad():
        embedding.weight[used] = table.detach()


def _fit(text_model, head, params, encoded, targets, *, epochs, lr, cfg, seed, pad_id, progress, what):
    """AdamW + BCE over shuffled batches with token dropout (one generator: same every run)."""
    import torch

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    batches_per_epoch = math.ceil(len(encoded) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * batches_per_epoch,
                                                   pct_start=0.1)
    order = random.Random(seed)
    text_model.train()
    head.train()
    for epoch in range(epochs):
        perm = list(range(len(encoded)))
        order.shuffle(perm)
        total = 0.0
        for b in range(batches_per_epoch):
            rows = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            ids, mask = _pad([_drop_tokens(encoded[r], cfg.token_dropout, order) for r in rows], pad_id)
            loss = _loss(text_model, head, ids, mask, targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(rows)
        progress(f"[demo] {what} epoch {epoch + 1}/{epochs}: loss {total / len(encoded):.4f}")
    text_model.eval()
    head.eval()


def calibrate_thresholds(scores, categories, target_recall: float) -> dict[str, float]:
    """Per category, the highest threshold on a 0.01 grid at which at least ``target_recall`` of
    that category's samples still fire their own label (``score >= threshold``); kept within
    [0.01, 0.99] so that no label fires on everything or on nothing but saturated scores."""
    import numpy as np

    thresholds = {}
    cats = np.asarray(categories)
    for j, label in enumerate(HARM_CATEGORIES):
        own = np.sort(scores[cats == label, j].astype(np.float64))[::-1]
        if not len(own):
            raise ValueError(f"no validation samples of {label!r} to calibrate its threshold")
        kth = own[min(len(own), math.ceil(target_recall * len(own))) - 1]
        thresholds[label] = min(0.99, max(0.01, math.floor(kth * 100) / 100))
    return thresholds


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def train_demo_checkpoint(out: Path, cfg: DemoTraining = DemoTraining(), *, progress=print) -> dict[str, Path]:
    """Train and write ``out/base-model``, ``out/classifier`` and ``out/data``; return the paths."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoTokenizer, Qwen3_5Config, Qwen3_5ForCausalLM,
                              Qwen3_5ForConditionalGeneration)

    started = time.perf_counter()
    out = Path(out)
    base_dir, clf_dir = checkpoint_paths(out).values()
    data_dir = out / "data"
    for d in (base_dir, clf_dir, data_dir):
        d.mkdir(parents=True, exist_ok=True)

    train, validation, test = (demo_corpus.split(name) for name in demo_corpus.SPLITS)
    if cfg.max_train_samples is not None:
        train = random.Random(cfg.seed).sample(train, min(cfg.max_train_samples, len(train)))
    for name, samples in zip(demo_corpus.SPLITS, (train, validation, test)):
        demo_corpus.write_jsonl(samples, data_dir / f"{name}.jsonl")
    progress(f"[demo] corpus: {len(train)} train / {len(validation)} validation / {len(test)} test samples "
             f"in {data_dir}")

    save_demo_tokenizer(base_dir)
    save_demo_tokenizer(clf_dir)
    tokenizer = AutoTokenizer.from_pretrained(clf_dir)  # the checkpoint's own, as the reference loads it
    pad_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    encoded = [tokenizer(s.text, add_special_tokens=False)["input_ids"] for s in train]
    targets = _targets(train)
    text_config = dict(TINY_TEXT_CONFIG)
    hidden = text_config["hidden_size"]

    with _deterministic(cfg.threads):
        torch.manual_seed(cfg.seed)
        vision = dict(MINIMAL_VISION_CONFIG, out_hidden_size=hidden)
        config = Qwen3_5Config(text_config=text_config, vision_config=vision,
                               tie_word_embeddings=text_config["tie_word_embeddings"])
        full = Qwen3_5ForConditionalGeneration(config)
        text_model = full.model.language_model
        head = torch.nn.Linear(hidden, len(HARM_CATEGORIES))
        _fit_token_embeddings(text_model.embed_tokens, encoded, targets, cfg=cfg, progress=progress)
        progress(f"[demo] base: training the tiny Qwen3.5 text model with a head ({cfg.base_epochs} epochs)")
        text_model.embed_tokens.weight.requires_grad_(False)  # the word vectors stay as trained
        body = [p for p in text_model.parameters() if p.requires_grad]
        _fit(text_model, head, body + list(head.parameters()), encoded, targets,
             epochs=cfg.base_epochs, lr=cfg.base_lr, cfg=cfg, seed=cfg.seed, pad_id=pad_id,
             progress=progress, what="base")
        full.to(torch.bfloat16).save_pretrained(base_dir)
        del full, text_model

        progress(f"[demo] adapter: LoRA r={cfg.lora_r} + head over the saved base ({cfg.adapter_epochs} epochs)")
        torch.manual_seed(cfg.seed + 1)
        base = Qwen3_5ForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=LORA_TARGETS, bias="none", task_type="CAUSAL_LM")
        model = get_peft_model(base, lora)
        adapter_params = [p for n, p in model.named_parameters() if "lora_" in n]
        _fit(model.base_model.model.model, head, adapter_params + list(head.parameters()), encoded, targets,
             epochs=cfg.adapter_epochs, lr=cfg.adapter_lr, cfg=cfg, seed=cfg.seed + 1, pad_id=pad_id,
             progress=progress, what="adapter")
        model.peft_config["default"].base_model_name_or_path = PUBLISHED_BASE_MODEL
        model.save_pretrained(clf_dir, save_embedding_layers=False)
        torch.save({k: v.detach().clone() for k, v in head.state_dict().items()}, clf_dir / "classification_head.pt")
        del model, base

    _write_json(clf_dir / "train_config.json", {
        "model_name": PUBLISHED_BASE_MODEL, "objective": "multilabel", "num_labels": len(HARM_CATEGORIES),
        "lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha, "lora_dropout": cfg.lora_dropout,
        "lora_target_modules": LORA_TARGETS,
        "demo": dict(asdict(cfg), note="tiny stand-in trained on the synthetic demo corpus; not opencc-cm-escalation",
                     train_samples=len(train), validation_samples=len(validation), test_samples=len(test)),
    })
    _write_json(clf_dir / "weight_frame.json", {"classifier": {
        "base_model": PUBLISHED_BASE_MODEL, "objective": "multilabel", "taxonomy": list(HARM_CATEGORIES),
        "head_filename": "classification_head.pt", "thresholds": None}})

    from .reference import ReferenceClassifier

    ref = ReferenceClassifier.load(clf_dir, base_model=base_dir, dtype=torch.float32, require_thresholds=False)
    with _deterministic(cfg.threads):
        scores = ref.scores([s.text for s in validation])
    thresholds = calibrate_thresholds(scores, [s.category for s in validation], cfg.target_recall)
    _write_json(clf_dir / "thresholds.json",
                {"thresholds": {THRESHOLD_ALIAS.get(k, k): v for k, v in thresholds.items()}})
    progress(f"[demo] thresholds (validation recall >= {cfg.target_recall}): "
             + ", ".join(f"{k} {v:.2f}" for k, v in thresholds.items()))
    progress(f"[demo] trained and written to {out} in {time.perf_counter() - started:.0f} s")
    return {"base_model": base_dir, "classifier": clf_dir, "data": data_dir}
