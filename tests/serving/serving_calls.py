"""Small tritonclient wrappers and reference decisions shared by the server tests."""
from __future__ import annotations

import contextlib
import queue
import random
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from opencc_cm_contract import (
    ATTENTION_MASK, CALIBRATION_MODEL, FLAGGED, IDS_ENSEMBLE, IDS_PREPROCESS_MODEL, INPUT_IDS, LABEL_FLAGS, SCORES, TEXT, TEXT_ENSEMBLE,
    THRESHOLD_PROFILE_PARAMETER, TOKEN_COUNT,
)
from opencc_cm_serving.deploy import CHECKOUT_TEMPLATES, main as deploy_main
from opencc_cm_contract.text_rules import pad_right

from toy_bundle import WORDS

TEMPLATES = CHECKOUT_TEMPLATES

OUTPUTS = (SCORES, LABEL_FLAGS, FLAGGED, TOKEN_COUNT)
TIMEOUT_S = 30


def text_inputs(texts: list[bytes | str]) -> list:
    data = np.array([[t.encode("utf-8") if isinstance(t, str) else t] for t in texts], dtype=object)
    tensor = grpcclient.InferInput(TEXT, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return [tensor]


def ids_inputs(ids: np.ndarray, mask: np.ndarray, dtype: str = "INT64") -> list:
    out = []
    for name, array in ((INPUT_IDS, ids), (ATTENTION_MASK, mask)):
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        out.append(tensor)
    return out


def params(profile: str | None) -> dict | None:
    return {THRESHOLD_PROFILE_PARAMETER: profile} if profile else None


def as_dict(result) -> dict[str, np.ndarray]:
    return {name: result.as_numpy(name) for name in OUTPUTS}


def classify_text(client, texts, profile=None) -> dict[str, np.ndarray]:
    return as_dict(client.infer(TEXT_ENSEMBLE, text_inputs(texts), parameters=params(profile)))


def classify_rows(client, rows, pad_id: int, profile=None, width=None) -> dict[str, np.ndarray]:
    ids, mask = pad_right(rows, pad_id, width)
    return as_dict(client.infer(IDS_ENSEMBLE, ids_inputs(ids, mask), parameters=params(profile)))


def expected(logits: np.ndarray, thresholds) -> dict[str, np.ndarray]:
    """Reference scores (float64) and decisions on the fp32-rounded scores (``>=``)."""
    return expected_from_scores(1.0 / (1.0 + np.exp(-logits)), thresholds)


def expected_from_scores(scores: np.ndarray, thresholds) -> dict[str, np.ndarray]:
    flags = scores.astype(np.float32).astype(np.float64) >= np.asarray(thresholds)[None, :]
    return {SCORES: scores, LABEL_FLAGS: flags, FLAGGED: flags.any(axis=1, keepdims=True)}


def prompts(tokenizer, max_tokens: int, count: int, seed: int = 1) -> list[str]:
    """Deterministic prompts of many lengths (1 .. max_tokens tokens)."""
    rng = random.Random(seed)
    out = ["x", "café", "中文 测试 🙂"]
    while len(out) < count:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40)))
        if len(tokenizer.encode(text, add_special_tokens=False).ids) <= max_tokens:
            out.append(text)
    return out[:count]


@contextlib.contextmanager
def served(bundle: Path, root: Path, *deploy_args: str, target: str = "python-ort", ready_timeout: float = 120,
           native_steps: bool = False):
    """Deploy ``bundle`` into ``root/repo`` (``deploy_args`` as on deploy's command line; with
    ``native_steps`` also :func:`deploy_native_steps`), run a real tritonserver on it on loopback
    (its log in ``root``) and yield ``(server, client)``: what every server test module's fixture
    builds on."""
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    repo = deploy_to(bundle, root / "repo", target, *deploy_args)
    if native_steps:
        deploy_native_steps(bundle, repo, *deploy_args)
    with TritonServer(repo, ServerSettings(log_path=root / "tritonserver.log", ready_timeout=ready_timeout)) as server, \
            grpcclient.InferenceServerClient(server.grpc_url) as client:
        yield server, client


INVALID = "StatusCode.INVALID_ARGUMENT"


def rejected(call) -> str:
    """``call()`` must fail with INVALID_ARGUMENT; returns the server's message."""
    import pytest
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == INVALID, info.value
    return info.value.message()


def deploy_to(bundle: Path, output: Path, target: str, *extra: str) -> Path:
    """Fill a copy of the committed repository at ``output`` (python -m opencc_cm_serving.deploy)."""
    code = deploy_main(["--bundle", str(bundle), "--repository", str(TEMPLATES), "--output", str(output),
                        "--target", target, *extra])
    assert code == 0, f"deploy {target} failed"
    return output


NATIVE_STEPS = (IDS_PREPROCESS_MODEL, CALIBRATION_MODEL)


def deploy_native_steps(bundle: Path, output: Path, *extra: str) -> Path:
    """Add to ``output`` the onnxruntime target's Python-backend steps that the Python-backend
    encoder targets do not serve through (``ids_preprocess``, ``calibration``), as deploy writes
    them, so that tests call them directly on the pip server (it has no ONNX Runtime backend)."""
    return deploy_to(bundle, output, "onnxruntime", "--models", ",".join(NATIVE_STEPS), *extra)


def encoder_metrics(url) -> dict[str, float]:
    """The encoder's counters on Triton's metrics endpoint (rows computed, requests dropped)."""
    import urllib.request

    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("opencc_cm_encoder_"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def encoder_metrics_settled(url, quiet_s: float = 2.0, wait_s: float = 20.0) -> dict[str, float]:
    """The encoder's counters once they stopped changing for ``quiet_s`` (or ``wait_s`` passed):
    the encoder buffers its counts and sends them within a second, between batches or when idle."""
    deadline = time.monotonic() + wait_s
    last, since = encoder_metrics(url), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = encoder_metrics(url)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return last


def fire(client, model, batches, profiles=None):
    """Send every request at once (async gRPC), wait for all; returns results in order."""
    done: queue.Queue = queue.Queue()
    for i, inputs in enumerate(batches):
        profile = profiles[i] if profiles else None
        client.async_infer(model, inputs, callback=lambda result, error, i=i: done.put((i, result, error)),
                           parameters=params(profile), client_timeout=TIMEOUT_S)
    out = [None] * len(batches)
    for _ in batches:
        i, result, error = done.get(timeout=TIMEOUT_S)
        out[i] = error if error is not None else result
    return out


NESTING = 100_000  # levels: 10,000 parse; 100,000 made tritonserver 2.51 exit with SIGSEGV


def nested_infer_body(levels: int = NESTING) -> bytes:
    """An inference request whose "data" is ``levels`` arrays deep (about 200 KB)."""
    data = "[" * levels + '"a"' + "]" * levels
    return ('{"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ' + data + "}]}").encode()
