"""Generate with each method and score every image: the evaluation loop, backend-agnostic.

A backend knows how to turn reference photos into LoRAs and prompts into images (through
ComfyUI as a library) and, optionally, how to embed faces with the conditioning face model and
judge toy attributes. The loop is the same for the toy world and for real SDXL:

    for person, prompt, seed: for method in (no LoRA, ID-LoRA @ strengths, ID+Base): generate, score
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .metrics import ClipScorer, DlibFaces, cosine, dlib_distance


@dataclass(frozen=True)
class Method:
    """One way of generating: ID-LoRA strength, Base-LoRA strength, and how many reference photos."""

    name: str
    id_strength: float = 0.0
    base_strength: float = 0.0
    refs: int | None = None  # None: all of the person's photos

    @property
    def label(self) -> str:
        if self.name == "no LoRA":
            return self.name
        parts = [f"{self.name} {self.id_strength:g}"]
        if self.base_strength:
            parts.append(f"base {self.base_strength:g}")
        if self.refs:
            parts.append(f"{self.refs} ref{'s' if self.refs > 1 else ''}")
        return ", ".join(parts)


def default_methods(strengths: Sequence[float] = (0.5, 0.75, 0.85, 1.0), has_base: bool = False,
                    base_strength: float = 0.5, id_base_strength: float = 0.85,
                    refs: Sequence[int | None] = (None,)) -> list[Method]:
    """no LoRA, ID-LoRA at each strength (and refs count), and ID+Base when the checkpoint has a Base-LoRA."""
    methods = [Method("no LoRA")]
    for k in refs:
        methods += [Method("ID-LoRA", s, refs=k) for s in strengths]
    if has_base:
        methods.append(Method("ID+Base", id_base_strength, base_strength))
    return methods


@dataclass
class Person:
    name: str
    photos: list[np.ndarray]  # uint8 [H, W, 3]
    attributes: np.ndarray | None = None  # toy world: the identity's six attribute values


class Backend(Protocol):
    name: str
    has_base: bool

    def prepare(self, person: Person) -> object: ...
    def id_lora(self, prepared: object, refs: int | None) -> dict: ...
    def base_lora(self, prepared: object, refs: int | None) -> dict | None: ...
    def generate(self, prompt: str, seed: int, loras: list[tuple[dict, float]]) -> np.ndarray: ...
    def face_embedding(self, image: np.ndarray) -> np.ndarray | None: ...
    def attribute_match(self, image: np.ndarray, person: Person) -> np.ndarray | None: ...


@dataclass
class Record:
    person: str
    method: Method
    prompt: str
    seed: int
    metrics: dict[str, float]
    image: np.ndarray = field(repr=False)


METRICS = ("id_arcface", "id_dlib_cos", "id_dlib_l2", "clip_i", "clip_t", "face_detected", "attr_match", "attr_all6")
"""Per-image metrics (NaN when not applicable, e.g. dlib on a toy image without a detectable face)."""


def evaluate(backend: Backend, persons: Sequence[Person], prompts: Sequence[str], methods: Sequence[Method],
             seeds: Sequence[int] = (0,), clip: ClipScorer | None = None, dlib: DlibFaces | None = None,
             log: Callable[[str], None] | None = None) -> list[Record]:
    records: list[Record] = []
    for index, person in enumerate(persons):
        prepared = backend.prepare(person)
        ref_arc = [e for e in (backend.face_embedding(p) for p in person.photos) if e is not None]
        ref_arc_mean = np.mean(ref_arc, axis=0) if ref_arc else None
        ref_dlib = [d for d in (dlib.descriptor(p) for p in person.photos) if d is not None] if dlib else []
        loras: dict[tuple, dict | None] = {}
        for method in methods:
            stack = []
            if method.id_strength:
                key = ("id", method.refs)
                if key not in loras:
                    loras[key] = backend.id_lora(prepared, method.refs)
                stack.append((loras[key], method.id_strength))
            if method.base_strength:
                key = ("base", method.refs)
                if key not in loras:
                    loras[key] = backend.base_lora(prepared, method.refs)
                if loras[key] is None:
                    continue
                stack.append((loras[key], method.base_strength))
            for prompt in prompts:
                for seed in seeds:
                    # the same noise for every method of one person; different people, different noise
                    image = backend.generate(prompt, seed * 10007 + index, stack)
                    m = {k: math.nan for k in METRICS}
                    emb = backend.face_embedding(image)
                    if emb is not None and ref_arc_mean is not None:
                        m["id_arcface"] = cosine(emb, ref_arc_mean)
                    if dlib is not None:
                        d = dlib.descriptor(image)
                        m["face_detected"] = float(d is not None)
                        if d is not None and ref_dlib:
                            m["id_dlib_cos"] = float(np.mean([cosine(d, r) for r in ref_dlib]))
                            m["id_dlib_l2"] = float(np.mean([dlib_distance(d, r) for r in ref_dlib]))
                    match = backend.attribute_match(image, person)
                    if match is not None:
                        m["attr_match"] = float(np.mean(match))
                        m["attr_all6"] = float(np.all(match))
                    records.append(Record(person.name, method, prompt, seed, m, image))
            if log:
                log(f"{person.name}: {method.label} done")
    if clip is not None:
        by_person = {p.name: p for p in persons}
        gen = [r.image for r in records]
        t_scores = clip.clip_t(gen, [r.prompt for r in records]) if gen else []
        for r, t in zip(records, t_scores):
            r.metrics["clip_t"] = float(t)
        for name, person in by_person.items():
            rs = [r for r in records if r.person == name]
            for r, s in zip(rs, clip.clip_i([r.image for r in rs], person.photos)):
                r.metrics["clip_i"] = float(s)
    return records


def summarise(records: Sequence[Record]) -> list[dict]:
    """One row per method: the mean of every metric over persons, prompts and seeds (NaNs ignored)."""
    rows = []
    order: list[Method] = []
    for r in records:
        if r.method not in order:
            order.append(r.method)
    for method in order:
        rs = [r for r in records if r.method == method]
        row = {"method": method.label, "kind": method.name, "id_strength": method.id_strength,
               "base_strength": method.base_strength, "refs": method.refs or 0, "images": len(rs)}
        for k in METRICS:
            vals = np.array([r.metrics[k] for r in rs], dtype=np.float64)
            row[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
        rows.append(row)
    return rows
