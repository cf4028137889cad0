"""Retries across a server restart, and TLS / mTLS with certificates made in the test (trustme)."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import trustme

from opencc_cm_client import ClassifierClient, ConnectionOptions, RetryPolicy, UnavailableError
from opencc_cm_serving.launch import ServerSettings, TritonServer, free_port

from integration_support import deploy_tiny


@pytest.fixture(scope="module")
def repo(tiny_bundle, tmp_path_factory):
    return deploy_tiny(tiny_bundle, tmp_path_factory.mktemp("resilience") / "repo")


def test_client_retries_recover_from_a_server_restart(repo, tmp_path):
    ports = dict(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    patient = ConnectionOptions(timeout_s=10, retry=RetryPolicy(attempts=60, initial_backoff_s=0.1, max_backoff_s=0.5))
    first = TritonServer(repo, ServerSettings(log_path=tmp_path / "first.log", **ports)).start()
    client = ClassifierClient(first.grpc_url, options=patient)
    try:
        before = client.classify(["before the restart"])[0]
        first.stop()
        second = TritonServer(repo, ServerSettings(log_path=tmp_path / "second.log", **ports))
        # The call goes out while the server is down; the server comes back a second later.
        # (Started from this thread: the launcher ties the server's life to its starting thread.)
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            pending = pool.submit(lambda: client.classify(["before the restart"])[0])
            time.sleep(1.0)
            second.start()
            after = pending.result()
            waited = time.monotonic() - started
    finally:
        client.close()
        first.stop()
        second.stop()
    assert after == before  # a correct answer, never a wrong one
    assert client.retries >= 1 and waited > 1.0
    print(f"\nrestart: recovered after {client.retries} retries in {waited:.1f} s")


def test_unavailable_after_the_retry_budget_is_a_clear_error():
    dead = f"127.0.0.1:{free_port()}"
    options = ConnectionOptions(timeout_s=2, retry=RetryPolicy(attempts=3, initial_backoff_s=0.05))
    with ClassifierClient(dead, options=options) as client:
        with pytest.raises(UnavailableError, match="UNAVAILABLE"):
            client.classify(["anyone there?"])
        assert client.retries == 2
        assert client.gate("anyone there?").escalate


def _write_leaf(leaf: trustme.LeafCert, d, name: str) -> None:
    leaf.private_key_pem.write_to_path(str(d / f"{name}.key"))
    (d / f"{name}.crt").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA, a server cert for 127.0.0.1 and a client cert signed by it, and an unrelated CA
    (made by ``trustme``, in memory: no ``openssl`` binary needed)."""
    d = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.crt"))
    other.cert_pem.write_to_path(str(d / "other-ca.crt"))
    _write_leaf(ca.issue_cert("127.0.0.1", "localhost"), d, "server")
    _write_leaf(ca.issue_cert("client.example", common_name="client"), d, "client")
    return d


def test_mutual_tls_with_self_signed_certificates(repo, certificates, tmp_path):
    d = certificates
    tls = dict(ssl=True, root_certificates=str(d / "ca.crt"), private_key=str(d / "client.key"),
               certificate_chain=str(d / "client.crt"))
    flags = ["--grpc-use-ssl=true", "--grpc-use-ssl-mutual=true", f"--grpc-server-cert={d / 'server.crt'}",
             f"--grpc-server-key={d / 'server.key'}", f"--grpc-root-cert={d / 'ca.crt'}"]
    no_retry = RetryPolicy(attempts=1)
    with TritonServer(repo, ServerSettings(log_path=tmp_path / "tls.log", extra_args=flags, client_kwargs=tls)) as server:
        with ClassifierClient(server.grpc_url, options=ConnectionOptions(**tls)) as client:
            assert client.classify(["over mutual TLS"])[0].input_tokens > 0
        wrong_ca = dict(tls, root_certificates=str(d / "other-ca.crt"))
        with ClassifierClient(server.grpc_url, options=ConnectionOptions(retry=no_retry, timeout_s=5, **wrong_ca)) as c:
            with pytest.raises(UnavailableError):
                c.classify(["server cert not trusted"])
        no_client_cert = dict(ssl=True, root_certificates=str(d / "ca.crt"))
        with ClassifierClient(server.grpc_url, options=ConnectionOptions(retry=no_retry, timeout_s=5, **no_client_cert)) as c:
            with pytest.raises(UnavailableError):
                c.classify(["no client certificate"])
        with ClassifierClient(server.grpc_url, options=ConnectionOptions(retry=no_retry, timeout_s=5)) as c:
            with pytest.raises(UnavailableError):
                c.classify(["plaintext to a TLS port"])
