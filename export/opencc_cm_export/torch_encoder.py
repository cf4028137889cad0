"""The merged classifier as PyTorch weights, and the runner the ``python-torch`` encoder serves.

Bundle files (written by the export next to ``model.onnx``; names in :mod:`.bundle`):
``classifier.safetensors`` (the merged text model ``text_model.*`` without the vocabulary
projection, and the fp32 head ``head.*``) and ``classifier_config.json`` (the text model's
transformers config). :func:`load_merged` rebuilds :class:`MergedClassifier` from them
strictly (every key present, none left over).

:class:`TorchEncoder` is ``(input_ids, attention_mask) -> fp32 logits`` on numpy arrays, set up
by a :class:`TorchEncoderSettings`:
- CUDA: bf16 (``fp16`` as an option), Gated DeltaNet through fla-core's chunk kernel when it
  imports (else the project's torch rule, said in a log line), rows padded to (batch, length)
  buckets and replayed from CUDA graphs captured at construction over static input buffers;
  shapes outside the captured grid run eager.
- CPU: fp32 by default, bf16 when asked (oneDNN's bf16 matmuls; a CPU without native bf16
  instructions runs it emulated, said in a warning line at load); eager, the project's torch
  rule, torch's intra-op threads set to the cores this process may use; buckets only when asked
  (tests prove that padding to buckets changes no score).
In bf16/fp16 the arithmetic follows the reference as shipped (transformers in bf16): weights,
matmuls and activations in the reduced dtype; norms, softmax, the Gated DeltaNet recurrence
(q, k, v, g, beta cast to fp32) and the head in fp32. One place computes more precisely than
the reference: the residual stream between the decoder layers stays fp32
(:func:`forward_fp32_residual`; each layer still reads its input rounded to the reduced dtype
after the fp32 norm, as the reference does): it removes one bf16 rounding of the whole hidden
state per layer for the cost of a few elementwise adds (its effect on the distance to the fp32
oracle: BENCHMARKS.md, "CPU bf16, python-torch").
The depthwise causal convolution of the DeltaNet layers runs as four shifted multiply-adds in
fp32 over the token-major activations (:func:`causal_conv1d`), rounded once to the layer's dtype
like transformers' own ``conv1d`` fallback.
Right padding with last-real-token pooling keeps a row's result independent of the padding
(both the DeltaNet layers and attention mask it); padding rows are one pad token each.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from opencc_cm_contract import buckets
from opencc_cm_contract.bundle_format import TORCH_CONFIG_FILE, TORCH_WEIGHTS_FILE

from .classifier_graph import MergedClassifier
from .gated_delta_export import causal_conv1d, causal_conv_rule, gated_delta_rule, torch_chunk_rule
from .reference import last_token_pool

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchEncoderError(RuntimeError):
    """The torch weights or settings cannot be served as asked."""


def save_merged(model: MergedClassifier, folder: Path) -> tuple[Path, Path]:
    """Write ``classifier.safetensors`` and ``classifier_config.json`` into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    weights, config = folder / TORCH_WEIGHTS_FILE, folder / TORCH_CONFIG_FILE
    save_file(state, str(weights), metadata={"format": "pt", "content": "opencc-cm merged classifier"})
    config.write_text(json.dumps({"text_config": model.text_model.config.to_dict(),
                                  "num_labels": int(model.head.out_features),
                                  "hidden_size": int(model.head.in_features)}, indent=1) + "\n")
    return weights, config


