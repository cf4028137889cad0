"""The A/B deployment benchmark runs end to end on the tiny bundle: two real servers deployed with
different encoder settings, prompts sent to each in turn, a paired report; the two deployments
of one bundle answer the same scores."""
from __future__ import annotations

import json

import pytest

from opencc_cm_benchmarks.deploy_ab import main


def test_two_deployments_measured_in_turn_answer_the_same_scores(tiny_bundle, tmp_path):
    out = tmp_path / "ab.json"
    assert main(["--bundle", str(tiny_bundle), "--a=--encoder-spinning=off", "--b=--encoder-spinning=on",
                 "--prompts", "4", "--rounds", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["deploy_args"] == {"A": ["--encoder-spinning=off"], "B": ["--encoder-spinning=on"]}
    for side in ("A", "B"):
        assert len(report[side]["samples_ms"]) == 4 and report[side]["mean_ms"] > 0
    assert report["max_abs_score_diff"] <= 1e-4 and report["mean_speedup_b_over_a"] > 0


def test_a_deploy_argument_that_fails_stops_the_run(tiny_bundle, tmp_path):
    with pytest.raises(SystemExit, match="side B .*sometimes.* failed"):
        main(["--bundle", str(tiny_bundle), "--b=--encoder-spinning=sometimes", "--prompts", "2",
              "--out", str(tmp_path / "ab.json")])
    assert not (tmp_path / "ab.json").exists()
