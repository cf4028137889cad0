"""proto/CLIENT_CONTRACT.md cannot drift: its tables are parsed and checked against the contract
module, server_info's metadata keys, errors.from_status, and the ensemble configs that deploy
writes (no server needed)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from opencc_cm_contract import names as contract
from opencc_cm_client.errors import InvalidRequestError, UnavailableError, from_status
from opencc_cm_contract.metadata import METADATA_KEYS

DOC = Path(__file__).resolve().parents[2] / "proto" / "CLIENT_CONTRACT.md"
ENSEMBLES = (contract.TEXT_ENSEMBLE, contract.IDS_ENSEMBLE)


def table(heading: str) -> list[list[str]]:
    """Rows (cells without backticks) of the first table under the ``#``-heading ``heading``."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if re.fullmatch(rf"#+ {re.escape(heading)}", line)]
    assert len(starts) == 1, f"heading {heading!r} found {len(starts)} times in {DOC.name}"
    rows, seen_table = [], False
    for line in lines[starts[0] + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            seen_table = True
            rows.append([cell.strip().replace("`", "") for cell in line.strip().strip("|").split("|")])
        elif seen_table:
            break
    assert len(rows) >= 3 and set(rows[1][0]) <= set("-:"), f"no table under {heading!r}"
    return rows[2:]


def shape(cell: str) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in cell.strip("[]").replace(" ", "").split(","))


@pytest.fixture(scope="module")
def configs(repository) -> dict[str, model_config_pb2.ModelConfig]:
    out = {}
    for name in ENSEMBLES:
        out[name] = text_format.Parse((repository / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    return out


def wire_datatype(config_type: int) -> str:
    """Config TYPE_STRING / TYPE_INT64 ... as the protocol's datatype (BYTES / INT64 ...)."""
    name = model_config_pb2.DataType.Name(config_type).removeprefix("TYPE_")
    return {"STRING": "BYTES"}.get(name, name)


def wire_shape(dims, num_labels: int) -> tuple:
    """Config dims (batch dimension implied by max_batch_size) as the documented shape."""
    return ("B", *("S" if d == -1 else "L" if d == num_labels and d != 1 else d for d in dims))


def test_inputs_table_is_the_contract_and_the_deployed_configs(configs, spec):
    documented = {}
    for ensemble, name, datatype, dims, _ in table("Inputs"):
        documented.setdefault(ensemble, {})[name] = (datatype, shape(dims))
    assert documented == contract.ENSEMBLE_INPUTS
    for ensemble, config in configs.items():
        deployed = {i.name: (wire_datatype(i.data_type), wire_shape(i.dims, spec.num_labels)) for i in config.input}
        assert deployed == contract.ENSEMBLE_INPUTS[ensemble], ensemble
        assert config.max_batch_size >= 1


def test_outputs_table_is_the_contract_and_the_deployed_configs(configs, spec):
    documented = {name: (datatype, shape(dims)) for name, datatype, dims, _ in table("Outputs")}
    assert documented == contract.ENSEMBLE_OUTPUTS
    for ensemble, config in configs.items():
        deployed = {o.name: (wire_datatype(o.data_type), wire_shape(o.dims, spec.num_labels)) for o in config.output}
        assert deployed == contract.ENSEMBLE_OUTPUTS, ensemble


def test_request_parameters_tables_are_the_contract():
    ours = table("Request parameters")
    assert {name: kind.split()[0] for name, kind, *_ in ours} == {
        name: {str: "string", int: "int64", bool: "bool", float: "double"}[t]
        for name, t in contract.REQUEST_PARAMETERS.items()}
    assert {r[0]: r[2] for r in ours}[contract.THRESHOLD_PROFILE_PARAMETER] == contract.DEFAULT_PROFILE
    triton = [r[0] for r in table("Triton's own parameters")]
    assert triton == [*contract.TRITON_RESERVED_PARAMETERS, contract.TRITON_RESERVED_PREFIX + "*"]
    # and the documented behaviour is the module's: ours and Triton's pass, others are refused
    for name in triton:
        assert contract.check_request_parameters({name.replace("*", "x"): 1}) == {}
    with pytest.raises(contract.RequestParameterError, match="unknown request parameter 'thresholdProfile'"):
        contract.check_request_parameters({"thresholdProfile": "strict"})
    with pytest.raises(contract.RequestParameterError, match="must be a string, got int64"):
        contract.check_request_parameters({contract.THRESHOLD_PROFILE_PARAMETER: 3})


DECODERS = {
    "JSON array of strings": lambda v: all(isinstance(x, str) for x in json.loads(v)) and isinstance(json.loads(v), list),
    "JSON object of arrays of numbers": lambda v: all(
        isinstance(t, list) and all(isinstance(x, (int, float)) for x in t) for t in json.loads(v).values()),
    "decimal integer": lambda v: str(int(v)) == v,
    "lowercase hex sha256": lambda v: re.fullmatch(r"[0-9a-f]{64}", v) is not None,
    "reject or windows": lambda v: v in ("reject", "windows"),
    "string": lambda v: isinstance(v, str) and v != "",
}


def test_metadata_table_is_server_info_and_decodes_the_deployed_values(configs, spec):
    rows = table("Model config metadata")
    assert [key for key, *_ in rows] == list(METADATA_KEYS)
    published = [{k: v.string_value for k, v in config.parameters.items()} for config in configs.values()]
    assert published[0] == published[1], "both ensembles publish the same metadata"
    for key, encoding, _ in rows:
        assert encoding in DECODERS, f"{key}: undocumented encoding {encoding!r}"
        assert DECODERS[encoding](published[0][key]), (key, encoding, published[0][key])
    labels = json.loads(published[0]["labels"])
    profiles = json.loads(published[0]["threshold_profiles"])
    assert labels == list(spec.labels) and contract.DEFAULT_PROFILE in profiles
    assert all(len(t) == len(labels) for t in profiles.values())


def test_errors_table_is_what_the_client_does():
    rows = table("Errors")
    for code, contains, meaning, retry, gate in rows:
        assert gate.startswith("escalate"), (code, gate)  # fail closed, every time
        error = from_status(code, contains or "some message")
        # the client retries exactly the UnavailableError family (client.py, aio.py: next_retry_delay)
        assert isinstance(error, UnavailableError) == retry.startswith("yes"), (code, contains, retry, type(error))
        # a client mistake is an InvalidRequestError, whatever code the server answered it with
        assert isinstance(error, InvalidRequestError) == meaning.startswith("the request is wrong"), (code, contains)
    documented = {code for code, *_ in rows}
    assert {"INVALID_ARGUMENT", "UNAVAILABLE", "NOT_FOUND", "CANCELLED", "DEADLINE_EXCEEDED",
            "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN"} <= documented


def test_named_things_appear_in_the_document():
    text = DOC.read_text(encoding="utf-8")
    for name in (*ENSEMBLES, contract.TEXT, contract.INPUT_IDS, contract.ATTENTION_MASK,
                 *contract.ENSEMBLE_OUTPUTS, "4-byte little-endian", "raw_output_contents", "string_value",
                 "version_policy specific [1]", "opencc_cm.v1"):
        assert f"{name}" in text, name