def load_merged(folder: Path, *, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu") -> MergedClassifier:
    """Rebuild the merged classifier from the bundle files; backbone in ``dtype``, head fp32."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    folder = Path(folder)
    weights, config_path = folder / TORCH_WEIGHTS_FILE, folder / TORCH_CONFIG_FILE
    for path in (weights, config_path):
        if not path.is_file():
            raise TorchEncoderError(f"{path} not found (export the bundle with this version to get it)")
    meta = json.loads(config_path.read_text())
    text = dict(meta["text_config"])
    config = AutoConfig.for_model(text.pop("model_type"), **text)
    with torch.device("meta"):
        text_model = AutoModel.from_config(config)
    head = torch.nn.Linear(int(meta["hidden_size"]), int(meta["num_labels"]), device="meta")
    # transformers' own attention (SDPA on GPU), as this target was built and measured with; the
    # query-block rule (blocked_attention) is for the exported ONNX graph.
    model = MergedClassifier(text_model, head, query_block=None)
    state = load_file(str(weights), device="cpu")
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise TorchEncoderError(f"{weights}: {len(missing)} missing key(s) {missing[:3]}, "
                                f"{len(unexpected)} unexpected {unexpected[:3]}")
    model.load_state_dict(state, strict=True, assign=True)
    _rebuild_buffers(model.text_model)
    model.text_model.to(device=device, dtype=dtype)
    model.head.to(device=device, dtype=torch.float32)
    if dtype != torch.float32:
        # Tensors that kept the file's dtype on the CPU (the fp32 head, integer buffers) still
        # point into the memory-mapped weights file, which would then stay mapped with every
        # page the conversion touched resident: 2.9 GB of RSS at real shape for a 1.5 GB bf16
        # model. Giving them their own memory lets the mapping go.
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.device.type == "cpu" and tensor.dtype != dtype:
                tensor.data = tensor.data.clone()
    return model.eval()


def _rebuild_buffers(text_model) -> None:
    """Non-persistent buffers (rotary inverse frequencies) are not in the file and were left on
    the meta device: rebuild the modules holding them from the config, on the CPU."""
    for parent in list(text_model.modules()):
        for name, child in list(parent.named_children()):
            if any(b.is_meta for b in child.buffers(recurse=False)):
                if not hasattr(child, "config"):
                    raise TorchEncoderError(f"cannot rebuild the buffers of {type(child).__name__}")
                with torch.device("cpu"):
                    setattr(parent, name, type(child)(config=child.config))
    left = [n for n, b in text_model.named_buffers() if b.is_meta]
    if left:
        raise TorchEncoderError(f"buffers left unset after loading: {left[:3]}")


def resolve_gated_delta(requested: str, device: torch.device, log: Callable[[str], None] = print):
    """``(rule, name)`` for the DeltaNet layers: ``fla`` (fla-core's chunk kernel, CUDA only),
    ``torch`` (the project's rule) or ``auto`` (fla when usable, else torch with a log line)."""
    if requested not in ("auto", "fla", "torch"):
        raise TorchEncoderError(f"gated_delta must be auto, fla or torch, got {requested!r}")
    if requested == "torch":
        return torch_chunk_rule, "torch"
    reason = None
    if device.type != "cuda":
        reason = f"fla-core needs a CUDA device (this one is {device.type})"
    else:
        try:
            from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_chunk
        except Exception as exc:  # noqa: BLE001 - ImportError, or triton failing to initialise
            reason = f"fla-core is not importable ({type(exc).__name__}: {exc})"
    if reason is not None:
        if requested == "fla":
            raise TorchEncoderError(f"gated_delta=fla asked, but {reason}")
        log(f"gated delta rule: the project's torch rule, because {reason}")
        return torch_chunk_rule, "torch"

    def fla_rule(query, key, value, g, beta, initial_state=None, output_final_state=False,
                 use_qk_l2norm_in_kernel=False, **_):
        return fla_chunk(query, key, value, g=g, beta=beta, initial_state=initial_state,
                         output_final_state=output_final_state,
                         use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel)

    log("gated delta rule: fla-core chunk kernel")
    return fla_rule, "fla"


def parse_buckets(text: str | Sequence[int]) -> tuple[int, ...]:
    try:
        return buckets.parse_buckets(text)
    except ValueError as exc:
        raise TorchEncoderError(str(exc)) from None


@dataclass(frozen=True)
class TorchEncoderSettings:
    """How :class:`TorchEncoder` runs (the python-torch model's config parameters).

    ``device``: ``auto`` (CUDA when present), ``cpu``, ``cuda[:N]``. ``dtype``: ``auto`` (bf16 on
    CUDA, fp32 on CPU), ``fp32``, ``fp16``, ``bf16``. ``gated_delta``: ``auto``, ``fla``,
    ``torch`` (:func:`resolve_gated_delta`). ``length_buckets`` / ``batch_buckets``: bucket sizes
    (``"16,32,64"`` or a sequence). ``pad_to_buckets`` / ``cuda_graphs``: ``auto``, ``on``, ``off``.
    ``graph_max_cells``: the largest batch x length captured as a CUDA graph. ``threads``: torch's
    intra-op threads on the CPU (0: the cores this process may run on)."""

    device: str = "auto"
    dtype: str = "auto"
    gated_delta: str = "auto"
    length_buckets: str | Sequence[int] = ""
    batch_buckets: str | Sequence[int] = ""
    pad_to_buckets: str = "auto"
    cuda_graphs: str = "auto"
    graph_max_cells: int = 16384
    threads: int = 0


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (None where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def bf16_cpu_warning(flags: set[str] | None) -> str | None:
    """The warning to log when bf16 is asked on a CPU without bf16 instructions, else None."""
    if flags is not None and any(f in flags for f in NATIVE_BF16_FLAGS):
        return None
    seen = "cannot read the CPU flags" if flags is None else f"no {' or '.join(NATIVE_BF16_FLAGS)} in the CPU flags"
    return (f"WARNING: bf16 asked on a CPU without native bf16 ({seen}): oneDNN emulates bf16 "
            "matmuls by converting to fp32, so this runs about as slow as fp32 or slower, with "
            "bf16's rounding; serve dtype fp32 on this CPU")


def forward_fp32_residual(model: MergedClassifier, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          dtype: torch.dtype) -> torch.Tensor:
    """The merged classifier's forward with the residual stream in fp32 and everything else as
    transformers computes it in ``dtype``: each decoder layer reads ``norm(h)`` rounded to
    ``dtype`` (the norms compute in fp32, as in the reference), its token mixer and MLP run in
    ``dtype``, and their outputs are added to the fp32 stream ``h``; the final norm, pooling and
    head stay fp32. Embeddings and rotary cos/sin are in ``dtype`` as the reference has them."""
    from transformers.masking_utils import create_causal_mask, create_recurrent_attention_mask

    text = model.text_model
    embeds = text.embed_tokens(input_ids)
    batch, seq = input_ids.shape
    positions = torch.arange(seq, device=input_ids.device).view(1, 1, -1).expand(4, batch, -1)
    text_positions, rope_positions = positions[0], positions[1:]
    mask_args = dict(config=text.config, inputs_embeds=embeds, attention_mask=attention_mask, cache=None,
                     position_ids=text_positions)
    masks = {"full_attention": create_causal_mask(**mask_args),
             "linear_attention": create_recurrent_attention_mask(**mask_args)}
    rotary = text.rotary_emb(embeds, rope_positions)
    hidden = embeds.to(torch.float32)
    for layer in text.layers[: text.config.num_hidden_layers]:
        mixer_in = layer.input_layernorm(hidden).to(dtype)
        if layer.block_type == "linear_attention":
            mixed = layer.linear_attn(hidden_states=mixer_in, cache=None, attention_mask=masks["linear_attention"])
        else:
            mixed, _ = layer.self_attn(hidden_states=mixer_in, attention_mask=masks["full_attention"],
                                       position_ids=text_positions, cache=None, position_embeddings=rotary)
        hidden = hidden + mixed.to(torch.float32)
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden).to(dtype)).to(torch.float32)
    hidden = text.norm(hidden)
    return model.head(last_token_pool(hidden, attention_mask).to(torch.float32))


class TorchEncoder:
    """``__call__(ids, mask) -> fp32 logits [rows, labels]`` over the merged torch weights."""

    def __init__(self, folder: str | Path, settings: TorchEncoderSettings | None = None, *, pad_id: int = 0,
                 log: Callable[[str], None] = print, model: MergedClassifier | None = None):
        """``model``: an already loaded merged classifier (on the settings' device, in their
        dtype) instead of reading ``folder`` (the GPU check runs several settings over one copy)."""
        settings = settings if settings is not None else TorchEncoderSettings()
        self.settings = settings
        device, dtype = settings.device, settings.dtype
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                                   else ("cpu" if device == "auto" else device))
        cuda = self.device.type == "cuda"
        if dtype == "auto":
            dtype = "bf16" if cuda else "fp32"
        if dtype not in DTYPES:
            raise TorchEncoderError(f"dtype must be auto, fp32, fp16 or bf16, got {dtype!r}")
        self.dtype_name, self.dtype = dtype, DTYPES[dtype]
        for name in ("pad_to_buckets", "cuda_graphs"):
            if getattr(settings, name) not in ("auto", "on", "off"):
                raise TorchEncoderError(f"{name} must be auto, on or off, got {getattr(settings, name)!r}")
        if int(settings.threads) < 0:
            raise TorchEncoderError(f"threads must be >= 0 (0: the cores available), got {settings.threads!r}")
        self.length_buckets = parse_buckets(settings.length_buckets)
        self.batch_buckets = parse_buckets(settings.batch_buckets)
        self.pad_to_buckets = settings.pad_to_buckets == "on" or (settings.pad_to_buckets == "auto" and cuda)
        self.use_graphs = cuda and settings.cuda_graphs != "off" and self.pad_to_buckets
        if settings.cuda_graphs == "on" and not self.use_graphs:
            raise TorchEncoderError("cuda_graphs=on needs a CUDA device and bucket padding")
        self.pad_id, self.log = int(pad_id), log
        if not cuda:
            # One intra-op pool per process (the Triton stub runs one instance per process).
            torch.set_num_threads(int(settings.threads) or len(os.sched_getaffinity(0)))
            if self.dtype == torch.bfloat16:
                warning = bf16_cpu_warning(cpu_flags())
                if warning:
                    log(warning)
        started = time.perf_counter()
        self.model = model if model is not None else load_merged(Path(folder), dtype=self.dtype, device=self.device)
        self.num_labels = int(self.model.head.out_features)
        self.rule, self.rule_name = resolve_gated_delta(settings.gated_delta, self.device, log)
        self.graphs: dict[tuple[int, int], tuple] = {}
        self.shapes_run: deque[tuple[int, int]] = deque(maxlen=256)  # last padded shapes run (tests, debugging)
        self.graph_max_cells = int(settings.graph_max_cells)
        threads = f", {torch.get_num_threads()} threads" if not cuda else ""
        residual = ", fp32 residual stream" if self.dtype != torch.float32 else ""
        log(f"torch encoder: {self.device}, {self.dtype_name}{residual}, gated delta {self.rule_name}, "
            f"buckets {'on' if self.pad_to_buckets else 'off'}{threads}, loaded in {time.perf_counter() - started:.1f} s")
        if self.use_graphs:
            self.capture_graphs()

    # -- shapes
    def padded_shape(self, rows: int, width: int) -> tuple[int, int]:
        if not self.pad_to_buckets:
            return rows, width
        return buckets.bucket_for(self.batch_buckets, rows), buckets.bucket_for(self.length_buckets, width)

    def grid(self) -> list[tuple[int, int]]:
        return [(b, s) for b in self.batch_buckets for s in self.length_buckets if b * s <= self.graph_max_cells]

    # -- running
    def _forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with gated_delta_rule(self.rule), causal_conv_rule(causal_conv1d), torch.inference_mode():
            if self.dtype == torch.float32:
                return self.model(ids, mask)
            return forward_fp32_residual(self.model, ids, mask, self.dtype)

    def capture_graphs(self) -> None:
        """Capture one CUDA graph per (batch, length) bucket in the grid, sharing one memory pool
        (replays never overlap: one instance runs one batch at a time)."""
        started = time.perf_counter()
        pool = torch.cuda.graph_pool_handle()
        # Largest shapes first: the shared pool is sized by the first capture.
        for b, s in sorted(self.grid(), key=lambda bs: -bs[0] * bs[1]):
            ids = torch.full((b, s), self.pad_id, dtype=torch.int64, device=self.device)
            mask = torch.ones((b, s), dtype=torch.int64, device=self.device)
            try:
                stream = torch.cuda.Stream(self.device)
                stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(stream):
                    for _ in range(2):  # autotuning and lazy init happen outside the capture
                        self._forward(ids, mask)
                torch.cuda.current_stream(self.device).wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    out = self._forward(ids, mask)
            except Exception as exc:  # noqa: BLE001 - keep serving, eager, and say why
                self.log(f"CUDA graph capture failed at (batch {b}, length {s}): {type(exc).__name__}: {exc}; "
                         "serving eager")
                self.graphs.clear()
                self.use_graphs = False
                return
            self.graphs[(b, s)] = (graph, ids, mask, out)
        torch.cuda.synchronize(self.device)
        self.log(f"captured {len(self.graphs)} CUDA graphs (batch buckets {list(self.batch_buckets)}, "
                 f"length buckets up to {max(self.length_buckets, default=0)}, <= {self.graph_max_cells} cells) "
                 f"in {time.perf_counter() - started:.1f} s")

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.device.type == "cuda":  # the server calls from its scheduler's worker thread
            with torch.cuda.device(self.device):
                return self._call(ids, mask)
        return self._call(ids, mask)

    def _call(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        rows, width = ids.shape
        b, s = self.padded_shape(rows, width)
        padded_ids = np.full((b, s), self.pad_id, dtype=np.int64)
        padded_mask = np.zeros((b, s), dtype=np.int64)
        padded_ids[:rows, :width], padded_mask[:rows, :width] = ids, mask
        padded_mask[rows:, 0] = 1  # padding rows: one pad token, never an all-zero mask
        self.shapes_run.append((b, s))
        t_ids, t_mask = torch.from_numpy(padded_ids), torch.from_numpy(padded_mask)
        entry = self.graphs.get((b, s)) if self.use_graphs else None
        if entry is not None:
            graph, static_ids, static_mask, static_out = entry
            static_ids.copy_(t_ids, non_blocking=False)
            static_mask.copy_(t_mask, non_blocking=False)
            graph.replay()
            logits = static_out[:rows].float().cpu()
        else:
            logits = self._forward(t_ids.to(self.device), t_mask.to(self.device))[:rows].float().cpu()
        if tuple(logits.shape) != (rows, self.num_labels):
            raise RuntimeError(f"encoder returned logits of shape {list(logits.shape)}, "
                               f"expected {[rows, self.num_labels]}")
        return logits.numpy()
