"""Bad input at scale: hypothesis-generated raw gRPC requests against both ensembles.

Requests are built as ``ModelInferRequest`` protobufs (no client-side checks in the way):
bytes and unicode edge cases, invalid UTF-8, huge and empty tensors, wrong datatypes, ranks
and shapes, payloads that lie about their size, BYTES length prefixes that overflow,
out-of-range ids, masks that do not match, missing / extra / duplicate inputs, and odd request
parameters (unknown or path-like ``threshold_profile``, non-string values, very long strings,
unknown names, Triton's reserved keys). Each request's validity is predicted independently (the rules in
serving/README.md, "Errors"); a request predicted valid must get the reference answer, one
predicted invalid must get an explicit error (INVALID_ARGUMENT, with a message). The server
is checked live and ready every 100 requests and at the end. Reproducible: derandomized.
"""
from __future__ import annotations

import re
import string
import struct
import time

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2, service_pb2_grpc

from opencc_cm_contract import (ATTENTION_MASK, FLAGGED, IDS_ENSEMBLE, INPUT_IDS, LABEL_FLAGS, SCORES, TEXT,
                                       TEXT_ENSEMBLE, THRESHOLD_PROFILE_PARAMETER, TOKEN_COUNT)
from opencc_cm_contract.limits import max_id_elements
from opencc_cm_contract.text_rules import InputError
from opencc_cm_serving.ids import validate_ids

from reliability_tools import MAX_TEXT_BYTES, MIB, PROFILES, Tally, mismatch, tree_rss
from toy_bundle import MAX_TOKENS, VOCAB_SIZE, WORDS

EXAMPLES = {"text": 450, "ids": 450, "params": 300}
FUZZ = settings(max_examples=1, deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=list(HealthCheck))
KNOWN_PROFILES = ("default", *PROFILES)
RESERVED = ("priority", "timeout", "sequence_id", "sequence_start", "sequence_end", "headers",
            "triton_enable_empty_final_response", "binary_data_output")
EXPLICIT_ERRORS = {"INVALID_ARGUMENT"}
NP_DTYPES = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "UINT64": np.uint64, "BOOL": np.bool_,
             "FP64": np.float64, "INT8": np.int8}
OUT_DTYPES = {"FP32": np.float32, "BOOL": np.bool_, "INT64": np.int64}
TALLY = {name: Tally() for name in EXAMPLES}
REASONS = Tally()  # error messages with numbers, names and quoted values blanked: what was refused, and why
STATE = {"sent": 0, "health_checks": 0}


# --- raw requests ------------------------------------------------------------------------------
def serialize_bytes(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def tensor(name, datatype, shape, raw: bytes | None = None, contents: dict | None = None):
    t = service_pb2.ModelInferRequest().InferInputTensor(name=name, datatype=datatype, shape=list(shape))
    if contents:
        for field, values in contents.items():
            getattr(t.contents, field).extend(values)
    return t, raw


def set_param(message, key, kind, value):
    param = message.parameters[key]
    setattr(param, {"string": "string_param", "int64": "int64_param", "bool": "bool_param",
                    "double": "double_param", "uint64": "uint64_param"}[kind], value)


class Raw:
    def __init__(self, url: str):
        self.channel = grpc.insecure_channel(url, options=[("grpc.max_send_message_length", 2**31 - 1),
                                                           ("grpc.max_receive_message_length", 2**31 - 1)])
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)

    def infer(self, model, tensors, params) -> tuple[str, str, dict | None]:
        """``(code, message, outputs)``: code "OK" with decoded outputs, or the gRPC status name."""
        request = service_pb2.ModelInferRequest(model_name=model)
        raws = []
        for t, raw in tensors:
            request.inputs.append(t)
            if raw is not None:
                raws.append(raw)
        request.raw_input_contents.extend(raws)
        for key, (kind, value) in params.items():
            set_param(request, key, kind, value)
        try:
            response = self.stub.ModelInfer(request, timeout=30)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details() or "", None
        outputs = {}
        for i, out in enumerate(response.outputs):
            outputs[out.name] = np.frombuffer(response.raw_output_contents[i], OUT_DTYPES[out.datatype]).reshape(
                tuple(out.shape))
        return "OK", "", outputs

    def health(self) -> tuple[bool, bool]:
        live = self.stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
        ready = self.stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
        return live, ready


