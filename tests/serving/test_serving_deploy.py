"""Every generated config.pbtxt (all four encoder targets) is a valid Triton ModelConfig,
names match the contract, and deploy fails loudly on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import opencc_cm_contract as contract
from opencc_cm_serving.deploy import MODELS, RAGGED_TARGETS, TARGETS, fill, gpu_visible
from opencc_cm_serving.deploy import main as deploy_main
from opencc_cm_serving.errors import ConfigError

from serving_calls import TEMPLATES, deploy_to

ENCODER_PLATFORM = {"python-ort": ("python", ""), "python-torch": ("python", ""), "onnxruntime": ("", "onnxruntime_onnx"),
                    "tensorrt": ("", "tensorrt_plan")}


def parse(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module", params=TARGETS)
def deployed(request, tmp_path_factory, bundle_dir):
    out = tmp_path_factory.mktemp(request.param) / "repo"
    # python-torch loads merged torch weights: the toy bundle has none, the exported tiny one has.
    bundle = request.getfixturevalue("tiny_bundle") if request.param == "python-torch" else bundle_dir
    return request.param, deploy_to(bundle, out, request.param, "--max-batch-size", "48")


SERVED = {  # the models each target's ensembles route through (Python-backend encoders validate and calibrate)
    "python-ort": {contract.TOKENIZER_MODEL, contract.ENCODER_MODEL, contract.TEXT_ENSEMBLE, contract.IDS_ENSEMBLE},
    "onnxruntime": set(MODELS),
    "tensorrt": set(MODELS),
}
SERVED["python-torch"] = SERVED["python-ort"]


def deployed_models(repo) -> list[str]:
    return [model for model in MODELS if (repo / model).is_dir()]


def test_configs_parse_and_agree(deployed, spec):
    target, repo = deployed
    assert {p.name for p in repo.iterdir()} == SERVED[target]  # only the models the target serves through
    configs = {model: parse(repo / model / "config.pbtxt") for model in deployed_models(repo)}
    for model, config in configs.items():
        assert config.name == model
        assert config.max_batch_size == 48
        assert list(config.version_policy.specific.versions) == [1]
        if config.backend == "python" and model in (contract.TOKENIZER_MODEL, contract.ENCODER_MODEL):
            # no Triton queue policy (encoder_model.queue_settings); the encoder's bounds are parameters
            assert not config.dynamic_batching.HasField("default_queue_policy")
            if model == contract.ENCODER_MODEL:
                assert int(config.parameters["max_queue_size"].string_value) > 0
        elif config.platform != "ensemble":
            assert config.dynamic_batching.default_queue_policy.max_queue_size > 0
    backend, platform = ENCODER_PLATFORM[target]
    encoder = configs[contract.ENCODER_MODEL]
    assert (encoder.backend, encoder.platform) == (backend, platform)
    assert [i.name for i in encoder.input if not i.optional] == [contract.INPUT_IDS, contract.ATTENTION_MASK]
    assert all(i.allow_ragged_batch for i in encoder.input if not i.optional) == (target in RAGGED_TARGETS)
    assert list(encoder.output[0].dims) == [spec.num_labels] and encoder.output[0].name == contract.LOGITS
    warmup_file = encoder.model_warmup[0].inputs[contract.ATTENTION_MASK].input_data_file
    assert (repo / "encoder" / "warmup" / warmup_file).is_file()
    buckets = configs[contract.TOKENIZER_MODEL].parameters["length_buckets"].string_value
    assert (buckets == "") == (target in RAGGED_TARGETS)
    for name in (contract.TEXT_ENSEMBLE, contract.IDS_ENSEMBLE):
        ensemble = configs[name]
        assert {o.name for o in ensemble.output} == {contract.SCORES, contract.LABEL_FLAGS, contract.FLAGGED,
                                                     contract.TOKEN_COUNT}
        steps = ensemble.ensemble_scheduling.step
        assert all(s.model_version == 1 for s in steps)
        first = contract.TOKENIZER_MODEL if name == contract.TEXT_ENSEMBLE else contract.IDS_PREPROCESS_MODEL
        if target in RAGGED_TARGETS:  # calibration (and for ids the validation) folded into the encoder: fewer hops
            assert [s.model_name for s in steps] == [first, contract.ENCODER_MODEL][name == contract.IDS_ENSEMBLE:]
            assert {m for m in steps[-1].output_map} == {o.name for o in ensemble.output}
        else:
            assert [s.model_name for s in steps] == [first, contract.ENCODER_MODEL, contract.CALIBRATION_MODEL]
    if target in RAGGED_TARGETS:
        assert {o.name for o in encoder.output} == {contract.LOGITS, contract.SCORES, contract.LABEL_FLAGS,
                                                    contract.FLAGGED, contract.TOKEN_COUNT}
        assert [i.name for i in encoder.input if i.optional] == [contract.TEXT_ROW, contract.WINDOW_START]
    version = repo / "encoder" / "1"
    if target == "python-torch":
        assert encoder.default_model_filename == "model_torch.py" and (version / "model_torch.py").is_file()
        assert {"classifier.safetensors", "classifier_config.json"} <= {p.name for p in (version / "artifacts").iterdir()}
        assert not (version / "model.onnx").exists()
        kind = encoder.instance_group[0].kind
        assert kind == (model_config_pb2.ModelInstanceGroup.KIND_GPU if gpu_visible()
                        else model_config_pb2.ModelInstanceGroup.KIND_CPU)
        params = {k: v.string_value for k, v in encoder.parameters.items()}
        assert params["batch_buckets"] == "1,2,4,8,16,32,48"
        assert params["length_buckets"].split(",")[-1] == str(spec_max_tokens(repo))
    else:
        assert (version / "model.onnx").is_file()


def spec_max_tokens(repo) -> int:
    return json.loads((repo / "encoder" / "1" / "artifacts" / "classifier.json").read_text())["max_tokens"]


def test_python_torch_needs_parity_checked_torch_weights(tmp_path, bundle_dir, tiny_bundle, capsys):
    """The toy bundle has no torch weights; a bundle whose torch parity failed is refused too."""
    common = ["--repository", str(TEMPLATES), "--output", str(tmp_path / "repo"), "--target", "python-torch"]
    assert deploy_main(["--bundle", str(bundle_dir), *common]) == 2
    assert "missing classifier.safetensors" in capsys.readouterr().err
    import shutil

    failed = tmp_path / "failed-bundle"
    shutil.copytree(tiny_bundle, failed, ignore=shutil.ignore_patterns("model.onnx*"))
    record = json.loads((failed / "classifier.json").read_text())
    record["torch_parity"]["passed"] = False
    (failed / "classifier.json").write_text(json.dumps(record))
    assert deploy_main(["--bundle", str(failed), *common]) == 2
    assert "torch weights did not pass the export's parity check" in capsys.readouterr().err


def test_fill_rejects_missing_and_leftover_placeholders():
    with pytest.raises(ConfigError, match="no value for placeholder"):
        fill("a: ${missing}", {}, "t")
    with pytest.raises(ConfigError, match="unfilled placeholder"):
        fill("a: ${x}", {"x": "${y}"}, "t")


TENSORS = {contract.INPUT_IDS, contract.ATTENTION_MASK, contract.LOGITS, contract.TEXT, contract.TEXT_ROW, contract.WINDOW_START,
           *contract.ENSEMBLE_OUTPUTS}


def test_templates_use_contract_names():
    for model in MODELS:
        for template in (TEMPLATES / model).glob("config*.pbtxt.template"):
            assert f'name: "${{model_prefix}}{model}"' in template.read_text(encoding="utf-8")


def test_every_tensor_and_model_name_in_every_generated_config_is_a_contract_name(deployed):
    """The templates spell tensor names as literals; each one must be a name of
    ``opencc_cm_contract.names`` (ensemble intermediates: the same name prefixed with ``_``)."""
    target, repo = deployed
    seen = set()
    for model in deployed_models(repo):
        config = parse(repo / model / "config.pbtxt")
        names = [t.name for t in (*config.input, *config.output)]
        for step in config.ensemble_scheduling.step:
            assert step.model_name in MODELS, (model, step.model_name)
            names += list(step.input_map) + list(step.output_map)
            names += [v.removeprefix("_") for v in (*step.input_map.values(), *step.output_map.values())]
        names += [key for warmup in config.model_warmup for key in warmup.inputs]
        unknown = sorted(set(names) - TENSORS)
        assert not unknown, f"{target} {model}: tensor names not in opencc_cm_contract.names: {unknown}"
        seen.update(names)
    assert seen == TENSORS


def test_a_template_that_is_not_a_valid_model_config_fails_deploy_before_writing(tmp_path, bundle_dir, capsys):
    import shutil

    source = tmp_path / "templates"
    shutil.copytree(TEMPLATES, source, ignore=shutil.ignore_patterns("config.pbtxt", "*.onnx*", "artifacts"))
    calibration = source / contract.CALIBRATION_MODEL / "config.pbtxt.template"
    calibration.write_text(calibration.read_text().replace("max_batch_size:", "max_batch_sise:"))
    code = deploy_main(["--bundle", str(bundle_dir), "--repository", str(source)])
    err = capsys.readouterr().err
    assert code == 2 and "not a valid Triton ModelConfig" in err and "max_batch_sise" in err
    assert not list(source.glob("*/config.pbtxt")), "deploy wrote configs before checking all of them"


@pytest.mark.parametrize("profiles, problem", [
    ({"profiles": {"x": {}}}, "missing thresholds"),
    ({"profiles": {"bad name": {}}}, "not a simple identifier"),
    ({"profiles": {"default": {}}}, "reserved"),
])
def test_bad_profiles_fail_before_writing(tmp_path, bundle_dir, profiles, problem, capsys):
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps(profiles))
    out = tmp_path / "repo"
    code = deploy_main(["--bundle", str(bundle_dir), "--repository", str(TEMPLATES), "--output", str(out),
                        "--profiles", str(path)])
    assert code == 2 and problem in capsys.readouterr().err
    assert not out.exists()


def test_encoder_grouping_options_reach_the_config_or_fail_before_writing(tmp_path, bundle_dir, capsys):
    repo = deploy_to(bundle_dir, tmp_path / "repo", "python-ort", "--max-pad-fraction", "0.1",
                     "--max-group-tokens", "4096", "--attention-span", "9000", "--encoder-memory", "arena",
                     "--long-row-lane", "off", "--encoder-spinning", "on")
    params = parse(repo / contract.ENCODER_MODEL / "config.pbtxt").parameters
    assert params["max_pad_fraction"].string_value == "0.1" and params["max_group_tokens"].string_value == "4096"
    assert params["attention_span"].string_value == "9000" and params["memory"].string_value == "arena"
    assert params["long_row_lane"].string_value == "0" and params["intra_op_spinning"].string_value == "1"
    defaults = parse(deploy_to(bundle_dir, tmp_path / "defaults", "python-ort") / contract.ENCODER_MODEL
                     / "config.pbtxt").parameters
    assert defaults["memory"].string_value == "shrink" and int(defaults["attention_span"].string_value) > 0
    assert defaults["long_row_lane"].string_value == "1" and defaults["intra_op_spinning"].string_value == "0"
    max_tokens = json.loads((bundle_dir / "classifier.json").read_text())["max_tokens"]
    assert defaults["max_group_tokens"].string_value == str(max_tokens)  # one max-length row per run
    for option, value in [("--max-pad-fraction", "1.0"), ("--max-pad-fraction", "-0.1"),
                          ("--max-pad-fraction", "nan"), ("--max-group-tokens", "0"),
                          ("--attention-span", "-1")]:
        out = tmp_path / f"bad{option}{value}"
        code = deploy_main(["--bundle", str(bundle_dir), "--repository", str(TEMPLATES), "--output", str(out),
                            option, value])
        assert code == 2 and option in capsys.readouterr().err and not out.exists(), (option, value)


def test_missing_bundle_file(tmp_path, capsys):
    code = deploy_main(["--bundle", str(tmp_path), "--repository", str(TEMPLATES), "--output", str(tmp_path / "r")])
    assert code == 2 and "missing classifier.json" in capsys.readouterr().err


def test_deploy_refuses_a_bundle_that_did_not_pass_parity(tmp_path):
    from opencc_cm_serving.bundle import check_bundle
    from toy_bundle import make_toy_bundle

    bundle = make_toy_bundle(tmp_path / "bundle")
    manifest = json.loads((bundle / "classifier.json").read_text())
    manifest["parity"] = {"passed": False, "reason": "not checked: bf16 Conv unsupported"}
    (bundle / "classifier.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="did not pass the export's parity check .*bf16 Conv"):
        check_bundle(bundle)
    assert check_bundle(bundle, allow_unverified=True).num_labels == 11


def test_a_second_classifier_deploys_beside_the_first_under_its_prefix(tmp_path, bundle_dir, capsys):
    out = tmp_path / "repo"
    deploy_to(bundle_dir, out, "python-ort")
    first = {p.parent.name: p.read_text() for p in out.glob("*/config.pbtxt")}
    deploy_to(bundle_dir, out, "python-ort", "--model-prefix", "jailbreak_")
    assert set(first) == SERVED["python-ort"]
    for model in first:  # the first classifier is untouched, the second has its own folders
        assert (out / model / "config.pbtxt").read_text() == first[model]
        config = parse(out / f"jailbreak_{model}" / "config.pbtxt")
        assert config.name == f"jailbreak_{model}"
        assert all(s.model_name.startswith("jailbreak_") for s in config.ensemble_scheduling.step)
    assert (out / "jailbreak_encoder" / "1" / "model.onnx").is_file()
    for extra, problem in [(["--model-prefix", "Jail-"], "lowercase"), (["--model-prefix", "x"], "ending with '_'")]:
        code = deploy_main(["--bundle", str(bundle_dir), "--repository", str(TEMPLATES), "--output", str(tmp_path / "b"),
                            *extra])
        assert code == 2 and problem in capsys.readouterr().err and not (tmp_path / "b").exists()
    code = deploy_main(["--bundle", str(bundle_dir), "--repository", str(TEMPLATES), "--model-prefix", "jailbreak_"])
    assert code == 2 and "needs --output" in capsys.readouterr().err


def test_models_deploys_some_of_the_targets_steps_beside_another_deployment(tmp_path, bundle_dir, capsys):
    """``--models`` writes only the named steps and leaves the rest of the output alone; a whole
    deploy of another target removes the classifier's folders that target has no use for."""
    out = deploy_to(bundle_dir, tmp_path / "repo", "python-ort")
    before = {p.parent.name: p.read_text() for p in out.glob("*/config.pbtxt")}
    deploy_to(bundle_dir, out, "onnxruntime", "--models", "calibration,ids_preprocess")
    assert {p.name for p in out.iterdir()} == SERVED["python-ort"] | {contract.IDS_PREPROCESS_MODEL, contract.CALIBRATION_MODEL}
    assert all((out / model / "config.pbtxt").read_text() == text for model, text in before.items())
    assert parse(out / contract.CALIBRATION_MODEL / "config.pbtxt").name == contract.CALIBRATION_MODEL
    deploy_to(bundle_dir, out, "python-ort")
    assert {p.name for p in out.iterdir()} == SERVED["python-ort"]
    for extra, problem in [(["--target", "python-ort", "--models", "calibration"], "python-ort target serves through"),
                           (["--target", "onnxruntime", "--models", ","], "serves through"),
                           (["--target", "onnxruntime", "--models", "nope"], "serves through")]:
        code = deploy_main(["--bundle", str(bundle_dir), "--repository", str(TEMPLATES), "--output", str(tmp_path / "b"),
                            *extra])
        assert code == 2 and problem in capsys.readouterr().err and not (tmp_path / "b").exists(), extra
    code = deploy_main(["--bundle", str(bundle_dir), "--repository", str(TEMPLATES), "--models", "calibration"])
    assert code == 2 and "--models needs --output" in capsys.readouterr().err


