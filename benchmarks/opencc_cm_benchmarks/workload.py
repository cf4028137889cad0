"""The benchmarks' workload: prompts with the BELLS-O length profile and the plan of how much
of each measurement (fixed counts, so two runs do the same work)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LONG_TOKENS = 256  # "long tail": prompts of at least this many tokens


@dataclass
class Plan:
    """How much of each measurement; fixed counts, so two runs do the same work."""

    prompts: int = 40              # timed prompts of each batch-1 sequential path
    batch16_prompts: int = 32      # timed prompts of the baseline at batch 16 (2 batches)
    warmup: int = 3                # untimed prompts before each path
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    requests_per_client: int = 2   # requests of a concurrency level: max(min_requests, N x this)
    min_requests: int = 24
    concurrent_paths: tuple[str, ...] = ("ids", "text")
    tail_share: float = 0.05       # share of prompts with 256..tail_max tokens
    short_tokens: tuple[int, int] = (8, 36)
    tail_tokens: tuple[int, int] = (256, 384)
    seed: int = 0

    def requests(self, clients: int) -> int:
        """max(min_requests, N x requests_per_client), rounded up to whole passes over the
        prompts, so every level sees the same length mix."""
        wanted = max(self.min_requests, clients * self.requests_per_client)
        return math.ceil(wanted / self.prompts) * self.prompts


QUICK = dict(prompts=6, batch16_prompts=6, warmup=1, concurrency=(1, 4), requests_per_client=2, min_requests=4,
             tail_share=1 / 6)


def bells_o_prompts(count_tokens, n: int, *, seed: int = 0, tail_share: float = 0.05,
                    short_tokens=(8, 36), tail_tokens=(256, 384)) -> list[str]:
    """``n`` texts with the BELLS-O length profile: exactly ``round(n * tail_share)`` of them
    (at least one when the share is > 0) of ``tail_tokens`` tokens, the rest uniform in
    ``short_tokens``; positions shuffled with ``seed``. Words come from the synthetic corpus
    (as ``gpu_check.prompt_texts``), so they tokenize like text. ``count_tokens(text) -> int``."""
    from opencc_cm_export.synthetic_checkpoint import calibration_prompts

    rng = np.random.default_rng(seed)
    words = " ".join(calibration_prompts()).split()
    n_long = min(n, max(1 if tail_share > 0 else 0, round(n * tail_share)))
    targets = np.concatenate([rng.integers(tail_tokens[0], tail_tokens[1] + 1, n_long),
                              rng.integers(short_tokens[0], short_tokens[1] + 1, n - n_long)])
    rng.shuffle(targets)
    texts = []
    for target in targets:
        picked: list[str] = []
        for _ in range(4 * int(target) + 8):  # bounded: every word adds >= 1 token
            if count_tokens(" ".join(picked)) >= target:
                break
            picked.append(str(rng.choice(words)))
        texts.append(" ".join(picked))
    return texts