@pytest.fixture(scope="module")
def raw(rel_server):
    client = Raw(rel_server.grpc_url)
    STATE["rss_before"] = tree_rss(rel_server.process.pid)
    yield client
    client.channel.close()


# --- parameters ---------------------------------------------------------------------------------
ODD_PROFILES = ["../x", "../../../../etc/passwd", "/etc/passwd", "default/../strict", "strict\x00", " strict",
                "STRICT", "", "${profiles_file}", "__class__", "__import__('os').system('id')", "{{7*7}}",
                "%s%s%n", "strict; rm -rf /", "profiles.json", "artifacts/profiles.json", "file:///etc/passwd",
                "default ", "😀", "x" * 100_000]
profile_value = st.one_of(
    # known names drawn twice as often: a request with an unknown key is refused too, keep valid ones frequent
    st.sampled_from(KNOWN_PROFILES * 2).map(lambda v: ("string", v)),
    st.sampled_from(KNOWN_PROFILES).map(lambda v: ("string", v)),
    st.sampled_from(ODD_PROFILES).map(lambda v: ("string", v)),
    st.text(max_size=40).map(lambda v: ("string", v)),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: ("int64", v)),
    st.booleans().map(lambda v: ("bool", v)),
    st.floats(allow_nan=True).map(lambda v: ("double", v)),
    st.integers(0, 2**64 - 1).map(lambda v: ("uint64", v)),
)
other_key = st.text(alphabet=string.ascii_letters + string.digits + "_-./", min_size=1, max_size=30).filter(
    lambda k: k not in RESERVED and k != THRESHOLD_PROFILE_PARAMETER and not k.startswith("triton_"))
other_value = st.one_of(st.text(max_size=60).map(lambda v: ("string", v)),
                        st.sampled_from(["/etc/passwd", "x" * 50_000]).map(lambda v: ("string", v)),
                        st.integers(-(2**63), 2**63 - 1).map(lambda v: ("int64", v)),
                        st.booleans().map(lambda v: ("bool", v)))
reserved_value = st.one_of(st.integers(-(2**63), 2**63 - 1).map(lambda v: ("int64", v)),
                           st.integers(0, 2**64 - 1).map(lambda v: ("uint64", v)),
                           st.booleans().map(lambda v: ("bool", v)), st.text(max_size=20).map(lambda v: ("string", v)))


@st.composite
def request_params(draw, odd: bool):
    """``(params, profile or None, valid, predictable)``."""
    params = {}
    if draw(st.booleans()) or odd:
        params[THRESHOLD_PROFILE_PARAMETER] = draw(profile_value)
    if odd:
        for key in draw(st.lists(other_key, max_size=3, unique=True)) if draw(st.booleans()) else ():
            params[key] = draw(other_value)
        if draw(st.integers(0, 4)) == 0:
            params[draw(st.sampled_from(RESERVED))] = draw(reserved_value)
    profile = params.get(THRESHOLD_PROFILE_PARAMETER)
    # Triton hands string parameters to the backend as C strings: a NUL byte ends the value.
    name = profile[1].split("\x00", 1)[0] if profile and profile[0] == "string" else None
    # any name neither ours nor Triton's is refused (a misspelled parameter never means "default")
    unknown = [k for k in params if k != THRESHOLD_PROFILE_PARAMETER and k not in RESERVED]
    valid = (profile is None or name in KNOWN_PROFILES) and not unknown
    predictable = not any(k in RESERVED for k in params)
    return params, (name if profile and valid else None), valid, predictable