def _obj(pairs) -> str:
    """A JSON object written from ``(key, json text)`` pairs: repeated keys stay repeated."""
    return "{" + ", ".join(f"{json.dumps(key)}: {value}" for key, value in pairs) + "}"


def _thresholds(spec, *extra) -> str:
    return _obj([(label, "0.5") for label in spec.labels] + list(extra))


def _deploy_profiles_text(tmp_path, bundle_dir, text: str) -> tuple[int, Path]:
    path = tmp_path / "profiles.json"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "repo"
    code = deploy_main(["--bundle", str(bundle_dir), "--repository", str(TEMPLATES), "--output", str(out),
                        "--profiles", str(path)])
    return code, out


@pytest.mark.parametrize("case", ["label_twice", "profile_twice", "profiles_key_twice", "name_with_newline"])
def test_ambiguous_profile_files_are_refused_naming_the_problem(tmp_path, bundle_dir, spec, case, capsys):
    """json keeps the last of a repeated key silently, and the name pattern's "$" matches before a
    final newline: each would deploy thresholds nobody wrote down."""
    label = spec.labels[1]
    good = _thresholds(spec)
    text, problem = {
        "label_twice": (_obj([("profiles", _obj([("strict", _thresholds(spec, (label, "0.9")))]))]),
                        f"profile 'strict': label {label!r} given twice"),
        "profile_twice": (_obj([("profiles", _obj([("strict", good), ("lenient", good), ("strict", good)]))]),
                          "profile 'strict' defined twice"),
        "profiles_key_twice": (_obj([("profiles", _obj([("strict", good)])), ("profiles", "{}")]),
                               "key 'profiles' given twice"),
        "name_with_newline": (_obj([("profiles", _obj([("strict\n", good)]))]),
                              "profile name 'strict\\n' is not a simple identifier"),
    }[case]
    code, out = _deploy_profiles_text(tmp_path, bundle_dir, text)
    err = capsys.readouterr().err
    assert code == 2 and problem in err, err
    assert not out.exists()


