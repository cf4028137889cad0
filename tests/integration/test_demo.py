"""``make demo`` end to end on the trained demo checkpoint: exported, deployed, served by a real
Triton server; the demo passes everyday prompts and flags the harmful ones in their category."""
from __future__ import annotations

import re

from integration_support import deploy_tiny

from opencc_cm_jobs import demo


def test_demo_prints_the_intended_verdicts(demo_checkpoint, tmp_path, capsys):
    from opencc_cm_export.export_pipeline import export_bundle

    bundle = tmp_path / "bundle"
    export_bundle(demo_checkpoint["classifier"], bundle, base_model=demo_checkpoint["base_model"],
                  max_tokens=2048, progress=lambda *_: None)
    repo = deploy_tiny(bundle, tmp_path / "repo")
    code = demo.main(["--model-repository", str(repo), "--tokenizer", str(bundle / "tokenizer.json"),
                      "--server-log", str(tmp_path / "server.log")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "tiny stand-in" in out and "say nothing about opencc-cm-escalation" in out
    table = out.split("client-side tokenization -> classify_ids:")[1].split("raw text ->")[0]
    blocks = re.split(r"\n(?=FLAGGED|ok )", table.strip())
    assert len(blocks) == len(demo.EXPECTED)
    for block, (prompt, category) in zip(blocks, demo.EXPECTED.items()):
        verdict = block.split()[0]
        fired = set(re.findall(r"^\s+\* (.+?)\s{2,}\d", block, flags=re.M))
        if category is None:
            assert verdict == "ok" and not fired, block
        else:
            assert verdict == "FLAGGED" and category in fired, block