# --- text requests ------------------------------------------------------------------------------
EDGE_TEXTS = [b"", b" ", b"\t\n \r", b"\x00", b"a\x00b", b"\xef\xbb\xbfhello", "\u202eevil".encode(),
              ("\u200d" * 50).encode(), ("e" + "\u0301" * 300).encode(), ("🙂" * 200).encode(), b"\xc0\xaf",
              b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff\xfe", b"a" * MAX_TEXT_BYTES, b"a" * (MAX_TEXT_BYTES + 1),
              ("the model " * 40).encode(), "中文 测试".encode(), b"\\u0000", b"%n%n%s", b"\r\n" * 10]
HUGE_TEXTS = [b"x" * (1 << 16), b"y " * (1 << 19), b"\xff" * (4 << 20)]
sentence = st.lists(st.sampled_from(WORDS), min_size=1, max_size=20).map(lambda w: " ".join(w).encode())
text_element = st.one_of(
    sentence, sentence, sentence, sentence,
    st.text(max_size=60).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=120),
    st.sampled_from(EDGE_TEXTS),
    st.sampled_from(HUGE_TEXTS),
)
TEXT_MODES = ["ok"] * 10 + ["contents", "rank1", "rank3", "cols2", "shape_lies", "truncated", "length_overflow",
                           "garbage_tail", "contents_and_raw", "dtype", "no_input", "extra_input", "dup_input",
                           "wrong_name"]


BATCH = st.integers(0, 39).map(lambda n: 65 if n == 0 else 0 if n == 1 else 1 + n % 4)  # 1-4, rarely 0 or 65


@st.composite
def text_request(draw):
    size = draw(BATCH)
    elements = draw(st.lists(sentence if size > 8 else text_element, min_size=size, max_size=size))
    mode = draw(st.sampled_from(TEXT_MODES))
    params, profile, params_ok, predictable = draw(request_params(odd=draw(st.integers(0, 5)) == 0))
    b, payload = len(elements), serialize_bytes(elements)
    tensors = {
        "ok": [tensor(TEXT, "BYTES", [b, 1], payload)],
        "contents": [tensor(TEXT, "BYTES", [b, 1], None, {"bytes_contents": elements})],
        "rank1": [tensor(TEXT, "BYTES", [b], payload)],
        "rank3": [tensor(TEXT, "BYTES", [b, 1, 1], payload)],
        "cols2": [tensor(TEXT, "BYTES", [b, 2], payload + payload)],
        "shape_lies": [tensor(TEXT, "BYTES", [b + 1, 1], payload)],
        "truncated": [tensor(TEXT, "BYTES", [b, 1], payload[:-1] if payload else b"\x05")],
        "length_overflow": [tensor(TEXT, "BYTES", [b, 1], payload[:-4 - len(elements[-1])] + b"\xf0\xff\xff\xff"
                                   + elements[-1] if elements else b"\xff\xff\xff\xff")],
        "garbage_tail": [tensor(TEXT, "BYTES", [b, 1], payload + b"\x01\x00")],
        "contents_and_raw": [tensor(TEXT, "BYTES", [b, 1], payload, {"bytes_contents": elements})],
        "dtype": [tensor(TEXT, draw(st.sampled_from(["INT64", "FP32", "BOOL", "UINT8", "NOPE", ""])), [b, 1], payload)],
        "no_input": [],
        "extra_input": [tensor(TEXT, "BYTES", [b, 1], payload), tensor("evil", "BYTES", [b, 1], payload)],
        "dup_input": [tensor(TEXT, "BYTES", [b, 1], payload), tensor(TEXT, "BYTES", [b, 1], payload)],
        "wrong_name": [tensor("txt", "BYTES", [b, 1], payload)],
    }[mode]
    return elements, mode, tensors, params, profile, params_ok, predictable