def test_profile_files_load_the_same_way_in_the_model(tmp_path, spec):
    """The calibration model's initialize reads the file with the same function: an edited file
    with a repeated label does not load there either."""
    from opencc_cm_serving.bundle import load_profiles

    path = tmp_path / "profiles.json"
    path.write_text(_obj([("profiles", _obj([("strict", _thresholds(spec))]))]))
    assert load_profiles(path, spec.labels) == {"strict": (0.5,) * len(spec.labels)}
    path.write_text(_obj([("profiles", _obj([("strict", _thresholds(spec, (spec.labels[0], "0.1")))]))]))
    with pytest.raises(ConfigError, match="given twice"):
        load_profiles(path, spec.labels)


def test_a_model_prefix_with_a_trailing_newline_is_refused_naming_it(tmp_path, bundle_dir, capsys):
    from opencc_cm_client.cli import main as cli_main
    from opencc_cm_contract import TEXT_ENSEMBLE
    from opencc_cm_contract.names import prefixed

    out = tmp_path / "repo"
    code = deploy_main(["--bundle", str(bundle_dir), "--repository", str(TEMPLATES), "--output", str(out),
                        "--model-prefix", "jb_\n"])
    err = capsys.readouterr().err
    assert code == 2 and "--model-prefix 'jb_\\n'" in err and "lowercase letters" in err, err
    assert not out.exists()
    with pytest.raises(ValueError, match="model prefix 'jb_\\\\n'"):
        prefixed(TEXT_ENSEMBLE, "jb_\n")
    assert prefixed(TEXT_ENSEMBLE, "jb_") == "jb_classify_text"
    with pytest.raises(SystemExit):
        cli_main(["check", "--model-prefix", "jb_\n", "hello"])
    assert "'jb_\\n': lowercase letters" in capsys.readouterr().err


