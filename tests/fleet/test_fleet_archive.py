"""The init container's versioned model repository: pack (CI) and fetch (pod), run as the
command line the Deployment uses, on file:// URLs. Also deploy's perf_analyzer input files."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

import pytest

from fleet_support import FLEET

SCRIPT = FLEET / "images" / "model_repository_archive.py"


def run(*args, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture
def repository(tmp_path):
    repo = tmp_path / "filled"
    for model in ("classify_text", "classify_ids", "encoder"):
        (repo / model / "1").mkdir(parents=True)
        (repo / model / "config.pbtxt").write_text(f'name: "{model}"\n')
    (repo / "encoder" / "1" / "model.onnx").write_bytes(bytes(range(256)) * 64)
    (repo / "encoder" / "1" / "__pycache__").mkdir()
    (repo / "encoder" / "1" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    return repo


def test_pack_then_fetch_round_trip(repository, tmp_path):
    archive = tmp_path / "store" / "opencc-cm-v1.tar.gz"
    packed = run("pack", "--repository", str(repository), "--out", str(archive))
    assert packed.returncode == 0, packed.stderr
    sha = packed.stdout.strip()
    dest = tmp_path / "models"
    fetched = run("fetch", "--url", archive.as_uri(), "--sha256", sha, "--dest", str(dest))
    assert fetched.returncode == 0, fetched.stderr
    got = dest / "repository"
    assert (got / "encoder" / "1" / "model.onnx").read_bytes() == (repository / "encoder" / "1" / "model.onnx").read_bytes()
    assert (got / "classify_ids" / "config.pbtxt").read_text() == 'name: "classify_ids"\n'
    assert not (got / "encoder" / "1" / "__pycache__").exists()
    assert (got / ".sha256").read_text().strip() == sha
    # a restarted init container: same sha256, nothing downloaded or replaced
    before = (got / "encoder" / "1" / "model.onnx").stat().st_mtime_ns
    archive.unlink()
    again = run("fetch", "--url", archive.as_uri(), "--sha256", sha, "--dest", str(dest))
    assert again.returncode == 0 and (got / "encoder" / "1" / "model.onnx").stat().st_mtime_ns == before


def test_fetch_refuses_a_wrong_sha256_before_unpacking(repository, tmp_path):
    archive = tmp_path / "a.tar.gz"
    assert run("pack", "--repository", str(repository), "--out", str(archive)).returncode == 0
    dest = tmp_path / "models"
    done = run("fetch", "--url", archive.as_uri(), "--sha256", "0" * 64, "--dest", str(dest))
    assert done.returncode == 1 and "sha256 mismatch" in done.stderr
    assert not (dest / "repository").exists() and [p.name for p in dest.iterdir()] == []


def _tar(members: dict[str, bytes], path):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_fetch_refuses_unsafe_or_incomplete_archives(tmp_path):
    from model_repository_archive import sha256_file

    cases = {
        "escape": {"classify_text/config.pbtxt": b"x", "classify_ids/config.pbtxt": b"x", "../evil": b"x"},
        "absolute": {"classify_text/config.pbtxt": b"x", "classify_ids/config.pbtxt": b"x",
                     str(tmp_path / "abs-evil"): b"x"},
        "templates only": {"classify_text/config.pbtxt.template": b"x", "classify_ids/config.pbtxt": b"x"},
    }
    for i, (case, members) in enumerate(cases.items()):
        archive = tmp_path / f"{i}.tar.gz"
        _tar(members, archive)
        dest = tmp_path / f"dest{i}"
        done = run("fetch", "--url", archive.as_uri(), "--sha256", sha256_file(archive), "--dest", str(dest))
        assert done.returncode == 1, (case, done.stdout, done.stderr)
        assert not (dest / "repository").exists(), case
    assert not (tmp_path / "evil").exists() and not (tmp_path / "abs-evil").exists()


def test_fetch_settings_from_the_environment_and_bad_usage(repository, tmp_path):
    import os

    archive = tmp_path / "a.tar.gz"
    sha = run("pack", "--repository", str(repository), "--out", str(archive)).stdout.strip()
    env = {**os.environ, "MODEL_REPOSITORY_URL": archive.as_uri(), "MODEL_REPOSITORY_SHA256": sha}
    assert run("fetch", "--dest", str(tmp_path / "m"), env=env).returncode == 0
    assert run("fetch", "--url", archive.as_uri(), "--sha256", "abc", "--dest", str(tmp_path / "n")).returncode == 2
    assert run("fetch", "--url", "ftp://x/y", "--sha256", sha, "--dest", str(tmp_path / "n")).returncode == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("pack", "--repository", str(empty), "--out", str(tmp_path / "e.tar.gz")).returncode == 1


def test_perf_inputs_reject_texts_the_server_would_reject(tmp_path):
    """write_perf_inputs on the toy bundle: the built-in texts minus those above max_tokens;
    given texts are all kept or refused (ConfigError, deploy exits 2)."""
    from toy_bundle import MAX_TOKENS, make_toy_bundle

    from opencc_cm_contract.text_rules import encode_texts, load_tokenizer
    from opencc_cm_serving.deploy import PERF_TEXTS, main as deploy_main, write_perf_inputs
    from opencc_cm_serving.errors import ConfigError

    bundle = make_toy_bundle(tmp_path / "bundle")
    tokenizer = load_tokenizer(bundle / "tokenizer.json")
    fitting = [t for t, ids in zip(PERF_TEXTS, encode_texts(tokenizer, list(PERF_TEXTS))) if len(ids) <= MAX_TOKENS]
    assert 8 <= len(fitting) < len(PERF_TEXTS)  # the toy's 64-token limit drops the long ones
    files = write_perf_inputs(bundle, tmp_path / "perf")
    ids = json.loads(files["classify_ids"].read_text(encoding="utf-8"))["data"]
    texts = json.loads(files["classify_text"].read_text(encoding="utf-8"))["data"]
    assert [e["text"]["content"][0] for e in texts] == fitting
    for entry, text in zip(ids, fitting):
        expected = encode_texts(tokenizer, [text])[0]
        assert entry["input_ids"] == {"content": expected, "shape": [len(expected)]}
        assert entry["attention_mask"] == {"content": [1] * len(expected), "shape": [len(expected)]}
    with pytest.raises(ConfigError, match="above max_tokens"):
        write_perf_inputs(bundle, tmp_path / "x", [PERF_TEXTS[-1]])
    with pytest.raises(ConfigError, match="whitespace-only"):
        write_perf_inputs(bundle, tmp_path / "x", ["ok", "   "])
    lines = tmp_path / "texts.jsonl"
    lines.write_text('{"text": "hello there"}\nplain line\n\n', encoding="utf-8")
    out = tmp_path / "from-file"
    args = ["--bundle", str(bundle), "--output", str(tmp_path / "repo"), "--perf-input-dir", str(out)]
    repository = str(FLEET.parent / "model_repository")
    assert deploy_main([*args, "--repository", repository, "--perf-texts", str(lines)]) == 0
    data = json.loads((out / "classify_text.json").read_text(encoding="utf-8"))["data"]
    assert [e["text"]["content"][0] for e in data] == ["hello there", "plain line"]
    lines.write_text('{"txt": "x"}\n', encoding="utf-8")
    assert deploy_main([*args, "--repository", repository, "--perf-texts", str(lines)]) == 2