# --- ids requests --------------------------------------------------------------------------------
IDS_MODES = ["ok"] * 8 + ["contents", "missing_mask", "missing_ids", "extra_input", "dup_input", "rank1", "rank3",
                          "batch_mismatch", "payload_short", "payload_long", "dtype", "huge"]
MASK_FAULTS = ["none"] * 5 + ["flip", "two", "negative", "left_pad", "empty_row", "wider", "narrower"]


@st.composite
def ids_request(draw):
    b = draw(BATCH)
    s = draw(st.one_of(st.integers(1, 24), st.integers(0, MAX_TOKENS + 8)))
    lengths = [draw(st.integers(min_value=min(1, s), max_value=s)) for _ in range(b)]
    ids = np.asarray(draw(st.lists(st.integers(0, VOCAB_SIZE - 1), min_size=b * s, max_size=b * s)),
                     dtype=np.int64).reshape(b, s)
    if b and s and draw(st.integers(0, 4)) == 0:  # an id out of range somewhere
        ids[draw(st.integers(0, b - 1)), draw(st.integers(0, s - 1))] = draw(
            st.one_of(st.integers(-(2**63), -1), st.integers(VOCAB_SIZE, 2**63 - 1)))
    mask = (np.arange(s)[None, :] < np.asarray(lengths, dtype=np.int64)[:, None]).astype(np.int64)
    fault = draw(st.sampled_from(MASK_FAULTS))
    if b and s:
        r, c = draw(st.integers(0, b - 1)), draw(st.integers(0, s - 1))
        if fault == "flip":
            mask[r, c] = 1 - mask[r, c]
        elif fault == "two":
            mask[r, c] = 2
        elif fault == "negative":
            mask[r, c] = -1
        elif fault == "left_pad":
            mask[r] = mask[r][::-1].copy()
        elif fault == "empty_row":
            mask[r] = 0
    if fault == "wider":
        mask = np.concatenate([mask, np.zeros((b, 1), np.int64)], axis=1)
    elif fault == "narrower" and s:
        mask = mask[:, :-1].copy()
    mode = draw(st.sampled_from(IDS_MODES))
    if mode == "huge":
        b2, s2 = draw(st.sampled_from([(64, 4096), (1, 200_000), (2, 70_000)]))
        ids = np.full((b2, s2), 7, np.int64)
        mask = np.ones_like(ids)
    params, profile, params_ok, predictable = draw(request_params(odd=draw(st.integers(0, 5)) == 0))

    def t(name, array, datatype="INT64", shape=None):
        return tensor(name, datatype, list(array.shape) if shape is None else shape,
                      array.astype(NP_DTYPES[datatype]).tobytes())

    if mode == "dtype":
        dt_ids, dt_mask = draw(st.sampled_from([("INT32", "INT64"), ("INT64", "FP32"), ("UINT64", "UINT64"),
                                               ("FP64", "INT64"), ("INT64", "BOOL"), ("INT8", "INT8")]))
    else:
        dt_ids = dt_mask = "INT64"
    tensors = {
        "contents": [tensor(INPUT_IDS, "INT64", list(ids.shape), None, {"int64_contents": ids.ravel().tolist()}),
                     tensor(ATTENTION_MASK, "INT64", list(mask.shape), None,
                            {"int64_contents": mask.ravel().tolist()})],
        "missing_mask": [t(INPUT_IDS, ids)],
        "missing_ids": [t(ATTENTION_MASK, mask)],
        "extra_input": [t(INPUT_IDS, ids), t(ATTENTION_MASK, mask), t("token_type_ids", ids)],
        "dup_input": [t(INPUT_IDS, ids), t(INPUT_IDS, ids), t(ATTENTION_MASK, mask)],
        "rank1": [t(INPUT_IDS, ids, shape=[ids.size]), t(ATTENTION_MASK, mask, shape=[mask.size])],
        "rank3": [t(INPUT_IDS, ids, shape=[*ids.shape, 1]), t(ATTENTION_MASK, mask, shape=[*mask.shape, 1])],
        "batch_mismatch": [t(INPUT_IDS, ids), t(ATTENTION_MASK, np.concatenate([mask, mask[:1]]) if b else mask,
                                                  shape=[b + 1, mask.shape[1]])],
        "payload_short": [tensor(INPUT_IDS, "INT64", list(ids.shape), ids.tobytes()[:-8] if ids.size else b"\x00"),
                          t(ATTENTION_MASK, mask)],
        "payload_long": [tensor(INPUT_IDS, "INT64", list(ids.shape), ids.tobytes() + b"\x00" * 8),
                         t(ATTENTION_MASK, mask)],
    }.get(mode, [t(INPUT_IDS, ids, dt_ids), t(ATTENTION_MASK, mask, dt_mask)])
    return ids, mask, mode, tensors, params, profile, params_ok, predictable


