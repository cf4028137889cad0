"""The reference computation, rebuilt from the published checkpoint: the project's oracle.

:class:`ReferenceClassifier` does what OpenCC's ``hf_classifier`` backend does - base causal
LM, unmerged PEFT LoRA, right padding, ``hidden_states[-1]`` at the last real token, fp32 head,
sigmoid (or softmax) - with strict loading: adapter keys that match no module, modules left
without weights, and a head that does not fit the model are errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from opencc_cm_contract import label_flags

from .checkpoint_format import CheckpointError, CheckpointSpec, read_checkpoint


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at the last real token of each row (``seq - 1 - argmax(flipped mask)``)."""
    seq_len = attention_mask.shape[1]
    last = seq_len - 1 - attention_mask.flip(dims=[1]).long().argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    logits = logits.float()
    return torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=-1)


def load_tokenizer(spec: CheckpointSpec):
    """The checkpoint's own tokenizer, else the base model's; ``pad = eos`` if unset; right padding."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(spec.directory)
    except Exception:
        try:
            tok = AutoTokenizer.from_pretrained(spec.base_model)
        except Exception as exc:
            raise CheckpointError(spec.directory, "tokenizer",
                                  f"no tokenizer in the checkpoint or in {spec.base_model}: {exc}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def load_head(spec: CheckpointSpec, hidden_size: int) -> torch.nn.Linear:
    state = torch.load(spec.head_path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or set(state) != {"weight", "bias"}:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(spec.head_path, None, f"expected a Linear state_dict with weight and bias, got {keys}")
    expected = (spec.num_labels, hidden_size)
    if tuple(state["weight"].shape) != expected:
        raise CheckpointError(spec.head_path, "weight",
                              f"shape {tuple(state['weight'].shape)} does not fit the model: expected "
                              f"{expected} (labels x hidden size {hidden_size})")
    if tuple(state["bias"].shape) != (spec.num_labels,):
        raise CheckpointError(spec.head_path, "bias",
                              f"shape {tuple(state['bias'].shape)}, expected ({spec.num_labels},)")
    head = torch.nn.Linear(hidden_size, spec.num_labels)
    head.load_state_dict({k: v.float() for k, v in state.items()})
    return head.float().eval()


def _read_adapter_state(spec: CheckpointSpec) -> dict[str, torch.Tensor]:
    if spec.adapter_path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(spec.adapter_path), device="cpu")
    return torch.load(spec.adapter_path, map_location="cpu", weights_only=True)


def load_adapter_strictly(peft_model, spec: CheckpointSpec) -> None:
    """Load the adapter weights; every file key must land on a module and every LoRA module be filled."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    state = _read_adapter_state(spec)
    expected = get_peft_model_state_dict(peft_model)
    unmatched = sorted(set(state) - set(expected))
    if unmatched:
        raise CheckpointError(spec.adapter_path, unmatched[0],
                              f"{len(unmatched)} adapter key(s) match no module of {spec.base_model} "
                              f"with target_modules={spec.lora['target_modules']}: {', '.join(unmatched[:5])}")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(spec.adapter_path, missing[0],
                              f"{len(missing)} LoRA module weight(s) missing from the file: "
                              f"{', '.join(missing[:5])}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(spec.adapter_path, key,
                                  f"shape {tuple(tensor.shape)} does not match the module "
                                  f"{tuple(expected[key].shape)} (LoRA r={spec.lora['r']})")
    set_peft_model_state_dict(peft_model, state)


def load_base_model(spec: CheckpointSpec, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(spec.base_model, dtype=dtype)
    except Exception as exc:
        raise CheckpointError(spec.directory / "weight_frame.json", "base_model",
                              f"cannot load base model {spec.base_model!r}: {exc}. "
                              "Pass base_model= (--base-model) to point at a local copy.") from exc


def decide(scores: np.ndarray, spec: CheckpointSpec) -> np.ndarray:
    """Per-label flags, ``score >= threshold``, compared as the reference does: the fp32 score
    against the threshold as a Python float (float64), never a threshold rounded to fp32."""
    if spec.thresholds is None:
        raise CheckpointError(spec.directory, "thresholds", "checkpoint has no calibrated thresholds")
    return label_flags(scores, [spec.thresholds[label] for label in spec.labels])


@dataclass
class ReferenceClassifier:
    """The unmerged PEFT model + fp32 head, scoring exactly as the reference does."""

    spec: CheckpointSpec
    backbone: torch.nn.Module  # peft.PeftModel over the causal LM
    head: torch.nn.Linear
    tokenizer: object
    dtype: torch.dtype
    device: torch.device = torch.device("cpu")

    @classmethod
    def load(cls, checkpoint: str | Path, *, base_model: str | Path | None = None,
             dtype: torch.dtype = torch.float32, require_thresholds: bool = True,
             device: str | torch.device = "cpu") -> ReferenceClassifier:
        from peft import LoraConfig, get_peft_model

        spec = read_checkpoint(checkpoint, base_model=base_model, require_thresholds=require_thresholds)
        base = load_base_model(spec, dtype)
        hidden = base.config.get_text_config().hidden_size
        head = load_head(spec, hidden)  # check the head before the (slower) adapter work
        lora = LoraConfig(r=spec.lora["r"], lora_alpha=spec.lora["lora_alpha"],
                          lora_dropout=spec.lora["lora_dropout"],
                          target_modules=spec.lora["target_modules"], bias="none", task_type="CAUSAL_LM")
        try:
            backbone = get_peft_model(base, lora)
        except ValueError as exc:  # e.g. target modules not found in the base model
            raise CheckpointError(spec.directory / "adapter_config.json", "target_modules", str(exc)) from exc
        load_adapter_strictly(backbone, spec)
        device = torch.device(device)
        return cls(spec, backbone.to(device).eval(), head.to(device), load_tokenizer(spec), dtype, device)

    @torch.no_grad()
    def logits_from_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        pooled = last_token_pool(out.hidden_states[-1], attention_mask)
        return self.head(pooled.to(self.head.weight.dtype))

    def encode(self, texts: list[str]):
        return self.tokenizer(list(texts), return_tensors="pt", padding=True)

    @torch.no_grad()
    def scores(self, texts: list[str], batch_size: int = 16) -> np.ndarray:
        """``(len(texts), num_labels)`` probabilities, batched like the reference (16, right padding)."""
        rows = []
        for i in range(0, len(texts), batch_size):
            enc = self.encode(texts[i:i + batch_size])
            logits = self.logits_from_ids(enc["input_ids"], enc["attention_mask"])
            rows.append(activate(logits, self.spec.activation).cpu().numpy())
        return np.concatenate(rows, axis=0) if rows else np.zeros((0, self.spec.num_labels), np.float32)

    def decisions(self, scores: np.ndarray) -> np.ndarray:
        """Per-label flags with the reference rule ``score >= threshold``."""
        return decide(scores, self.spec)
