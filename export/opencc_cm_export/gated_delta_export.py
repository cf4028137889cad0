"""An export-friendly Gated DeltaNet chunk rule, numerically equivalent to transformers' own.

``transformers``' ``torch_chunk_gated_delta_rule`` loops in Python over ``ceil(seq/64)`` chunks
and calls ``torch.linalg.solve_triangular``. ``torch.export`` then specialises the sequence
length to the example's (the ONNX graph silently accepts one length only), and TorchScript has
no ONNX lowering for the triangular solve. This version keeps the same arithmetic but
- inverts each 64x64 unit lower-triangular system with a fixed-depth block recursion
  (6 levels of 2x2 block inverses, no data-dependent loop), and
- runs the recurrence over chunks as ``torch._higher_order_ops.scan``, which exports to one
  ONNX ``Scan`` per DeltaNet layer with a symbolic number of chunks.
Only the prefill path without a cache is covered: that is all a classifier needs.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch._higher_order_ops.scan import scan

CHUNK_SIZE = 64


def _l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + eps)


def _lower_block_indices(n: int, s: int, device=None) -> torch.Tensor:
    """Flat indices of the lower-left s x s block of each 2s x 2s diagonal block of an n x n matrix.

    Built on ``device`` directly: a host-to-device copy would break CUDA graph capture."""
    pairs = torch.arange(n // (2 * s), device=device)
    rows = (2 * pairs + 1)[:, None, None] * s + torch.arange(s, device=device)[None, :, None]
    cols = (2 * pairs)[:, None, None] * s + torch.arange(s, device=device)[None, None, :]
    return (rows * n + cols).reshape(-1)


def unit_lower_triangular_inverse(strict_lower: torch.Tensor) -> torch.Tensor:
    """Inverse of ``I + L`` for a strictly lower-triangular ``L`` of shape [..., n, n], n a power of 2.

    Blocks double in size each level: inv([[A, 0], [C, D]]) = [[A^-1, 0], [-D^-1 C A^-1, D^-1]].
    """
    n = strict_lower.shape[-1]
    lead = strict_lower.shape[:-2]
    flat = strict_lower.reshape(*lead, n * n)
    blocks = torch.ones(*lead, n, 1, 1, dtype=strict_lower.dtype, device=strict_lower.device)
    s = 1
    while s < n:
        idx = _lower_block_indices(n, s, strict_lower.device)
        c = torch.index_select(flat, -1, idx).reshape(*lead, n // (2 * s), s, s)
        a_inv, d_inv = blocks[..., 0::2, :, :], blocks[..., 1::2, :, :]
        x = -(d_inv @ c @ a_inv)
        top = torch.cat([a_inv, torch.zeros_like(a_inv)], dim=-1)
        bottom = torch.cat([x, d_inv], dim=-1)
        blocks = torch.cat([top, bottom], dim=-2)
        s *= 2
    return blocks.reshape(*lead, n, n)


def _chunk_step(state, chunk):
    """One chunk of the recurrence: carry the [B, H, K, V] state, emit the chunk's output."""
    new_values, k_cumdecay, query, intra_attn, key, chunk_decay = chunk
    v_new = new_values - k_cumdecay @ state
    out = query @ state + intra_attn @ v_new
    state = state * chunk_decay + key.transpose(-1, -2) @ v_new
    return state, out


def loop_over_chunks(step, state, xs):
    """``scan``'s contract as a plain Python loop over the leading (chunk) axis: what eager
    serving runs (a fixed number of kernels per shape, so CUDA graphs can capture it)."""
    outs = []
    for i in range(xs[0].shape[0]):
        state, out = step(state, [x[i] for x in xs])
        outs.append(out)
    return state, torch.stack(outs)