# --- judging ----------------------------------------------------------------------------------------
def reason(message: str) -> str:
    text = re.sub(r"\[request id: [^\]]*\] |in ensemble '[a-z_]+', ", "", message)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"-?\d+", "N", text)
    return re.sub(r"\(known: [^)]*\)|\(expected [^)]*\)", "", text)[:90].strip()


def health_check(raw):
    STATE["sent"] += 1
    if STATE["sent"] % 100 == 0:
        assert raw.health() == (True, True), f"server not live/ready after {STATE['sent']} fuzz requests"
        STATE["health_checks"] += 1


def judge(suite, raw, model, tensors, params, expected, predictable):
    """``expected``: None (an error is due) or the reference dict. Records and asserts the outcome."""
    t0 = time.monotonic()
    code, message, outputs = raw.infer(model, tensors, params)
    took = time.monotonic() - t0
    health_check(raw)
    if code == "OK":
        if expected is None:
            TALLY[suite].add("ACCEPTED_BAD_INPUT", f"{model} {params}")
            raise AssertionError(f"{model}: bad input accepted")
        problem = mismatch({k: outputs.get(k) for k in (SCORES, LABEL_FLAGS, FLAGGED, TOKEN_COUNT)}, expected)
        if problem:
            TALLY[suite].add("WRONG", problem)
            raise AssertionError(f"{model}: wrong answer: {problem}")
        TALLY[suite].add("ok (correct)")
        return
    TALLY[suite].add(code, message)
    REASONS.add(f"{code}: {reason(message)}")
    if expected is not None and predictable:
        raise AssertionError(f"{model}: valid input refused: {code} {message[:300]}")
    assert message.strip(), f"{code} without a message"
    if predictable:
        assert code in EXPLICIT_ERRORS, f"{model}: {code} {message[:300]}"
    else:  # Triton's reserved parameters (a "timeout" of 1 us expires: UNAVAILABLE), never a crash or a hang
        assert code not in ("INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED"), f"{code} {message[:300]}"
        assert code != "UNAVAILABLE" or "Request timeout expired" in message \
            or "cannot finish before its deadline" in message, message
    assert took < 30


def text_expected(reference, elements, mode, profile, params_ok):
    if mode not in ("ok", "contents") or not params_ok or not 1 <= len(elements) <= 64:
        return None
    try:
        rows = reference.token_rows(elements, MAX_TEXT_BYTES)
    except InputError:
        return None
    return reference.for_rows(rows, profile)


def ids_expected(reference, ids, mask, mode, profile, params_ok):
    if mode not in ("ok", "contents") or not params_ok or not 1 <= ids.shape[0] <= 64:
        return None
    if ids.size > max_id_elements(64, MAX_TOKENS) or mask.size > max_id_elements(64, MAX_TOKENS):
        return None
    try:
        lengths = validate_ids(ids, mask, VOCAB_SIZE, MAX_TOKENS)
    except InputError:
        return None
    return reference.for_rows([ids[i, :n].tolist() for i, n in enumerate(lengths)], profile)


