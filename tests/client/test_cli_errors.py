"""``opencc-cm`` failures that need no server: each exits 2 with one line on stderr naming the problem
(never a traceback, never exit 1, which means "flagged"). Live-server cases are in
tests/integration/test_cli.py."""
from __future__ import annotations

import argparse
import fcntl
import os
import struct
import subprocess
import sys
import termios

import pytest

from opencc_cm_client.cli import _progress, build_parser, main
from opencc_cm_client.evaluation import read_samples
from opencc_cm_serving.launch import free_port

JSONL = '{"text": "how do I bake bread?", "category": "Benign"}\n'


def run(argv, capsys) -> tuple[int, str]:
    """Exit status and stderr of the CLI run in this process."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code, err, *words):
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("opencc-cm"), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(JSONL)
    return path


def test_a_missing_tokenizer_is_an_error_not_a_flag(tmp_path, capsys):
    """The issue's own example: a traceback and exit 1 before; now exit 2, one line."""
    code, err = run(["check", "--tokenizer", str(tmp_path / "missing.json"), "hi"], capsys)
    assert_one_line_error(code, err, "--tokenizer", "missing.json", "No such file")
    done = subprocess.run([sys.executable, "-m", "opencc_cm_client", "check", "--tokenizer",
                           str(tmp_path / "missing.json"), "hi"], capture_output=True, text=True, timeout=60)
    assert_one_line_error(done.returncode, done.stderr, "missing.json")


@pytest.mark.parametrize("content, words", [("{", "not a tokenizer.json"), ("{}", "not a tokenizer.json")])
def test_a_file_that_is_not_a_tokenizer_is_named(tmp_path, capsys, content, words):
    bad = tmp_path / "tokenizer.json"
    bad.write_text(content)
    code, err = run(["check", "--url", f"127.0.0.1:{free_port()}", "--tokenizer", str(bad), "hi"], capsys)
    assert_one_line_error(code, err, str(bad), words)


@pytest.mark.parametrize("value, words", [("foo", "'foo' is not KEY=VALUE"), ("=x", "is not KEY=VALUE"),
                                          ("bad key=x", "header key 'bad key'"),
                                          ("grpc-timeout=1", "reserved"), ("k=caf\u00e9", "printable ASCII")])
def test_malformed_headers_are_refused(capsys, value, words):
    code, err = run(["check", "--header", value, "hi"], capsys)
    assert_one_line_error(code, err, "--header", words)


def test_header_values_may_hold_equals_signs_and_keys_are_sent_lowercase():
    args = build_parser().parse_args(["check", "--header", "Authorization=Bearer a=b", "--header", "x-id=7", "t"])
    assert args.header == [("authorization", "Bearer a=b"), ("x-id", "7")]


@pytest.mark.parametrize("argv, words", [
    (["eval", "--batch-size", "0"], "--batch-size: 0 must be >= 1"),
    (["eval", "--batch-size", "-3"], "--batch-size: -3 must be >= 1"),
    (["eval", "--batch-size", "two"], "'two' is not an integer"),
    (["eval", "--timeout", "-1"], "--timeout: -1 must be > 0"),
    (["eval", "--timeout", "0"], "--timeout: 0 must be > 0"),
    (["eval", "--timeout", "nan"], "'nan' is not finite"),
    (["eval", "--dollars-per-hour", "-2"], "--dollars-per-hour: -2 must be >= 0"),
    (["calibrate", "--out", "o.json", "--target-recall", "1.5"], "--target-recall: 1.5 must be <= 1"),
    (["calibrate", "--out", "o.json", "--target-recall", "0"], "--target-recall: 0 must be > 0"),
    (["calibrate", "--out", "o.json", "--target-fpr", "-0.1"], "--target-fpr: -0.1 must be > 0"),
    (["calibrate", "--out", "o.json", "--target-fpr", "inf"], "'inf' is not finite"),
    (["calibrate", "--out", "o.json", "--target-fpr", "0.1", "--name", "../x"], "--name: '../x'"),
    (["calibrate", "--out", "/nonexistent-dir/o.json", "--target-fpr", "0.1"], "folder '/nonexistent-dir'"),
    (["eval", "--report", "/"], "--report: '/' is a directory"),
])
def test_out_of_range_numbers_are_rejected_by_argparse(data, capsys, argv, words):
    code, err = run([argv[0], str(data), *argv[1:]], capsys)
    assert_one_line_error(code, err, words)