def test_calibrate_names_a_profile_only_as_deploy_accepts_it(capsys):
    from opencc_cm_client.cli import profile_name

    assert profile_name("strict_2") == "strict_2"
    for bad in ("strict\n", "2strict", "x" * 65):
        with pytest.raises(Exception, match="a letter, then letters"):
            profile_name(bad)


def test_the_printed_ingress_cap_covers_every_classifier_in_the_repository(tmp_path, bundle_dir, spec):
    from opencc_cm_serving.ingress import max_request_bytes, repository_classifiers, repository_request_cap

    small, large = 16 * spec.max_tokens, 64 * spec.max_tokens
    only_prefixed = deploy_to(bundle_dir, tmp_path / "only", "python-ort", "--model-prefix", "jailbreak_",
                              "--max-text-bytes", str(large))
    assert repository_classifiers(only_prefixed) == ["jailbreak_"]
    assert repository_request_cap(only_prefixed) == max_request_bytes(64, large, spec.max_tokens)
    both = deploy_to(bundle_dir, tmp_path / "both", "python-ort", "--max-text-bytes", str(small))
    deploy_to(bundle_dir, both, "python-ort", "--model-prefix", "jailbreak_", "--max-text-bytes", str(large))
    assert repository_classifiers(both) == ["", "jailbreak_"]
    assert repository_request_cap(both) == max_request_bytes(64, large, spec.max_tokens)
    assert repository_request_cap(both) > max_request_bytes(64, small, spec.max_tokens)
    assert repository_classifiers(TEMPLATES.parent / "nothing-here") == []
    assert repository_request_cap(tmp_path / "empty") is None


