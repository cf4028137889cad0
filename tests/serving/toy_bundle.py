"""A small deploy bundle with the export side's exact layout, and its numpy reference.

``make_toy_bundle(dir)`` writes ``model.onnx`` (inputs ``input_ids``/``attention_mask`` INT64
[batch, seq], output ``logits`` FP32 [batch, 11]), ``classifier.json`` and ``tokenizer.json``
(byte-level BPE, vocab ~500, trained deterministically). The graph computes, per row with
``n = sum(mask)`` real tokens (right padding):

    logits = LAST[ids[n - 1]] + sum_{t < n} MEAN[ids[t]] / n + BIAS

so a row's logits depend on its last real token (a padding bug changes them) and on every
real token. ``toy_logits`` is the same formula in float64 numpy, reading the weights back
from the graph.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from opencc_cm_contract import ATTENTION_MASK, HARM_CATEGORIES, INPUT_IDS, LOGITS

VOCAB_SIZE = 500
MAX_TOKENS = 64
PAD_TOKEN = "<|endoftext|>"
WORDS = (
    "the a model prompt escalate harm safe review cyber chemical privacy policy user "
    "assistant request answer question network password data minor hate speech self "
    "physical illegal activity information integrity manipulation sexual content weapon "
    "café naïve 中文 测试 emoji 🙂 über straße déjà vu 12 345 6789 , . ! ?"
).split()


def corpus(seed: int = 0, lines: int = 400) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15))) for _ in range(lines)]


def train_tokenizer(path: Path) -> int:
    """Train the byte-level BPE; returns the pad (= eos) token id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=[PAD_TOKEN], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.save(str(path))
    return tok.token_to_id(PAD_TOKEN)


def slow_nodes(loops_per_cell: int) -> tuple[list, list]:
    """Nodes adding ``0 * f(work)`` to the logits, where the work is ``loops_per_cell x
    sum(n_i^2)`` iterations of a 16x16 matmul (n_i = real tokens of row i): a stand-in for
    attention's quadratic cost, so long rows are slow and short ones fast (scheduling tests)."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["state_in", "W"], ["prod"]), helper.make_node("Tanh", ["prod"], ["state_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "slow_body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [16, 16])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [16, 16])],
    )
    nodes = [
        helper.make_node("Mul", ["n", "n"], ["n2"]),                                    # [B,1]
        helper.make_node("ReduceSum", ["n2"], ["work"], keepdims=0),                     # scalar
        helper.make_node("Mul", ["work", "LOOPS"], ["trips"]),
        helper.make_node("Loop", ["trips", "TRUE", "STATE0"], ["state"], body=body),
        helper.make_node("ReduceSum", ["state"], ["state_sum"], keepdims=0),
        helper.make_node("Mul", ["state_sum", "ZERO"], ["nothing"]),
        helper.make_node("Add", ["logits_fast", "nothing"], [LOGITS]),
    ]
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(np.array(loops_per_cell, np.int64), "LOOPS"),
        numpy_helper.from_array(np.array(True), "TRUE"),
        numpy_helper.from_array(rng.normal(0, 0.3, (16, 16)).astype(np.float32), "STATE0"),
        numpy_helper.from_array(rng.normal(0, 0.3, (16, 16)).astype(np.float32), "W"),
        numpy_helper.from_array(np.array(0.0, np.float32), "ZERO"),
    ]
    return nodes, inits


def build_graph(vocab: int, labels: int, seed: int = 0, loops_per_cell: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    last = rng.normal(0.0, 1.5, (vocab, labels)).astype(np.float32)
    mean = rng.normal(0.0, 1.5, (vocab, labels)).astype(np.float32)
    bias = rng.normal(0.0, 0.5, (labels,)).astype(np.float32)
    nodes = [
        helper.make_node("ReduceSum", [ATTENTION_MASK, "axis1"], ["n"], keepdims=1),    # [B,1]
        helper.make_node("Sub", ["n", "one"], ["last_pos"]),                           # [B,1]
        helper.make_node("GatherElements", [INPUT_IDS, "last_pos"], ["last_id"], axis=1),
        helper.make_node("Squeeze", ["last_id", "axis1"], ["last_id_1d"]),             # [B]
        helper.make_node("Gather", ["LAST", "last_id_1d"], ["last_term"], axis=0),     # [B,L]
        helper.make_node("Gather", ["MEAN", INPUT_IDS], ["tok_emb"], axis=0),          # [B,S,L]
        helper.make_node("Cast", [ATTENTION_MASK], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["maskf3"]),                 # [B,S,1]
        helper.make_node("Mul", ["tok_emb", "maskf3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),    # [B,L]
        helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["summed", "nf"], ["mean_term"]),
        helper.make_node("Add", ["last_term", "mean_term"], ["pre"]),
        helper.make_node("Add", ["pre", "BIAS"], ["logits_fast" if loops_per_cell else LOGITS]),
    ]
    inits = [
        numpy_helper.from_array(last, "LAST"), numpy_helper.from_array(mean, "MEAN"),
        numpy_helper.from_array(bias, "BIAS"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
    ]
    if loops_per_cell:
        extra_nodes, extra_inits = slow_nodes(loops_per_cell)
        nodes += extra_nodes
        inits += extra_inits
    graph = helper.make_graph(
        nodes, "toy_classifier",
        [helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", labels])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def make_toy_bundle(folder: str | Path, seed: int = 0, loops_per_cell: int = 0) -> Path:
    """``loops_per_cell`` > 0: the same logits, computed slowly (quadratic in each row's length)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pad_id = train_tokenizer(folder / "tokenizer.json")
    labels = list(HARM_CATEGORIES)
    onnx.save(build_graph(VOCAB_SIZE, len(labels), seed, loops_per_cell), str(folder / "model.onnx"))
    rng = np.random.default_rng(seed + 1)
    thresholds = {label: round(float(t), 4) for label, t in zip(labels, rng.uniform(0.3, 0.8, len(labels)))}
    spec = {
        "labels": labels, "thresholds": thresholds, "objective": "multilabel", "num_labels": len(labels),
        "vocab_size": VOCAB_SIZE, "pad_token_id": pad_id, "max_tokens": MAX_TOKENS,
        "base_model": "toy", "checkpoint": "toy", "precision": "fp32",
        "parity": {"passed": True, "note": "toy graph: its reference is toy_logits()"},
    }
    (folder / "classifier.json").write_text(json.dumps(spec, indent=2, ensure_ascii=False), encoding="utf-8")
    return folder


def toy_logits(bundle: str | Path, rows: list[list[int]]) -> np.ndarray:
    """Reference logits [len(rows), labels] of unpadded token rows, float64."""
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(Path(bundle) / "model.onnx")).graph.initializer}
    last, mean, bias = (weights[k].astype(np.float64) for k in ("LAST", "MEAN", "BIAS"))
    return np.stack([last[row[-1]] + mean[row].mean(axis=0) + bias for row in rows])
