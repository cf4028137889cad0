"""Parity of an exported graph against the reference oracle, on a probe set that hits the edges.

Probe: single rows of 1, 2, 63, 64, 65 and 300+ tokens (DeltaNet chunk edges at 64), one batch
mixing all of them with right padding, and a batch of unicode-heavy texts through the
tokenizer. Reports max |score diff| and decision agreement; ``passed`` applies the tolerance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from opencc_cm_contract.text_rules import pad_right

from .reference import ReferenceClassifier, activate, decide

PROBE_LENGTHS = (1, 2, 63, 64, 65, 129, 317)
UNICODE_PROBES = (
    "Plain English: how do I reset my router?",
    "Français: où est la bibliothèque? Ça coûte 10 €.",
    "日本語と中文混合：安全吗？ 危険ですか？",
    "العربية من اليمين إلى اليسار",
    "Emoji 👩🏽‍💻🔥🚀 and ZWJ sequences 👨‍👩‍👧‍👦",
    "Combining marks: e\u0301 a\u0308 n\u0303; zero width:\u200b\u200c\u200d; BOM:\ufeff",
    "Math ∀x∈ℝ: x² ≥ 0 ⇒ √(x²) = |x|",
    "tabs\tand\nnewlines\r\n  and   spaces",
)
TOLERANCE = {"fp32": 1e-5, "fp16": 2e-2, "bf16": 5e-2}


@dataclass
class ParityCase:
    name: str
    shape: tuple[int, int]
    max_abs_diff: float
    decisions_agree: int
    decisions_total: int


@dataclass
class ParityReport:
    precision: str
    tolerance: float
    cases: list[ParityCase] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.cases), default=float("nan"))

    @property
    def decision_agreement(self) -> float:
        total = sum(c.decisions_total for c in self.cases)
        return sum(c.decisions_agree for c in self.cases) / total if total else float("nan")

    @property
    def passed(self) -> bool:
        if not self.cases or not self.max_abs_diff <= self.tolerance:
            return False
        # fp32 must decide identically; reduced precision may flip a score sitting on a threshold.
        return self.precision != "fp32" or self.decision_agreement == 1.0

    def summary(self) -> str:
        lines = [f"{'case':<34} {'shape':>10} {'max|diff|':>11} {'decisions':>11}"]
        for c in self.cases:
            lines.append(f"{c.name:<34} {str(c.shape):>10} {c.max_abs_diff:>11.3e} "
                         f"{c.decisions_agree:>5}/{c.decisions_total:<5}")
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"{verdict}: {self.precision} max |score diff| {self.max_abs_diff:.3e} "
                     f"(tolerance {self.tolerance:g}), decision agreement {self.decision_agreement:.4f}")
        return "\n".join(lines)


def probe_batches(reference: ReferenceClassifier, lengths=PROBE_LENGTHS, seed: int = 0):
    """``[(name, input_ids, attention_mask)]``: single rows, one mixed padded batch, unicode texts."""
    tok = reference.tokenizer
    rng = np.random.default_rng(seed)
    vocab = len(tok)
    rows = [rng.integers(0, vocab, size=n).tolist() for n in lengths]
    batches = [(f"single row, {n} tokens", *pad_right([r], tok.pad_token_id)) for n, r in zip(lengths, rows)]
    batches.append((f"mixed batch of {len(rows)}, right padded", *pad_right(rows, tok.pad_token_id)))
    enc = reference.tokenizer(list(UNICODE_PROBES), padding=True, return_tensors="np")
    batches.append((f"unicode texts x{len(UNICODE_PROBES)}", enc["input_ids"].astype(np.int64),
                    enc["attention_mask"].astype(np.int64)))
    return batches


def onnx_session(path: Path, providers: list[str] | None = None, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def check_parity(reference: ReferenceClassifier, run_graph, *, precision: str = "fp32",
                 lengths=PROBE_LENGTHS, progress=print) -> ParityReport:
    """Compare ``run_graph(input_ids, attention_mask) -> logits`` with the oracle on the probe set."""
    report = ParityReport(precision, TOLERANCE[precision])
    for name, ids, mask in probe_batches(reference, lengths):
        oracle_logits = reference.logits_from_ids(torch.from_numpy(ids), torch.from_numpy(mask))
        oracle = activate(oracle_logits, reference.spec.activation).cpu().numpy()
        ours = activate(torch.from_numpy(np.asarray(run_graph(ids, mask), dtype=np.float32)),
                        reference.spec.activation).numpy()
        diff = float(np.abs(oracle - ours).max())
        if reference.spec.thresholds is not None:
            agree = int((decide(oracle, reference.spec) == decide(ours, reference.spec)).sum())
        else:
            agree = oracle.size
        report.cases.append(ParityCase(name, tuple(ids.shape), diff, agree, oracle.size))
        progress(f"[parity] {name:<34} {str(tuple(ids.shape)):>10} max|diff| {diff:.3e}")
    return report


def onnx_runner(session):
    from opencc_cm_contract import ATTENTION_MASK, INPUT_IDS, LOGITS

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return session.run([LOGITS], {INPUT_IDS: ids, ATTENTION_MASK: mask})[0]

    return run