def test_command_line_and_python_api_share_their_defaults_and_choices():
    """deploy's command line builds a DeploySettings: with no option given it equals the settings'
    own defaults, and every choice option offers exactly the values the API checks."""
    from opencc_cm_serving.deploy import CHOICES, DeploySettings, parser

    assert DeploySettings.from_args(parser().parse_args(["--bundle", "b"])) == DeploySettings(bundle=Path("b"))
    for action in parser()._actions:
        if action.choices is not None:
            assert tuple(action.choices) == CHOICES[action.dest], action.dest


def _with_precision(bundle_dir: Path, folder: Path, precision: str) -> Path:
    """A copy of the toy bundle whose manifest says ``precision``."""
    import shutil

    shutil.copytree(bundle_dir, folder)
    manifest = json.loads((folder / "classifier.json").read_text())
    manifest["precision"] = precision
    (folder / "classifier.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "python-ort"])
def test_an_int8_bundle_is_refused_on_a_target_that_cannot_run_it(tmp_path, bundle_dir, target, capsys):
    bundle = _with_precision(bundle_dir, tmp_path / "int8", "int8")
    code = deploy_main(["--bundle", str(bundle), "--repository", str(TEMPLATES), "--output", str(tmp_path / "r"),
                        "--target", target])
    err = capsys.readouterr().err
    assert code == 2 and "is an int8 bundle" in err and repr(target) in err and "python-ort" in err
    assert not (tmp_path / "r").exists()


def test_an_int8_bundle_deploys_on_python_ort_on_the_cpu_provider_and_publishes_its_precision(tmp_path, bundle_dir):
    repo = deploy_to(_with_precision(bundle_dir, tmp_path / "int8", "int8"), tmp_path / "r", "python-ort")
    encoder = parse(repo / contract.ENCODER_MODEL / "config.pbtxt")
    assert encoder.parameters["providers"].string_value == "CPUExecutionProvider"
    for ensemble in (contract.IDS_ENSEMBLE, contract.TEXT_ENSEMBLE):
        assert parse(repo / ensemble / "config.pbtxt").parameters["precision"].string_value == "int8"
    fp32 = deploy_to(bundle_dir, tmp_path / "fp32", "python-ort")
    assert parse(fp32 / contract.ENCODER_MODEL / "config.pbtxt").parameters["providers"].string_value == "auto"
    assert parse(fp32 / contract.IDS_ENSEMBLE / "config.pbtxt").parameters["precision"].string_value == "fp32"


def test_an_unknown_precision_is_refused_naming_it(tmp_path, bundle_dir, capsys):
    bundle = _with_precision(bundle_dir, tmp_path / "int4", "int4")
    code = deploy_main(["--bundle", str(bundle), "--repository", str(TEMPLATES), "--output", str(tmp_path / "r")])
    assert code == 2 and "unknown precision 'int4'" in capsys.readouterr().err


def test_the_client_reads_the_published_precision_and_refuses_an_unknown_one(tmp_path, bundle_dir):
    from opencc_cm_client.server_info import ServerContractError, ServerInfo
    from google.protobuf import json_format

    repo = deploy_to(_with_precision(bundle_dir, tmp_path / "int8", "int8"), tmp_path / "r", "python-ort")
    config = json_format.MessageToDict(parse(repo / contract.IDS_ENSEMBLE / "config.pbtxt"),
                                       preserving_proto_field_name=True)
    assert ServerInfo.from_model_config(config, "1").precision == "int8"
    config["parameters"]["precision"] = {"string_value": "int4"}
    with pytest.raises(ServerContractError, match="unknown precision 'int4'"):
        ServerInfo.from_model_config(config, "1")
