"""Triton SIGKILLed while the OpenCC-compatible service has requests in flight (its own server,
so the other tests keep theirs): every request in flight and every later one is answered, as
JSON, with the configured action and the failure in its trace, never ``allow``; ``/health``
turns 503."""
from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from opencc_cm_http import create_app
from opencc_cm_serving.launch import TritonServer, free_port

from http_service_support import CM_ONLY, config, metric, post_check, serving, wait_for

TEXTS = [f"Tell me about the history of bread, part {i}." for i in range(6)]


def health(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=60) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_triton_killed_mid_run_fails_closed(two_classifier_repo, tmp_path):
    with TritonServer(two_classifier_repo, log_path=tmp_path / "server.log", ready_timeout=180) as server:
        # deadline well above what a refused connection and the client's retries take
        app = create_app(config(CM_ONLY), server.grpc_url, deadline_s=60)
        with serving(app, free_port()) as url, ThreadPoolExecutor(len(TEXTS)) as pool:
            before = [post_check(url, {"text": t}) for t in TEXTS[:2]]
            assert health(url) == 200
            os.kill(server.process.pid, signal.SIGSTOP)  # hold the next requests inside Triton
            in_flight = [pool.submit(post_check, url, {"text": t}) for t in TEXTS]
            wait_for(lambda: metric(url, "opencc_http_in_flight") == len(TEXTS), "requests in flight")
            server.process.kill()  # SIGKILL: connections drop under the requests in flight
            server.process.wait(60)
            during = [f.result(timeout=300) for f in in_flight]  # each one answered, none hangs
            after = [post_check(url, {"text": t}) for t in TEXTS[:2]]
            assert health(url) == 503
    assert all(status == 200 and answer["trace"][0]["outcome"] != "error" for status, answer in before)
    for status, answer in during + after:
        assert status == 200
        assert answer["decision"] == "block" and answer["output_text"] is None
        assert answer["trace"][-1]["stage"] == "content_moderation" and answer["trace"][-1]["outcome"] == "error"
        assert "fail closed" in answer["reason"]
