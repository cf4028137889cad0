"""OpenCC's YAML read strictly (no server needed): OpenCC's shipped configurations without
generative stages load and map onto the server's classifiers; everything OpenCC would silently
drop or could not run here fails at startup naming the key."""
from __future__ import annotations

import pytest
import yaml

from opencc_cm_client.cli import main as opencc_cm
from opencc_cm_http import ConfigError, load_config, parse_config

# The three configurations OpenCC ships without generative stages (their keys and values).
CM_ONLY = """
jailbreak_detector: null
rephraser: null
content_moderation: content-moderation
frontier_judge: null
default_action: block
"""
JB_ONLY = CM_ONLY.replace("jailbreak_detector: null", "jailbreak_detector: jailbreak-detector").replace(
    "content_moderation: content-moderation", "content_moderation: null")
LOCAL = CM_ONLY.replace("jailbreak_detector: null", "jailbreak_detector: jailbreak-detector") + """
host: 127.0.0.1
port: 8000
# jailbreak_threshold: 0.34
"""


def load(text: str, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path)


def test_openccs_configurations_map_onto_the_servers_classifiers(tmp_path):
    cm = load(CM_ONLY, tmp_path)
    assert cm.jailbreak_detector is None and cm.default_action == "block"
    assert (cm.content_moderation.model, cm.content_moderation.model_prefix) == ("content-moderation", "")
    jb = load(JB_ONLY, tmp_path)
    assert jb.content_moderation is None and jb.jailbreak_detector.model_prefix == "jailbreak_"
    local = load(LOCAL, tmp_path)
    assert [s.stage for s in local.stages] == ["jailbreak_detector", "content_moderation"]
    assert all(s.threshold is None and s.threshold_profile == "default" for s in local.stages)
    assert local.opencc_view() == {"jailbreak_detector": "jailbreak-detector", "rephraser": None,
                                   "content_moderation": "content-moderation", "frontier_judge": None,
                                   "default_action": "block"}


def test_per_stage_classifier_profile_and_overrides(tmp_path):
    text = LOCAL.replace("default_action: block", "default_action: annotate") + """
jailbreak_threshold: 0.34
harm_threshold: 1
triton:
  jailbreak_detector: {model_prefix: jb2_, threshold_profile: strict}
  content_moderation: {threshold_profile: lenient}
"""
    cfg = load(text, tmp_path)
    assert (cfg.jailbreak_detector.model_prefix, cfg.jailbreak_detector.threshold_profile,
            cfg.jailbreak_detector.threshold) == ("jb2_", "strict", 0.34)
    assert (cfg.content_moderation.model_prefix, cfg.content_moderation.threshold_profile,
            cfg.content_moderation.threshold) == ("", "lenient", 1.0)
    assert cfg.default_action == "annotate"
    # a model name OpenCC's registry does not have is accepted once its classifier is named
    custom = load(CM_ONLY.replace("content-moderation", "my-cm") + "triton: {content_moderation: {model_prefix: mine_}}",
                  tmp_path)
    assert (custom.content_moderation.model, custom.content_moderation.model_prefix) == ("my-cm", "mine_")


BASE = yaml.safe_load(LOCAL)


@pytest.mark.parametrize("change, key, words", [
    ({"jailbreak_treshold": 0.3}, "jailbreak_treshold", "unknown key"),
    ({"rephraser": "rephraser"}, "rephraser", "generative stage"),
    ({"frontier_judge": "frontier-judge"}, "frontier_judge", "generative stage"),
    ({"content_moderation": "rephraser"}, "content_moderation", "not a classifier"),
    ({"content_moderation": 3}, "content_moderation", "model name or null"),
    ({"default_action": "allow"}, "default_action", "block, annotate"),
    ({"harm_threshold": 1.5}, "harm_threshold", "[0, 1]"),
    ({"jailbreak_threshold": "0.3"}, "jailbreak_threshold", "[0, 1]"),
    ({"port": 70000}, "port", "1-65535"),
    ({"triton": {"judge": {}}}, "triton.judge", "unknown stage"),
    ({"triton": {"content_moderation": {"prefix": "x_"}}}, "triton.content_moderation.prefix", "unknown key"),
    ({"triton": {"content_moderation": {"model_prefix": "Bad"}}}, "triton.content_moderation.model_prefix", "lowercase"),
    ({"jailbreak_detector": None, "jailbreak_threshold": 0.5}, "jailbreak_threshold", "off"),
    ({"jailbreak_detector": None, "triton": {"jailbreak_detector": {}}}, "triton.jailbreak_detector", "off"),
])
def test_a_bad_key_fails_naming_it(change, key, words):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **change}, "c.yaml")
    assert f"c.yaml: {key}: " in str(err.value) and words in str(err.value)


def test_openccs_defaults_for_missing_keys_are_refused_where_they_turn_on_a_generative_stage():
    """OpenCC turns the rephraser on when its key is missing: here that is an error, not a surprise."""
    with pytest.raises(ConfigError, match="rephraser: 'rephraser' is a generative stage.*missing"):
        parse_config({}, "empty.yaml")
    with pytest.raises(ConfigError, match="no classifier would run"):
        parse_config({"rephraser": None, "jailbreak_detector": None, "content_moderation": None}, "c.yaml")
    # with the rephraser off, the missing classifier keys are OpenCC's defaults: both classifiers on
    assert [s.model for s in parse_config({"rephraser": None}).stages] == ["jailbreak-detector", "content-moderation"]


@pytest.mark.parametrize("text, words", [("a: [", "invalid YAML"), ("- 1\n- 2\n", "mapping"), (b"\xff\xfe", "UTF-8")])
def test_unreadable_files(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=words):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_a_key_given_twice_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"content_moderation: given twice \(line 7\)"):
        load(CM_ONLY + "content_moderation: null\n", tmp_path)
    with pytest.raises(ConfigError, match="model_prefix: given twice"):
        load(CM_ONLY + "triton: {content_moderation: {model_prefix: a_, model_prefix: b_}}\n", tmp_path)


def test_the_cli_exits_2_with_one_line_naming_the_key(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(CM_ONLY + "colour: blue\n")
    assert opencc_cm(["serve-http", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "colour: unknown key" in err
    with pytest.raises(SystemExit) as exit_:
        opencc_cm(["serve-http", "--config", str(path), "--url", "db-0:8001,db-1:8001"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "--url" in err and "IP addresses" in err


def test_the_plain_client_does_not_load_the_web_stack():
    import subprocess
    import sys

    code = ("import sys, opencc_cm_client, opencc_cm_client.cli, opencc_cm_client.opencc_backend;"
            "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn', 'yaml', 'prometheus_client') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