# --- the tests -----------------------------------------------------------------------------------
@settings(FUZZ, max_examples=EXAMPLES["text"])
@given(request=text_request())
def test_fuzz_text_ensemble(raw, reference, request):
    elements, mode, tensors, params, profile, params_ok, predictable = request
    judge("text", raw, TEXT_ENSEMBLE, tensors, params, text_expected(reference, elements, mode, profile, params_ok),
          predictable)


@settings(FUZZ, max_examples=EXAMPLES["ids"])
@given(request=ids_request())
def test_fuzz_ids_ensemble(raw, reference, request):
    ids, mask, mode, tensors, params, profile, params_ok, predictable = request
    judge("ids", raw, IDS_ENSEMBLE, tensors, params, ids_expected(reference, ids, mask, mode, profile, params_ok),
          predictable)


LONG = {THRESHOLD_PROFILE_PARAMETER: ("string", "x" * 100_000)}  # its error must stay below gRPC's 8 KiB


@settings(FUZZ, max_examples=EXAMPLES["params"])
@example(on_ids=False, request=(LONG, None, False, True))
@example(on_ids=True, request=(LONG, None, False, True))
@given(on_ids=st.booleans(), request=request_params(odd=True))
def test_fuzz_request_parameters(raw, reference, on_ids, request):
    params, profile, params_ok, predictable = request
    text = b"the model review"
    rows = reference.token_rows([text], MAX_TEXT_BYTES)
    expected = reference.for_rows(rows, profile) if params_ok else None
    if on_ids:
        ids = np.asarray(rows, np.int64)
        tensors = [tensor(INPUT_IDS, "INT64", list(ids.shape), ids.tobytes()),
                   tensor(ATTENTION_MASK, "INT64", list(ids.shape), np.ones_like(ids).tobytes())]
        judge("params", raw, IDS_ENSEMBLE, tensors, params, expected, predictable)
    else:
        judge("params", raw, TEXT_ENSEMBLE, [tensor(TEXT, "BYTES", [1, 1], serialize_bytes([text]))], params,
              expected, predictable)


def test_fuzz_totals_and_server_health(raw, rel_server, reference):
    total = Tally()
    for suite, tally in TALLY.items():
        print("\n" + tally.table(f"[fuzz] {suite}"))
        for key, n in tally.counts.items():
            total.counts[key] += n
    print(total.table("[fuzz] all suites, by outcome") + f"\n[fuzz] health checks during the run: "
          f"{STATE['health_checks']} (every 100 requests), all live and ready")
    rss_after = tree_rss(rel_server.process.pid)
    print(f"[fuzz] RSS tritonserver+stubs: before {STATE['rss_before'] / MIB:.1f} MiB, after {rss_after / MIB:.1f} MiB "
          "(each Python model's /dev/shm pool grows to the largest request it was handed and keeps that size)")
    assert rss_after <= STATE["rss_before"] + 512 * MIB
    top = Tally()
    top.counts.update(dict(REASONS.counts.most_common(25)))
    print(top.table(f"[fuzz] the 25 most frequent of {len(REASONS.counts)} distinct refusals "
                    "(numbers as N, names as '…')"))
    assert total.total >= 1000
    assert total.counts["WRONG"] == 0 and total.counts["ACCEPTED_BAD_INPUT"] == 0
    assert total.counts["ok (correct)"] >= 100 and total.counts["INVALID_ARGUMENT"] >= 500
    assert raw.health() == (True, True)
    rows = reference.token_rows([b"still serving"], MAX_TEXT_BYTES)
    code, _, outputs = raw.infer(TEXT_ENSEMBLE, [tensor(TEXT, "BYTES", [1, 1], serialize_bytes([b"still serving"]))],
                                 {})
    assert code == "OK" and mismatch(outputs, reference.for_rows(rows)) is None
