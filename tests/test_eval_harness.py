"""The evaluation loop and its reports: a scripted backend for the bookkeeping, the toy world end to end."""

from __future__ import annotations

import math

import numpy as np

from hyperlora_core.eval.harness import Method, Person, default_methods, evaluate, summarise
from hyperlora_core.eval.report import markdown_table, write_report


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


def test_toy_world_end_to_end_through_comfyui(tmp_path):
    from hyperlora_core.eval.backends import ToyBackend
    from hyperlora_core.eval.metrics import DlibFaces

    backend = ToyBackend(steps=12)
    persons = ToyBackend.heldout_persons(6, refs=2)
    methods = default_methods((1.0,), backend.has_base)
    records = evaluate(backend, persons, [""], methods, dlib=DlibFaces())
    rows = {r["method"]: r for r in summarise(records)}
    assert backend.has_base  # the shipped toy HyperLoRA has a Base-LoRA branch: ID + Base is measured too
    full = next(m.label for m in methods if m.label.startswith("ID+Base"))
    assert set(rows) == {"no LoRA", "ID-LoRA 1", full}
    assert rows["ID-LoRA 1"]["attr_match"] > rows["no LoRA"]["attr_match"] + 0.2
    assert rows[full]["attr_match"] > rows["no LoRA"]["attr_match"] + 0.1
    assert rows["ID-LoRA 1"]["id_arcface"] > rows["no LoRA"]["id_arcface"]
    assert rows["ID-LoRA 1"]["face_detected"] == 0.0  # dlib does not see 32-px cartoons as faces
    table = markdown_table(list(rows.values()))
    assert "toy attribute match" in table and "dlib" not in table.split("\n")[0].replace("face detection", "")


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
