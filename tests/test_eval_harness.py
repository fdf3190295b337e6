"""The evaluation loop and its reports: a scripted backend for the bookkeeping, SDXL stand-ins and the toy CLI end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hyperlora_core.eval.harness import Method, Person, default_methods, evaluate, summarise
from hyperlora_core.eval.report import write_report


class ScriptedBackend:
    """Images whose brightness encodes the ID strength, and a 'face embedding' that reads it back."""

    name = "scripted"
    has_base = False

    def __init__(self):
        self.calls: list[tuple] = []

    def prepare(self, person):
        return person.name

    def id_lora(self, prepared, refs):
        return {"who": prepared, "refs": refs}

    def base_lora(self, prepared, refs):
        return None

    def generate(self, prompt, seed, loras):
        self.calls.append((prompt, seed, [(lo["who"], s) for lo, s in loras]))
        strength = sum(s for _, s in loras)
        return np.full((8, 8, 3), int(50 + 100 * strength), dtype=np.uint8)

    def face_embedding(self, image):
        v = image.mean() / 255.0
        return np.array([v, 1.0 - v])

    def attribute_match(self, image, person):
        return np.array([image.mean() > 75] * 6)


def test_methods_and_labels():
    methods = default_methods((0.5, 1.0), has_base=True, refs=(1, None))
    assert [m.label for m in methods] == ["no LoRA", "ID-LoRA 0.5, 1 ref", "ID-LoRA 1, 1 ref", "ID-LoRA 0.5",
                                          "ID-LoRA 1", "ID+Base 0.85, base 0.5"]
    assert Method("ID-LoRA", 1.0, refs=4).label == "ID-LoRA 1, 4 refs"


def test_loop_pairs_noise_across_methods_and_summarises(tmp_path):
    backend = ScriptedBackend()
    persons = [Person("a", [np.full((8, 8, 3), 200, np.uint8)]), Person("b", [np.full((8, 8, 3), 100, np.uint8)])]
    methods = default_methods((0.5, 1.0), has_base=False)
    records = evaluate(backend, persons, ["p1", "p2"], methods, seeds=(0, 1))
    assert len(records) == 2 * 3 * 2 * 2
    seeds_a = {c[1] for c in backend.calls[:12]}
    seeds_b = {c[1] for c in backend.calls[12:]}
    assert len(seeds_a) == 2 and not seeds_a & seeds_b  # same noise for every method of a person, new per person
    rows = summarise(records)
    assert [r["method"] for r in rows] == ["no LoRA", "ID-LoRA 0.5", "ID-LoRA 1"]
    assert [r["attr_match"] for r in rows] == [0.0, 1.0, 1.0]
    assert rows[0]["images"] == 8 and math.isnan(rows[0]["clip_i"])  # no CLIP scorer given
    assert rows[2]["id_arcface"] > rows[0]["id_arcface"]
    paths = write_report(records, rows, tmp_path, ["a note"], title="scripted")
    text = paths["markdown"].read_text()
    assert "| ID-LoRA 1 | 8 |" in text and "a note" in text and "CLIP-I" not in text
    assert paths["csv"].read_text().count("\n") == 4
    assert paths["plot"].stat().st_size > 1000 and paths["grid"].stat().st_size > 100


def test_base_method_is_skipped_without_a_base_lora():
    backend = ScriptedBackend()
    records = evaluate(backend, [Person("a", [np.zeros((8, 8, 3), np.uint8)])], [""],
                       [Method("no LoRA"), Method("ID+Base", 0.85, 0.5)])
    assert [r.method.name for r in records] == ["no LoRA"]


@pytest.mark.usefixtures("one_thread")
def test_toy_strength_sweep_from_the_command_line(tmp_path, capsys):
    """`eval --toy` measures the toy world through `toy/measure.py` (no harness backend of its own): the strength
    sweep's table with intervals, its plot, and the headline with the LoRA far above without."""
    import re

    from hyperlora_core.comfy_bridge.boot import boot_comfy
    from hyperlora_core.eval.__main__ import main

    boot_comfy()
    assert main(["--toy", "--identities", "8", "--steps", "12", "--strengths", "0.5,1.0", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in out.splitlines() if ln.startswith("| ")}
    assert {"no LoRA", "ID-LoRA x1", "ID-LoRA x1 at 0.5", "ID-LoRA x4", "ID + Base"} <= set(rows)
    with_lora, without = (float(v) for v in re.fullmatch(r"heldout_match_with_lora=(\S+) without=(\S+)",
                                                          out.strip().splitlines()[-1]).groups())
    assert with_lora > without + 0.2
    assert (tmp_path / "toy_strength.png").stat().st_size > 1000


def test_sdxl_backend_end_to_end_on_standins(tmp_path):
    """The real-SDXL path (encode_id -> LoRA -> apply_lora -> KSampler -> VAE -> ArcFace) on tiny stand-ins:
    tiny SDXL-architecture models, the stand-in face pack and random HyperLoRA weights (numbers meaningless)."""
    from hyperlora_core import standins
    from hyperlora_core.eval.backends import SDXLBackend
    from hyperlora_core.face.analyzer import FaceAnalyzer
    from hyperlora_core.model import HyperLoRA
    from hyperlora_core.standins import write_tiny_face_pack

    pack = write_tiny_face_pack(tmp_path / "antelopev2")
    ckpt = standins.write_tiny_checkpoint(tmp_path / "tiny.safetensors", seed=2, base_rank=2)
    backend = SDXLBackend(standins.build_tiny_sdxl(), standins.build_tiny_clip(), standins.build_tiny_vae(),
                          HyperLoRA.from_pretrained(ckpt), FaceAnalyzer.load(pack), standins.build_tiny_clip_vision(),
                          size=64, steps=3, cfg=2.0)
    photos = [np.asarray(standins.face_photo(i)) for i in (0, 1)]
    methods = default_methods((1.0,), backend.has_base, base_strength=0.5)
    assert [m.name for m in methods] == ["no LoRA", "ID-LoRA", "ID+Base"]
    records = evaluate(backend, [Person("p", photos)], ["a photo of a person"], methods)
    assert [r.method.name for r in records] == ["no LoRA", "ID-LoRA", "ID+Base"]
    images = [r.image for r in records]
    assert all(im.shape == (64, 64, 3) and im.dtype == np.uint8 for im in images)
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    ref = backend.face_embedding(photos[0])
    assert ref is not None and ref.shape == (512,) and abs(np.linalg.norm(ref) - 1) < 1e-3
