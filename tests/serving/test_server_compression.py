"""Compressed and oversized requests against the real server.

Triton 2.51 has no received-message-size limit (see opencc_cm_serving.ingress): a small
gzip-compressed request carrying a huge text is inflated in full before the tokenizer
refuses it. These tests pin what happens: the request is refused INVALID_ARGUMENT, the server
stays up and serving, and the memory it takes is bounded by a small multiple of the inflated
size (printed; the ingress cap printed by the launcher is the real defence).
"""
from __future__ import annotations

import gzip
import threading
import time

import psutil
import pytest
from tritonclient.utils import InferenceServerException

from opencc_cm_contract import SCORES, TEXT_ENSEMBLE
from opencc_cm_serving.ingress import max_request_bytes, repository_request_cap

from serving_calls import classify_text, text_inputs

MIB = 1 << 20
BOMB_MIB = 64


def tree_rss(pid: int) -> int:
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def test_request_cap_follows_the_deployed_limits(repository, spec):
    cap = repository_request_cap(repository)
    assert cap == max_request_bytes(64, 16 * spec.max_tokens, spec.max_tokens)
    assert cap < 2 * MIB  # far below the 2 GiB Triton would accept


def test_gzip_bomb_is_refused_and_memory_stays_bounded(server, client, spec, record_property):
    text = b"a" * (BOMB_MIB * MIB)
    compressed = len(gzip.compress(text))
    assert compressed < BOMB_MIB * MIB // 500  # ~64 KiB on the wire
    pid = server.process.pid
    before = tree_rss(pid)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with pytest.raises(InferenceServerException) as info:
            client.infer(TEXT_ENSEMBLE, text_inputs([text]), compression_algorithm="gzip", client_timeout=120)
    finally:
        stop.set()
        sampler.join()
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and "above max_text_bytes" in info.value.message()
    time.sleep(0.5)
    after = tree_rss(pid)
    grew, kept = (peak[0] - before) / MIB, (after - before) / MIB
    record_property("bomb_peak_growth_mib", round(grew, 1))
    print(f"\n[gzip bomb] {compressed / 1024:.0f} KiB gzip -> {BOMB_MIB} MiB text: server RSS "
          f"{before / MIB:.0f} MiB before, peak +{grew:.0f} MiB, +{kept:.0f} MiB after")
    assert client.is_server_ready()
    assert classify_text(client, ["still serving"])[SCORES].shape == (1, spec.num_labels)
    # linear in the inflated size (~6 copies: gRPC inflate, protobuf, the tokenizer stub's shared memory
    # and numpy object array...), no worse: a 2 GiB inflated request would take ~12 GiB, hence the ingress cap
    assert grew < 8 * BOMB_MIB, f"peak growth {grew:.0f} MiB for a {BOMB_MIB} MiB inflated request"
