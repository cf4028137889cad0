"""The generated checkpoints follow the published TACTIC layout, deterministically."""
import json

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from opencc_cm_contract import HARM_CATEGORIES
from opencc_cm_export.qwen_tokenizer import cached_tokenizer_file
from opencc_cm_export.synthetic_checkpoint import write_synthetic_checkpoint


def test_layout_matches_the_published_format(tiny_checkpoint):
    clf = tiny_checkpoint["classifier"]
    frame = json.loads((clf / "weight_frame.json").read_text())["classifier"]
    assert frame["thresholds"] is None and frame["objective"] == "multilabel"
    assert frame["base_model"] == "Qwen/Qwen3.5-0.8B" and frame["head_filename"] == "classification_head.pt"
    sidecar = json.loads((clf / "thresholds.json").read_text())["thresholds"]
    assert "Integrity & Quality violations" in sidecar and len(sidecar) == 11  # published alias
    train = json.loads((clf / "train_config.json").read_text())
    assert train["num_labels"] == 11 and train["objective"] == "multilabel"
    adapter_cfg = json.loads((clf / "adapter_config.json").read_text())
    assert adapter_cfg["peft_type"] == "LORA" and adapter_cfg["base_model_name_or_path"] == "Qwen/Qwen3.5-0.8B"
    head = torch.load(clf / "classification_head.pt", weights_only=True)
    assert set(head) == {"weight", "bias"} and tuple(head["weight"].shape) == (len(HARM_CATEGORIES), 64)
    assert (clf / "tokenizer.json").exists()


def test_base_model_is_saved_in_the_multimodal_layout(tiny_checkpoint):
    base = tiny_checkpoint["base_model"]
    config = json.loads((base / "config.json").read_text())
    assert config["architectures"] == ["Qwen3_5ForConditionalGeneration"] and "text_config" in config
    assert config["text_config"]["layer_types"] == ["linear_attention"] * 3 + ["full_attention"]
    with safe_open(str(base / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert f.get_tensor(keys[0]).dtype == torch.bfloat16
    text_keys = [k for k in keys if ".layers." in k and "visual" not in k]
    assert text_keys and all(k.startswith("model.language_model.") for k in text_keys)


def test_tiny_model_has_the_real_vocabulary_and_tokenizer(tiny_checkpoint):
    from transformers import AutoTokenizer

    text = json.loads((tiny_checkpoint["base_model"] / "config.json").read_text())["text_config"]
    assert text["vocab_size"] == 248320 and text["eos_token_id"] == 248044 and text["hidden_size"] == 64
    qwen = cached_tokenizer_file().read_bytes()
    for folder in tiny_checkpoint.values():
        assert (folder / "tokenizer.json").read_bytes() == qwen
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint["classifier"])
    assert tok.eos_token == tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 248044
    assert tok("Hello world")["input_ids"] == [9419, 1814]  # Qwen3.5's ids, nothing added


def test_lora_touches_deltanet_attention_and_mlp_with_nonzero_b(tiny_checkpoint):
    state = load_file(str(tiny_checkpoint["classifier"] / "adapter_model.safetensors"))
    for module in ("linear_attn.in_proj_qkv", "linear_attn.out_proj", "self_attn.q_proj",
                   "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"):
        b_keys = [k for k in state if module in k and "lora_B" in k]
        assert b_keys, module
        assert all(state[k].abs().max() > 0 for k in b_keys), module


def test_generation_is_deterministic(tiny_checkpoint, tmp_path):
    again = write_synthetic_checkpoint(tmp_path, "tiny", progress=lambda *_: None)
    for rel in ("classifier/adapter_model.safetensors", "base-model/model.safetensors"):
        a = load_file(str(tiny_checkpoint["classifier"].parent / rel))
        b = load_file(str(again["classifier"].parent / rel))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), rel
    for rel in ("classifier/thresholds.json", "classifier/tokenizer.json"):
        assert (tiny_checkpoint["classifier"].parent / rel).read_bytes() == (again["classifier"].parent / rel).read_bytes()
