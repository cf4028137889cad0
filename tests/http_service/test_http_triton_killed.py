"""Triton SIGKILLed while the OpenCC-compatible service has requests in flight (a server of its
own, so the other tests keep theirs). A service with that one replica answers every request in
flight and every later one, as JSON, with the configured action and the failure in its trace,
never ``allow``, and ``/health`` turns 503. A service balancing over that replica and a second
one (the client's round_robin) answers every request with the real decision: the calls on the
killed replica are retried on the other."""
from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from opencc_cm_client import ClassifierClient
from opencc_cm_http import create_app
from opencc_cm_serving.launch import ServerSettings, TritonServer, free_port

from http_service_support import CM_ONLY, config, metric, post_check, serving, wait_for

TEXTS = [f"Tell me about the history of bread, part {i}." for i in range(6)]


def health(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=60) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_triton_killed_mid_run(two_classifier_repo, both, tmp_path):
    with ClassifierClient(both.grpc_url) as client:
        expected = ["annotate" if r.flagged else "allow" for r in client.classify(TEXTS)]
    with TritonServer(two_classifier_repo, ServerSettings(log_path=tmp_path / "server.log", ready_timeout=180)) as doomed:
        # deadlines well above what a refused connection and the client's retries take
        alone = create_app(config(CM_ONLY), doomed.grpc_url, deadline_s=60)
        replicated = create_app(config(CM_ONLY), [doomed.grpc_url, both.grpc_url], deadline_s=60)
        with serving(alone, free_port()) as url, serving(replicated, free_port()) as url2, \
                ThreadPoolExecutor(2 * len(TEXTS)) as pool:
            before = [post_check(u, {"text": t}) for u in (url, url2) for t in TEXTS[:2]]
            assert health(url) == health(url2) == 200
            os.kill(doomed.process.pid, signal.SIGSTOP)  # hold the next requests inside that Triton
            in_flight = [pool.submit(post_check, url, {"text": t}) for t in TEXTS]
            balanced = [pool.submit(post_check, url2, {"text": t}) for t in TEXTS]
            wait_for(lambda: metric(url, "opencc_http_in_flight") == len(TEXTS), "requests in flight")
            doomed.process.kill()  # SIGKILL: connections drop under the requests in flight
            doomed.process.wait(60)
            during = [f.result(timeout=300) for f in in_flight]  # each one answered, none hangs
            after = [post_check(url, {"text": t}) for t in TEXTS[:2]]
            survived = [f.result(timeout=300) for f in balanced] + [post_check(url2, {"text": t}) for t in TEXTS]
            assert health(url) == 503 and health(url2) == 200
    assert all(status == 200 and answer["trace"][0]["outcome"] != "error" for status, answer in before)
    for status, answer in during + after:
        assert status == 200
        assert answer["decision"] == "block" and answer["output_text"] is None
        assert answer["trace"][-1]["stage"] == "content_moderation" and answer["trace"][-1]["outcome"] == "error"
        assert "fail closed" in answer["reason"]
    assert [status for status, _ in survived] == [200] * 2 * len(TEXTS)
    assert [answer["decision"] for _, answer in survived] == expected * 2
