"""The python-torch encoder's runner on CPU: merged torch weights from the exported bundle,
bucket padding, the Gated DeltaNet rule choice, strict loading."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from opencc_cm_contract.buckets import bucket_for, parse_buckets, powers_of_two
from opencc_cm_contract.text_rules import pad_right
from opencc_cm_export.reference import activate
from opencc_cm_export.torch_encoder import (TorchEncoder, TorchEncoderError, TorchEncoderSettings, load_merged,
                                            resolve_gated_delta)
from opencc_cm_export.gated_delta_export import torch_chunk_rule

LENGTHS = (1, 5, 17, 63, 64, 65, 100)


@pytest.fixture(scope="module")
def rows(tiny_reference):
    rng = np.random.default_rng(3)
    return [rng.integers(0, len(tiny_reference.tokenizer), size=n).tolist() for n in LENGTHS]


def _encoder(bundle, tiny_reference, **kwargs):
    return TorchEncoder(bundle, TorchEncoderSettings(device="cpu", gated_delta="auto", **kwargs),
                        pad_id=tiny_reference.tokenizer.pad_token_id, log=lambda line: None)


def test_bucket_padding_changes_no_score(tiny_bundle, tiny_reference, rows):
    """Rows and batches padded up to (batch, length) buckets give the unpadded scores (<= 1e-5),
    and the oracle's."""
    pad = tiny_reference.tokenizer.pad_token_id
    plain = _encoder(tiny_bundle, tiny_reference)
    bucketed = _encoder(tiny_bundle, tiny_reference, pad_to_buckets="on", length_buckets="16,32,64,128,2048",
                        batch_buckets="1,2,4,8")
    for group in ([rows[0]], rows[:3], rows[2:5], rows):
        ids, mask = pad_right(group, pad)
        exact = activate(torch.from_numpy(plain(ids, mask)), "sigmoid").numpy()
        padded = activate(torch.from_numpy(bucketed(ids, mask)), "sigmoid").numpy()
        oracle = activate(tiny_reference.logits_from_ids(torch.from_numpy(ids), torch.from_numpy(mask)),
                          "sigmoid").numpy()
        assert padded.shape == exact.shape == (len(group), 11)
        assert np.abs(padded - exact).max() <= 1e-5
        assert np.abs(padded - oracle).max() <= 1e-5
    assert plain.shapes_run[-1] == (7, 100)
    # the padding really happened: 3 rows of <= 17 tokens -> (4, 32); all 7 rows -> (8, 128)
    assert list(bucketed.shapes_run) == [(1, 16), (4, 32), (4, 64), (8, 128)]


def test_buckets_pick_the_smallest_fitting_size():
    assert [bucket_for((16, 32, 64), n) for n in (1, 16, 17, 64, 65)] == [16, 16, 32, 64, 65]
    assert powers_of_two(16, 100) == [16, 32, 64, 100] and powers_of_two(1, 64) == [1, 2, 4, 8, 16, 32, 64]
    assert parse_buckets("64, 16,32,16") == (16, 32, 64) and parse_buckets("16,32,64,128", cap=100) == (16, 32, 64, 100)
    with pytest.raises(ValueError, match="positive integers"):
        parse_buckets("16,x")


def test_cpu_runs_fp32_eager_with_the_projects_rule(tiny_bundle, tiny_reference):
    lines = []
    enc = TorchEncoder(tiny_bundle, TorchEncoderSettings(device="cpu"), pad_id=0, log=lines.append)
    assert enc.dtype == torch.float32 and enc.rule is torch_chunk_rule and not enc.use_graphs
    assert not enc.pad_to_buckets  # auto: buckets only on CUDA
    assert any("the project's torch rule, because fla-core needs a CUDA device" in line for line in lines)
    with pytest.raises(TorchEncoderError, match="cuda_graphs=on needs a CUDA device"):
        TorchEncoder(tiny_bundle, TorchEncoderSettings(device="cpu", cuda_graphs="on"), log=lines.append)


def test_fla_not_importable_falls_back_to_the_torch_rule_with_a_log_line(monkeypatch):
    """On a CUDA device without fla-core: the torch rule and a line saying why; asking for fla
    explicitly is an error. (No GPU is touched: the choice is made before any kernel runs.)"""
    monkeypatch.setitem(sys.modules, "fla", None)  # import fla -> ImportError
    lines = []
    rule, name = resolve_gated_delta("auto", torch.device("cuda"), lines.append)
    assert (rule, name) == (torch_chunk_rule, "torch")
    assert lines and "fla-core is not importable" in lines[0] and "project's torch rule" in lines[0]
    with pytest.raises(TorchEncoderError, match="gated_delta=fla asked, but fla-core is not importable"):
        resolve_gated_delta("fla", torch.device("cuda"), lines.append)
    assert resolve_gated_delta("torch", torch.device("cuda"), lines.append)[1] == "torch"


def test_loading_is_strict(tiny_bundle, tmp_path):
    from safetensors.torch import load_file, save_file
    import shutil

    shutil.copy2(tiny_bundle / "classifier_config.json", tmp_path / "classifier_config.json")
    state = load_file(str(tiny_bundle / "classifier.safetensors"))
    state.pop("head.bias")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "classifier.safetensors"))
    with pytest.raises(TorchEncoderError, match=r"1 missing key\(s\) \['head.bias'\], 1 unexpected \['extra.weight'\]"):
        load_merged(tmp_path)
    model = load_merged(tiny_bundle)
    assert not any(name.startswith("lm_head") for name in model.state_dict())  # no vocabulary projection
    assert model.head.weight.dtype == torch.float32


def test_export_recorded_torch_parity(tiny_bundle):
    import json

    record = json.loads((tiny_bundle / "classifier.json").read_text())["torch_parity"]
    assert record["passed"] and record["max_abs_score_diff"] <= 1e-5 and record["decision_agreement"] == 1.0
