"""One client across three real Triton replicas on loopback: gRPC's round_robin spreads the load
(each server's own statistics show its share), a replica killed mid-stream costs no wrong answer
(every request is answered correctly or fails closed), and a restarted replica rejoins."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from opencc_cm_client import ClassifierClient, ClassifierError, ConnectionOptions, RetryPolicy
from opencc_cm_client.endpoints import EndpointError, grpc_target
from opencc_cm_contract import TEXT_ENSEMBLE
from opencc_cm_serving.launch import ServerSettings, TritonServer, free_port

from integration_support import deploy_tiny

TEXTS = [f"prompt number {i}: how do I {w}?" for i, w in enumerate(
    ["bake bread", "pick a lock", "write a poem", "fix a bike", "learn French", "grow tomatoes"] * 4)]


def served(server: TritonServer) -> int:
    """Requests this replica's text ensemble answered (its own statistics)."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        stats = c.get_inference_statistics(TEXT_ENSEMBLE).model_stats[0]
    return stats.inference_stats.success.count


def settled(servers) -> list[int]:
    """Each replica's count once it stops moving: an ensemble records a request's statistics
    just after answering it, so the last answered call may not be counted yet."""
    last = [served(s) for s in servers]
    for _ in range(50):
        time.sleep(0.3)
        now = [served(s) for s in servers]
        if now == last:
            return now
        last = now
    return last


def restart(repo, log, ports) -> TritonServer:
    """A replica on the ports of the one killed: its orphaned stubs may hold them a moment."""
    for attempt in range(20):
        try:
            return TritonServer(repo, ServerSettings(log_path=log, ready_timeout=120, **ports)).start()
        except RuntimeError as exc:
            if "already in use" not in str(exc) or attempt == 19:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def test_endpoint_lists_become_one_grpc_target():
    assert grpc_target("127.0.0.1:8001") == "127.0.0.1:8001"
    assert grpc_target("dns:///triton-headless.ns.svc:8001") == "dns:///triton-headless.ns.svc:8001"
    assert grpc_target(["127.0.0.1:1", "127.0.0.2:2"]) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert grpc_target(["[::1]:1", "[::1]:2"]) == "ipv6:[::1]:1,[::1]:2"
    for bad, problem in [(["a.example:1", "b.example:2"], "dns:///"), (["127.0.0.1:1", "[::1]:2"], "mix"),
                         (["127.0.0.1"], "HOST:PORT"), ("127.0.0.1:1,127.0.0.1:2", "as a list"), ([], "no endpoint")]:
        with pytest.raises(EndpointError, match=problem):
            grpc_target(bad if len(bad) != 1 or isinstance(bad, str) else bad * 2)


def test_three_replicas_balance_fail_over_and_rejoin(tiny_bundle, tmp_path):
    repo = deploy_tiny(tiny_bundle, tmp_path / "repo")
    ports = [dict(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port()) for _ in range(3)]
    servers = [TritonServer(repo, ServerSettings(log_path=tmp_path / f"replica{i}.log", ready_timeout=120, **p)).start()
               for i, p in enumerate(ports)]
    urls = [s.grpc_url for s in servers]
    options = ConnectionOptions(timeout_s=20, retry=RetryPolicy(attempts=20, initial_backoff_s=0.05, max_backoff_s=0.5))
    try:
        with ClassifierClient(urls[0]) as single:
            expected = {t: single.classify([t])[0] for t in TEXTS}
        with ClassifierClient(urls, options=options) as client:
            # 1. load spreads: sequential calls rotate over the three subchannels
            before = settled(servers)
            for text in TEXTS * 2:
                assert client.classify([text])[0] == expected[text]
            shares = [n - b for n, b in zip(settled(servers), before)]
            print(f"\n[replicas] {len(TEXTS) * 2} sequential requests, per replica {shares}, retries {client.retries}")
            # a call retried after UNAVAILABLE may also have been answered by the first replica
            assert len(TEXTS) * 2 <= sum(shares) <= len(TEXTS) * 2 + client.retries, (shares, client.retries)
            assert all(n > 0 for n in shares), shares

            # 2. a replica killed mid-stream: every request answered correctly or failed closed
            outcomes: list[str] = []
            lock = threading.Lock()
            stop = threading.Event()

            def stream(worker: int):
                i = 0
                while not stop.is_set() and i < 400:
                    text = TEXTS[(worker + i) % len(TEXTS)]
                    i += 1
                    try:
                        got = client.classify([text])[0]
                        kind = "ok" if got == expected[text] else "WRONG"
                    except ClassifierError as exc:
                        kind = f"failed closed ({exc.code})"
                        assert client.gate(text).escalate
                    with lock:
                        outcomes.append(kind)

            with ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(stream, w) for w in range(4)]
                while len(outcomes) < 40:
                    stop.wait(0.05)
                servers[1].process.kill()  # SIGKILL: no drain, connections drop mid-call
                killed_at = len(outcomes)
                while len(outcomes) < killed_at + 80:
                    stop.wait(0.05)
                stop.set()
                for f in futures:
                    f.result()
            servers[1].stop()
            tally = {k: outcomes.count(k) for k in set(outcomes)}
            print(f"[replicas] kill mid-stream: {len(outcomes)} requests ({killed_at} before the kill), "
                  f"outcomes {tally}, client retries {client.retries}")
            assert "WRONG" not in tally
            assert tally.get("ok", 0) >= killed_at + 40  # the other two replicas kept answering

            # 3. the restarted replica rejoins the rotation
            servers[1] = restart(repo, tmp_path / "replica1-restarted.log", ports[1])
            rejoined = 0
            for _ in range(60):  # gRPC reconnects within its backoff (max 1 s), then round_robin uses it
                for text in TEXTS[:6]:
                    assert client.classify([text])[0] == expected[text]
                rejoined = served(servers[1])
                if rejoined:
                    break
                stop.wait(0.25)
            print(f"[replicas] restarted replica answered {rejoined} requests")
            assert rejoined > 0, "the restarted replica never rejoined the rotation"
    finally:
        for server in servers:
            server.stop()
