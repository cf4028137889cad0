"""Fidelity of a reduced-precision path against the fp32 oracle, next to the reference as shipped.

The reference as shipped runs in bf16 (HF, unmerged PEFT); its distance from the fp32 oracle on
the same prompts is the band a reduced-precision path of ours is judged against.
"""
from __future__ import annotations

import numpy as np

from opencc_cm_contract import label_flags

FLIP_MARGIN = 0.05  # a flip whose fp32 score lies this far (or further) from its threshold fails the gate


def fidelity(truth: np.ndarray, other: np.ndarray, thresholds: np.ndarray, labels,
             ref_distance: float | None = None) -> dict:
    """Max |score diff| against the fp32 oracle, decision flips and how far each flip's oracle
    score sits from its threshold; with ``ref_distance`` (the reference as shipped's max |score
    diff| on the same prompts), whether this variant lies within the reference's band: no
    further from fp32, and every flip within that distance of its threshold."""
    diff = np.abs(truth - other)
    flips = np.argwhere(label_flags(truth, thresholds) != label_flags(other, thresholds))
    out = {"max_abs_score_diff": float(diff.max()), "mean_abs_score_diff": float(diff.mean()),
           "decision_flips": int(len(flips)), "decisions": int(truth.size),
           "decision_agreement": 1.0 - len(flips) / truth.size if truth.size else float("nan"),
           "flips": [{"prompt": int(i), "label": labels[j], "oracle_score": float(truth[i, j]),
                      "score": float(other[i, j]), "threshold": float(thresholds[j]),
                      "oracle_distance_to_threshold": float(abs(truth[i, j] - thresholds[j]))}
                     for i, j in flips]}
    if ref_distance is not None:
        out["reference_max_abs_score_diff"] = ref_distance
        out["no_further_than_reference"] = out["max_abs_score_diff"] <= ref_distance
        out["flips_only_within_reference_distance"] = all(
            f["oracle_distance_to_threshold"] <= ref_distance for f in out["flips"])
        out["within_reference_band"] = out["no_further_than_reference"] and out["flips_only_within_reference_distance"]
    return out


def reduced_precision_gate(result: dict, flip_margin: float = FLIP_MARGIN) -> tuple[bool, list[str]]:
    """The gate of a reduced-precision graph on a :func:`fidelity` result computed with the
    reference's distance: no further from fp32 than the reference as shipped, and no flip whose
    fp32 score is ``flip_margin`` or more from its threshold. Returns (passed, reasons it failed)."""
    reasons = []
    ref = result.get("reference_max_abs_score_diff")
    if ref is None:
        reasons.append("no reference distance to compare with")
    elif not result["max_abs_score_diff"] <= ref:
        reasons.append(f"max |score diff| {result['max_abs_score_diff']:.3e} is further from fp32 than the "
                       f"reference as shipped ({ref:.3e})")
    far = [f for f in result["flips"] if f["oracle_distance_to_threshold"] >= flip_margin]
    if far:
        reasons.append(f"{len(far)} flip(s) with the fp32 score >= {flip_margin} from the threshold: " + ", ".join(
            f"prompt {f['prompt']} {f['label']} (fp32 {f['oracle_score']:.4f}, threshold {f['threshold']:.4f})"
            for f in far[:5]))
    return not reasons, reasons