def test_the_boundaries_of_the_ranges_are_accepted():
    parser = build_parser()
    assert parser.parse_args(["calibrate", "d", "--out", "o", "--target-recall", "1"]).target_recall == 1.0
    assert parser.parse_args(["calibrate", "d", "--out", "o", "--target-fpr", "1e-3"]).target_fpr == 0.001
    assert parser.parse_args(["eval", "d", "--batch-size", "1", "--dollars-per-hour", "0"]).batch_size == 1


BAD_DATA = {
    "missing.jsonl": (None, "No such file"),
    "latin1.jsonl": (b'{"text": "caf\xe9", "category": "Benign"}\n', "not UTF-8 text"),
    "broken.jsonl": (JSONL.encode() + b'{"text": "x", \n', "broken.jsonl:2: invalid JSON"),
    "list.jsonl": (b'["x", "Benign"]\n', "list.jsonl:1: row needs string fields"),
    "number.jsonl": (b'{"text": 3, "category": "Benign"}\n', "number.jsonl:1: row needs string fields"),
    "empty.jsonl": (b"\n\n", "no samples"),
    "notext.csv": (b"prompt,category\nx,Benign\n", "lacks column(s) ['text']"),
    "huge.csv": (b'text,category\n"' + b"x" * 200_000 + b'",Benign\n', "malformed CSV"),
    "short.csv": (b"text,category\nonly-text\n", "short.csv:2: row needs string fields"),
}


@pytest.mark.parametrize("command", ["eval", "calibrate"])
@pytest.mark.parametrize("name", sorted(BAD_DATA))
def test_unreadable_or_malformed_data_is_named(tmp_path, capsys, command, name):
    content, words = BAD_DATA[name]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    extra = ["--out", str(tmp_path / "o.json"), "--target-fpr", "0.1"] if command == "calibrate" else []
    # the data is read before any connection: a dead port proves no server was needed
    code, err = run([command, "--url", f"127.0.0.1:{free_port()}", str(path), *extra], capsys)
    assert_one_line_error(code, err, name, words)


def test_a_directory_is_not_data(tmp_path, capsys):
    code, err = run(["eval", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "Is a directory")


def test_csv_with_a_byte_order_mark_keeps_its_text_header(tmp_path):
    plain = "text,category\n\"x, with comma\",Cyber\ny,Benign\n"
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + plain.encode())  # as Excel saves "CSV UTF-8"
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + JSONL.encode())
    samples = read_samples(tmp_path / "bom.csv")
    assert [(s.text, s.category) for s in samples] == [("x, with comma", "Cyber"), ("y", "Benign")]
    assert read_samples(tmp_path / "bom.jsonl")[0].text == "how do I bake bread?"


def test_an_unreachable_server_is_an_error_not_a_flag(capsys):
    code, err = run(["check", "--url", f"127.0.0.1:{free_port()}", "--timeout", "2", "hi"], capsys)
    assert_one_line_error(code, err, "UNAVAILABLE")


def test_no_text_is_an_error(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    code, err = run(["check"], capsys)
    assert_one_line_error(code, err, "no text given")


def test_every_argument_has_help_and_shows_its_default():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == {"check", "eval", "calibrate", "serve-http"}
    from opencc_cm_http.cli import build_parser as serve_http_parser  # serve-http's options live there

    for name, sub in [*subparsers.choices.items(), ("serve-http options", serve_http_parser())]:
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.dest)
            if action.default not in (None, False):
                assert f"{' '.join(action.help.split())} (default: {action.default})" in text, (name, action.dest)
    eval_help = " ".join(subparsers.choices["eval"].format_help().split())
    assert "(default: 1)" in eval_help and "(default: 127.0.0.1:8001)" in eval_help and "(default: 30.0)" in eval_help


def test_progress_is_drawn_on_a_terminal_only(capsys, monkeypatch):
    with _progress(3, "eval") as bar:  # stderr captured by pytest: not a terminal
        bar.update(3)
        quiet = bar.disable
    assert quiet and capsys.readouterr().err == ""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a terminal has a size
    terminal = os.fdopen(slave, "w")
    try:
        with monkeypatch.context() as patch:
            patch.setattr(sys, "stderr", terminal)
            with _progress(3, "eval") as bar:
                bar.update(3)
                quiet = bar.disable
            terminal.flush()
        drawn = os.read(master, 4096).decode()
    finally:
        terminal.close()
        os.close(master)
    assert not quiet and "eval:" in drawn and "0/3" in drawn and "prompt/s" in drawn