def scan_chunk_gated_delta_rule(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    chunk_size: int = CHUNK_SIZE,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    recurrence=scan,
    **kwargs,
):
    """Drop-in for ``torch_chunk_gated_delta_rule`` (prefill, no cache). Same shapes and dtypes.

    ``recurrence`` runs ``_chunk_step`` over the chunks: ``scan`` for export (one ONNX ``Scan``),
    :func:`loop_over_chunks` for eager serving (:func:`torch_chunk_rule`)."""
    if initial_state is not None or output_final_state:
        raise NotImplementedError("the export rule covers the prefill path without a cache only")
    initial_dtype = query.dtype
    batch, seq_len, num_k_heads, k_dim = key.shape
    num_v_heads, v_dim = value.shape[-2:]
    if num_k_heads != num_v_heads:
        query = query.repeat_interleave(num_v_heads // num_k_heads, dim=2)
        key = key.repeat_interleave(num_v_heads // num_k_heads, dim=2)
    query, key, value, beta, decay = [
        x.transpose(1, 2).to(torch.float32).contiguous() for x in (query, key, value, beta, g)
    ]
    if use_qk_l2norm_in_kernel:
        query, key = _l2norm(query), _l2norm(key)
    query = query * (query.shape[-1] ** -0.5)

    pad = (chunk_size - seq_len % chunk_size) % chunk_size
    query, key, value = (F.pad(x, (0, 0, 0, pad)) for x in (query, key, value))
    beta, decay = (F.pad(x, (0, pad)) for x in (beta, decay))

    v_beta = value * beta.unsqueeze(-1)
    k_beta = key * beta.unsqueeze(-1)
    heads = query.shape[1]
    query, key, k_beta, v_beta = [
        x.reshape(batch, heads, -1, chunk_size, x.shape[-1]) for x in (query, key, k_beta, v_beta)
    ]
    decay = decay.reshape(batch, heads, -1, chunk_size)
    upper = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=query.device).triu(1)
    cum_decay = decay.cumsum(dim=3)
    pairwise = (cum_decay.unsqueeze(4) - cum_decay.unsqueeze(3)).masked_fill(upper, float("-inf")).exp()
    ut_system = (k_beta @ key.transpose(-1, -2)) * pairwise
    intra_attn = (query @ key.transpose(-1, -2)) * pairwise
    decayed_k_beta = k_beta * cum_decay.exp().unsqueeze(-1)

    inverse = unit_lower_triangular_inverse(ut_system.tril(-1))
    new_values = inverse @ v_beta
    k_cumdecay = inverse @ decayed_k_beta

    query = query * cum_decay.exp().unsqueeze(-1)
    key = key * (cum_decay[..., -1:] - cum_decay).exp().unsqueeze(-1)
    chunk_decay = cum_decay[..., -1].exp()[..., None, None]

    # Chunks to the front for the scan: [num_chunks, B, H, ...]
    xs = [
        x.movedim(2, 0)
        for x in (new_values, k_cumdecay, query, intra_attn, key, chunk_decay)
    ]
    state0 = torch.zeros(batch, heads, k_dim, v_dim, dtype=torch.float32, device=query.device)
    _, out = recurrence(_chunk_step, state0, xs)
    out = out.movedim(0, 2).reshape(batch, heads, -1, v_dim)[:, :, :seq_len]
    return out.transpose(1, 2).contiguous().to(initial_dtype), None


def torch_chunk_rule(*args, **kwargs):
    """The project's eager Gated DeltaNet rule (the export rule's arithmetic, chunks in a loop):
    what the python-torch encoder runs when fla-core's kernel is not usable."""
    return scan_chunk_gated_delta_rule(*args, recurrence=loop_over_chunks, **kwargs)


@contextlib.contextmanager
def gated_delta_rule(rule) -> Iterator[None]:
    """Route Qwen3.5's DeltaNet layers through ``rule`` inside the block (process-wide: the
    layers call a module-level function)."""
    from transformers.models.qwen3_5 import modeling_qwen3_5 as qwen

    original = qwen.torch_chunk_gated_delta_rule
    qwen.torch_chunk_gated_delta_rule = rule
    try:
        yield
    finally:
        qwen.torch_chunk_gated_delta_rule = original


@contextlib.contextmanager
def export_friendly_gated_delta() -> Iterator[None]:
    """Route Qwen3.5's DeltaNet layers through :func:`scan_chunk_gated_delta_rule` inside the block."""
    with gated_delta_rule(scan_chunk_gated_delta_rule):
        yield


def causal_conv1d(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  activation: str | None = None, **kwargs) -> torch.Tensor:
    """Drop-in for transformers' ``causal_conv1d_fn`` (prefill, no cache): the depthwise causal
    convolution of the DeltaNet layers, ``hidden_states`` [B, C, T] (a transposed view of the
    token-major [B, T, C] projection), ``weight`` [C, K].

    Computed on the token-major layout as K shifted multiply-adds accumulated in fp32, then
    rounded once to ``weight``'s dtype before the activation, as transformers' ``conv1d``
    fallback rounds its output (so bf16 sees the same rounding points); no transposed copy and
    no K - 1 extra output steps to slice away. Returns a [B, C, T] view like the original."""
    from transformers.activations import ACT2FN

    kernel = weight.shape[-1]
    tokens = hidden_states.transpose(1, 2)  # [B, T, C]; a view of the projection's output
    seq_len = tokens.shape[1]
    padded = F.pad(tokens.to(weight.dtype), (0, 0, kernel - 1, 0))
    taps = weight.to(torch.float32).t()  # [K, C]
    acc = padded[:, 0:seq_len].to(torch.float32) * taps[0]
    for k in range(1, kernel):
        acc.addcmul_(padded[:, k:k + seq_len], taps[k])
    if bias is not None:
        acc += bias.to(torch.float32)
    out = acc.to(weight.dtype)
    if activation is not None:
        out = ACT2FN[activation](out)
    return out.to(hidden_states.dtype).transpose(1, 2)


@contextlib.contextmanager
def causal_conv_rule(fn) -> Iterator[None]:
    """Route Qwen3.5's DeltaNet convolution (prefill) through ``fn`` inside the block
    (process-wide, like :func:`gated_delta_rule`)."""
    from transformers.models.qwen3_5 import modeling_qwen3_5 as qwen

    original = qwen.causal_conv1d_fn
    qwen.causal_conv1d_fn = fn
    try:
        yield
    finally:
        qwen.causal_conv1d_fn = original
