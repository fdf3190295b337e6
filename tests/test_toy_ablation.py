"""The ablation table's verdicts (`toy/ablation.py`): each paper claim is judged from the measured rows."""

from __future__ import annotations

import json

from hyperlora_core.toy.ablation import RESULTS, claims, table


def _row(work, name, **numbers):
    base = {"no_lora": 0.3, "no_lora_all6": 0.0, "no_lora_leakage": 0.2, "no_lora_edit_follow": 0.8,
            "no_lora_id_match_edit": 0.3, "id_match_1ref": 0.7, "id_match_4ref": 0.7, "all6_1ref": 0.1,
            "leakage": 0.3, "edit_follow": 0.7, "id_match_edit": 0.6}
    (work / RESULTS).mkdir(parents=True, exist_ok=True)
    (work / RESULTS / f"{name}.json").write_text(json.dumps({"numbers": {**base, **numbers}, "cfg_rows": [
        {"cfg": 1.0, "id_id_match": 0.7, "no_lora_id_match": 0.3}, {"cfg": 7.0, "id_id_match": 0.6, "no_lora_id_match": 0.3}]}))


def test_verdicts_follow_the_numbers_and_missing_rows_are_not_measured(tmp_path):
    _row(tmp_path, "full", leakage=0.22, edit_follow=0.75, base_match=0.9, id_match_id_base=0.7, edit_follow_id_base=0.5,
         id_match_4ref=0.71)
    _row(tmp_path, "id_only", leakage=0.40, edit_follow=0.60)
    lines = claims(tmp_path).splitlines()[2:]

    def verdict(claim: str) -> str:
        (line,) = [x for x in lines if x.startswith(f"| {claim}")]
        return line.rsplit(" | ", 1)[1].rstrip(" |")

    assert verdict("Base-LoRA split: with a Base-LoRA trained beside it, the ID-LoRA copies less") == "confirmed"
    assert verdict("Base-LoRA split: the ID-LoRA stays editable") == "confirmed"
    assert verdict("Full (ID + Base) is more faithful") == "confirmed"
    assert verdict("ID only is more editable than Full") == "confirmed"
    assert verdict("Several photos are better than one") == "not distinguishable"  # 0.01 is within the margin
    assert verdict("The CLIP stage helps identity") == "not measured"
    assert verdict("LoRA tolerates CFG") == "refuted"  # the ID-LoRA's gain fell from 0.4 to 0.3
    text = table(tmp_path)
    assert "| no LoRA | 0.300 |" in text and "ID + Base | 0.700 |" in text
