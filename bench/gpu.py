"""The GPU check: generation, sampling, the photo path, a training step and memory management.

One script, one process, at the published full size with random weights (nothing is downloaded):
the SDXL UNet built with ComfyUI's classes, the hypernetwork at the released shapes (K 128, rank 8,
140 modules, resampler 1024 x 4, 16 ID tokens), a CLIP ViT-L/14-size vision model through
ComfyUI's `clip_vision`, and the stand-in face models through our `FaceAnalyzer`. Every ratio is
measured against a baseline run side by side in this process, in interleaved rounds
(`bench/_measure.py`: median of per-round ratios, +- half the interquartile range).

Parts (`--parts`, default all, in this order):

* `mm`: ComfyUI's model management on a simulated 12 GB card (ComfyUI's own reserve setting):
  generate an ID-LoRA (hypernetwork + CLIP vision loaded), sample with the UNet, check the
  hypernetwork and CLIP vision were offloaded to make room (the UNet loaded whole), generate again
  (they reload).
* `generate`: ID-LoRA generation, 1 and 4 photos, fp16 and bf16 storage: ours vs the per-layer form
  of the published code; wall time with CUDA synchronised; peak GPU memory above the start. Then the
  same generation five ways side by side (`generation_paths`: built on the device, loaded by ComfyUI,
  the Generate node's path, right after face analysis with onnxruntime's threads spinning or not) with
  per-phase times, to pin down the photo path's 113 ms against 32 ms (H200, 2026-11-26).
* `photo`: the full photo path, per photo: face analysis (onnxruntime, the provider that ran is
  printed), CLIP ViT-L/14-size vision through ComfyUI, generation; 1 and 4 photos.
* `sample`: SDXL UNet steps at 1024 x 1024 (fp16), bare vs our LoRA merged vs an attn2 patch with 16
  image tokens; the one-time merge cost (bench/sampling.py's method).
* `train`: one `arcface_id` training step (hypernetwork + SDXL UNet, bf16 autocast, AdamW), batch 1
  and 4, gradient checkpointing off/on, against a plain fixed-LoRA training step of the same UNet
  through the same hooks; then batch 1 in a one-process NCCL group with DDP and with FSDP2.
* `toy`: `make toy-world`'s stages on this device at smoke size (`toy.build --smoke --device <this>`):
  judge, analogues, VAE and base UNet train here, the HyperLoRA through the trainer; each stage's
  recorded device is checked, so a GPU build of the shipped world will not fail hours in.

* `flux`: FLUX.1-dev size (11.9 B, random bf16 weights, ComfyUI's `Flux` classes through our FLUX
  profile, its default target set): the basis and hypernetwork sizes the target table implies (K 128,
  rank 8, the published resampler), ID-LoRA generation (1 and 4 photos, peak memory), Apply's one-off
  merge (ComfyUI's patcher, checked weight by weight against W + s*alpha/r*up@down), sampler steps merged
  vs bare at 1024 px (CFG 1), and one `arcface_id` training step against a fixed-LoRA step at 1024 px
  with gradient checkpointing, batch 1 and 2 (out of memory is reported, not fatal), with the peak
  memory `train/configs/flux.yaml`'s plan needs. Fewer rounds than the SDXL parts (a FLUX step is slow).

`--tiny` runs the same code on the CPU at tiny sizes in seconds (CI runs it so it cannot rot).
Each figure is also printed as a `gpu_check_<name>=<value>` line when measured (the last: `failed_parts`);
`--json FILE` writes them all (after every part); `--budget-s N` starts no part after N seconds.

Run: python bench/gpu.py [--tiny] [--parts mm,generate,photo,sample,train,toy,flux] [--json out.json] [--budget-s N]
On the lent GPU machine: `bash scripts/pack_gpu.sh` here first (README, "Speed on a GPU").
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scripts.comfy_env import boot_comfy  # noqa: E402

PARTS = ("mm", "generate", "photo", "sample", "train", "toy", "flux")
SIMULATED_CARD_GB = 8
"""The card the `mm` part pretends to be (a common consumer size), through ComfyUI's own reserve: on
it the SDXL UNet, the fp16 hypernetwork and CLIP vision do not all fit at once."""


@dataclass
class Sizes:
    """Full published sizes on a GPU, or tiny ones for the CPU smoke run."""

    tiny: bool

    @property
    def latent(self) -> int:  # 1024 px -> 128
        return 8 if self.tiny else 128

    @property
    def rounds(self) -> int:
        return 3 if self.tiny else 7

    @property
    def sample_steps(self) -> int:
        return 3 if self.tiny else 12

    def unet_config(self) -> dict:
        from hyperlora_core.comfy_bridge.bases import sdxl

        return sdxl.unet_config(**sdxl.TINY_OVERRIDES) if self.tiny else sdxl.unet_config()

    def hyper_config(self, unet=None):
        from _models import hyperlora_config

        from hyperlora_core.comfy_bridge.bases import SDXL

        if self.tiny:
            return hyperlora_config(tuple(SDXL.module_specs(unet)), dim=32, depth=1, heads=2, basis_size=8,
                                    id_tokens=2, clip_dim=self.clip_dim)
        return hyperlora_config()

    @property
    def clip_dim(self) -> int:
        return 32 if self.tiny else 1024

    @property
    def flux_latent(self) -> int:  # FLUX's VAE: 8x down, 16 channels; 1024 px -> 128 (4,096 image tokens)
        return 8 if self.tiny else 128

    @property
    def flux_steps(self) -> int:
        return 3 if self.tiny else 8

    @property
    def flux_rounds(self) -> int:
        """Interleaved rounds of the FLUX sampling and training comparisons (a FLUX-dev step is slow)."""
        return 3 if self.tiny else 2


class Report:
    """Prints as it goes; keeps the `gpu_check_*` figures for the end and for --json."""

    def __init__(self) -> None:
        self.figures: dict[str, object] = {}
        self.raw: dict[str, object] = {}
        """Per-round samples behind the figures, for --json (to see what a spread is made of)."""

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)

    def section(self, title: str) -> None:
        self(f"\n== {title} ==")

    def figure(self, name: str, value: object) -> None:
        """Record a figure; printed at once, so a run stopped by a time limit still shows it."""
        self.figures[name] = value
        print(f"gpu_check_{name}={value}", flush=True)


# -- device helpers -----------------------------------------------------------------------------
def device_and_sync():
    import comfy.model_management
    import torch

    dev = comfy.model_management.get_torch_device()
    return dev, (torch.cuda.synchronize if dev.type == "cuda" else None)


def gpu_mib() -> float:
    import torch

    return torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0


@contextlib.contextmanager
def peak_gpu(out: dict):
    """Peak GPU memory above the level at entry, in MiB (0 on the CPU)."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    try:
        yield out
    finally:
        if cuda:
            torch.cuda.synchronize()
            out["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            out["peak_mib"] = 0.0


def release() -> None:
    """Drop every model ComfyUI holds and return cached GPU memory (between parts)."""
    import comfy.model_management
    import torch

    comfy.model_management.unload_all_models()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def live_cuda_tensors(report: Report, top: int = 6) -> None:
    """What still holds GPU memory after a part: the largest live CUDA tensors and who refers to them."""
    import torch

    gc.collect()
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated module attributes warn when probed
        for obj in gc.get_objects():
            try:
                if isinstance(obj, torch.Tensor) and obj.is_cuda:
                    found.append(obj)
            except Exception:  # noqa: BLE001 - some objects refuse isinstance probes
                continue
    total = sum(t.untyped_storage().nbytes() for t in {id(t.untyped_storage()): t for t in found}.values())
    report(f"  live CUDA tensors: {len(found)}, {total / 2**20:.0f} MiB in distinct storages")
    for t in sorted(found, key=lambda t: -t.untyped_storage().nbytes())[:top]:
        holders = sorted({type(r).__name__ for r in gc.get_referrers(t) if r is not found})
        report(f"  {tuple(t.shape)} {t.dtype} {t.untyped_storage().nbytes() / 2**20:.0f} MiB <- {holders[:6]}")


def photos_for_check(count: int):
    """Real photos that ship inside wheels (scikit-image's astronaut, insightface's samples)."""
    import insightface
    import numpy as np
    from PIL import Image
    from skimage import data

    images = Path(insightface.__file__).parent / "data" / "images"
    pool = [data.astronaut(), np.asarray(Image.open(images / "t1.jpg").convert("RGB"))]
    return [pool[i % len(pool)] for i in range(count)]


def random_conditions(photos: int, clip_dim: int, tokens: int = 257, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(photos, tokens, clip_dim, generator=g)
    ids = torch.nn.functional.normalize(torch.randn(photos, 512, generator=g), dim=-1)
    return clip, ids


def clip_vision_model(sizes: Sizes):
    """ComfyUI's `ClipVisionModel` at ViT-L/14 size (or tiny), random weights."""
    import comfy.clip_vision

    from hyperlora_core.comfy_bridge.random_init import init_weights

    with tempfile.TemporaryDirectory() as tmp:
        if sizes.tiny:
            from hyperlora_core.comfy_bridge.backbone import TINY_CLIP_VISION

            cfg = Path(tmp) / "tiny_clip_vision.json"
            cfg.write_text(json.dumps(TINY_CLIP_VISION))
        else:
            cfg = Path(comfy.clip_vision.__file__).parent / "clip_vision_config_vitl.json"
        vision = comfy.clip_vision.ClipVisionModel(str(cfg))
    init_weights(vision.model, seed=5)
    return vision


def build_unet(sizes: Sizes, dtype):
    """The SDXL UNet (ComfyUI's classes) at full size or tiny, random weights, built on the GPU when there is one."""
    import comfy.model_management

    from hyperlora_core.comfy_bridge.bases import SDXL
    from hyperlora_core.comfy_bridge.random_init import init_weights

    device = comfy.model_management.get_torch_device()
    unet = SDXL.build(sizes.unet_config(), device=device, dtype=dtype)
    init_weights(unet.model, seed=0, std=0.02)
    return unet


def start_offloaded(config, device):
    """A random fp16 (CPU: fp32) hypernetwork on the CPU, as the Loader leaves it for ComfyUI to load.

    Built on `device` (random numbers for 1.6 B parameters are slow on a CPU), then moved off it.
    """
    import torch
    from _models import random_hyperlora

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    return random_hyperlora(config, device=device, dtype=dtype).to("cpu")


# -- part: model management ---------------------------------------------------------------------
def part_mm(sizes: Sizes, report: Report) -> None:
    import comfy.model_management as mm
    import torch
    from sampling import conditioning, sampler_run

    from hyperlora_core.comfy_bridge.clip_vision import ComfyClipEncoder
    from hyperlora_core.comfy_bridge.model_management import hyperlora_patcher, load_for_use
    from hyperlora_core.encode import encode_id
    from hyperlora_core.face import FaceAnalyzer
    from hyperlora_core.standins import write_tiny_face_pack

    report.section(f"ComfyUI model management: offload for sampling, reload for the next generation "
                   f"(simulated {SIMULATED_CARD_GB} GB card)")
    dev, sync = device_and_sync()
    cuda = dev.type == "cuda"
    unet = build_unet(sizes, torch.float16 if cuda else torch.float32)
    vision = clip_vision_model(sizes)
    hl = start_offloaded(sizes.hyper_config(unet), dev)
    unet.model.to(unet.offload_device)  # as ComfyUI leaves a loaded checkpoint before its first use
    patcher = hyperlora_patcher(hl)
    saved_reserve = mm.EXTRA_RESERVED_VRAM
    if cuda:
        total = torch.cuda.get_device_properties(dev).total_memory
        mm.EXTRA_RESERVED_VRAM = max(saved_reserve, total - SIMULATED_CARD_GB * 2**30)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            analyzer = FaceAnalyzer.load(write_tiny_face_pack(Path(tmp) / "antelopev2"), providers="auto")
            photos = photos_for_check(2)

            def generate() -> tuple[float, float]:
                """As the graph runs it: Encode ID (ComfyUI loads CLIP vision), then Generate ID LoRA."""
                cond = encode_id(photos, analyzer, ComfyClipEncoder(vision))
                if sync:
                    sync()
                t0 = time.perf_counter()
                model = load_for_use(patcher)
                if sync:
                    sync()
                t_load = time.perf_counter() - t0
                model.generate_id_lora(cond.clip_tokens, cond.id_embeds)
                if sync:
                    sync()
                return t_load, time.perf_counter() - t0

            def gpu_share(module) -> tuple[float, float]:
                sizes_by_place = [(p.numel() * p.element_size(), p.is_cuda) for p in module.parameters()]
                return sum(n for n, cuda_ in sizes_by_place if cuda_) / 2**30, sum(n for n, _ in sizes_by_place) / 2**30

            def where() -> str:
                (h_gpu, h_all), (c_gpu, c_all) = gpu_share(hl), gpu_share(vision.model)
                return f"on the GPU: hypernetwork {h_gpu:.2f} of {h_all:.2f} GiB, CLIP vision {c_gpu:.2f} of {c_all:.2f} GiB"

            t_load1, t_gen1 = generate()
            t_load_warm, _ = generate()
            before = gpu_mib()
            report(f"after generating: {where()}; GPU memory {before:.0f} MiB "
                   f"(first load {t_load1:.2f} s, already loaded {t_load_warm * 1e3:.1f} ms)")
            pos, neg = conditioning(77, unet.model.model_config.unet_config["context_dim"])
            latent = torch.zeros(1, 4, sizes.latent, sizes.latent)
            sampler_run(unet, pos, neg, latent, 2, time.perf_counter, sync)
            offloaded = gpu_share(hl)[0] + gpu_share(vision.model)[0] < gpu_share(hl)[1] + gpu_share(vision.model)[1]
            unet_whole = unet.loaded_size() >= unet.model_size()
            report(f"after sampling at {8 * sizes.latent} px: {where()}; GPU memory {gpu_mib():.0f} MiB; UNet "
                   f"{unet.loaded_size() / 2**30:.2f} of {unet.model_size() / 2**30:.2f} GiB on the GPU; "
                   f"ComfyUI holds {[type(m.model.model).__name__ for m in mm.current_loaded_models]}")
            t_reload, t_gen2 = generate()
            whole_again = gpu_share(hl)[0] == gpu_share(hl)[1]
            report(f"second generation: hypernetwork reload {t_reload:.2f} s, with generation {t_gen2:.2f} s; {where()}")
            if cuda:
                report.figure("mm_offloaded_for_sampling", offloaded)
                report.figure("mm_unet_loaded_whole", unet_whole)
                report.figure("mm_reload_s", round(t_reload, 3))
                report.figure("mm_hypernetwork_whole_for_generation", whole_again)
                report(f"ComfyUI offloaded (part of) the hypernetwork and CLIP vision for sampling: {offloaded}")
            else:
                report("(CPU: load and offload device are the same; offloading is exercised only on a GPU)")
    finally:
        mm.EXTRA_RESERVED_VRAM = saved_reserve
        release()


# -- part: generation ---------------------------------------------------------------------------
def part_generate(sizes: Sizes, report: Report) -> None:
    import torch
    from _models import PerLayerReference, random_hyperlora

    from hyperlora_core.comfy_bridge.bases import SDXL

    report.section("ID-LoRA generation: ours vs the per-layer form of the published code")
    dev, sync = device_and_sync()
    unet = SDXL.build(sizes.unet_config(), device="meta") if sizes.tiny else None
    config = sizes.hyper_config(unet)
    report(f"{len(config.modules)} modules, K {config.basis_size}, rank {config.rank}, resampler "
           f"{config.resampler.dim} x {config.resampler.depth}; on {dev}; wall ms with "
           f"{'CUDA synchronised' if sync else 'CPU'}; median of {sizes.rounds} interleaved rounds")
    report(f"{'storage':>8} {'photos':>6} | {'reference ms':>12} {'ours ms':>8} {'speed-up':>16} | "
           f"{'ref peak MiB':>12} {'ours peak MiB':>13} | {'max |diff|':>10}")
    dtypes = (torch.float16, torch.bfloat16)
    for dtype in dtypes:
        hl = random_hyperlora(config, device=dev, dtype=dtype)
        ref = PerLayerReference(hl, dtype)
        for photos in (1, 4):
            measure_generation(hl, ref, dtype, photos, sizes, report, sync)
        del hl, ref
        release()
    report("speed-up = reference / ours per round; ours includes copying the LoRA to the CPU (what nodes get)")
    generation_paths(config, sizes, report)
    release()


def measure_generation(hl, ref, dtype, photos: int, sizes: Sizes, report: Report, sync) -> None:
    from _measure import Stat, interleaved

    dev = hl.device
    clip, ids = random_conditions(photos, sizes.clip_dim)
    clip_d, ids_d = clip.to(dev), ids.to(dev)
    ours = hl.generate_id_lora(clip, ids)
    theirs = ref.mix(ref.tokens(clip_d, ids_d))
    diff = max((ours[k].float() - theirs[k].float().cpu()).abs().max().item() for k in ours)
    peaks: dict[str, dict] = {"ref": {}, "ours": {}}
    with peak_gpu(peaks["ref"]):
        ref.mix(ref.tokens(clip_d, ids_d))
    with peak_gpu(peaks["ours"]):
        hl.generate_id_lora(clip, ids)
    r = interleaved({"reference": lambda: ref.mix(ref.tokens(clip_d, ids_d)),
                     "ours": lambda: hl.generate_id_lora(clip, ids)}, sizes.rounds, sync=sync)
    speed = Stat.of([a / b for a, b in zip(r.times["reference"], r.times["ours"])])  # per round
    name = str(dtype).removeprefix("torch.")
    report(f"{name:>8} {photos:>6} | {r.stat('reference').median * 1e3:12.1f} {r.stat('ours').median * 1e3:8.1f} "
           f"{speed.ratio_text():>16} | {peaks['ref']['peak_mib']:12.0f} {peaks['ours']['peak_mib']:13.0f} | "
           f"{diff:10.2e}")
    report.figure(f"generate_{name}_{photos}photo_ms", round(r.stat("ours").median * 1e3, 2))
    report.figure(f"generate_{name}_{photos}photo_speedup", round(speed.median, 3))
    report.figure(f"generate_{name}_{photos}photo_peak_mib", round(peaks["ours"]["peak_mib"], 1))
    stored = {v.dtype for k, v in ours.items() if not k.endswith(".alpha")}
    if stored != {dtype} and dev.type == "cuda":
        report(f"note: the {name} checkpoint gave LoRA weights in {sorted(map(str, stored))}")


def generation_paths(config, sizes: Sizes, report: Report, dtype=None) -> None:
    """The gap between the photo path's generation (113 ms, a ComfyUI-loaded hypernetwork right after face
    analysis) and generation alone (32 ms) on an H200 (2026-11-26): the same 1-photo generation five ways,
    side by side in interleaved rounds, with per-phase times. `direct`: built where it runs; `comfy`: built
    on the CPU and loaded by ComfyUI's model management (as the Loader node leaves it); `node`: what Generate
    ID LoRA runs (`load_for_use` + inference mode + a progress callback per photo); `after_face`: `direct`
    timed right after face analysis of a photo (untimed), onnxruntime threads not spinning (the pack's
    setting); `after_face_spinning`: the same with onnxruntime's default, where every session's threads
    busy-wait after each run."""
    import torch
    from _measure import interleaved
    from _models import random_hyperlora

    from hyperlora_core.comfy_bridge.model_management import hyperlora_patcher, load_for_use
    from hyperlora_core.encode import prepare_id
    from hyperlora_core.face import FaceAnalyzer
    from hyperlora_core.standins import write_tiny_face_pack

    dev, sync = device_and_sync()
    dtype = dtype or (torch.float16 if dev.type == "cuda" else torch.float32)
    direct = random_hyperlora(config, device=dev, dtype=dtype)
    patcher = hyperlora_patcher(random_hyperlora(config, device=dev, dtype=dtype).to("cpu"))
    clip, ids = random_conditions(1, sizes.clip_dim)
    photos = photos_for_check(1)

    def node() -> None:  # nodes/generate.py's make_id_lora + nodes/compute.py
        model = load_for_use(patcher)
        with torch.inference_mode():
            model.generate_id_lora(clip, ids, progress=lambda done, total: None)

    with tempfile.TemporaryDirectory() as tmp:
        pack = write_tiny_face_pack(Path(tmp) / "antelopev2")
        analyzers = {"after_face": FaceAnalyzer.load(pack, providers="auto"),
                     "after_face_spinning": FaceAnalyzer.load(pack, providers="auto", spinning=True)}

        def timed(fn: Callable[[], object], before: Callable[[], object] | None = None) -> Callable[[], float]:
            def run() -> float:
                if before:
                    before()
                if sync:
                    sync()
                t0 = time.perf_counter()
                fn()
                if sync:
                    sync()
                return time.perf_counter() - t0
            return run

        loaded = load_for_use(patcher)
        same = all(torch.equal(a, b) for a, b in zip(direct.generate_id_lora(clip, ids).values(),
                                                     loaded.generate_id_lora(clip, ids).values()))
        configs = {"direct": timed(lambda: direct.generate_id_lora(clip, ids)),
                   "comfy": timed(lambda: load_for_use(patcher).generate_id_lora(clip, ids)),
                   "node": timed(node)}
        for name, analyzer in analyzers.items():
            configs[name] = timed(lambda: direct.generate_id_lora(clip, ids), partial(prepare_id, photos, analyzer))
        r = interleaved(configs, sizes.rounds, baseline="direct")
        phases = {name: generation_phases(direct, clip, ids, sync, sizes.rounds, before)
                  for name, before in (("direct", None), ("after_face_spinning",
                                                           partial(prepare_id, photos, analyzers["after_face_spinning"])))}
    report(f"the same 1-photo generation ({str(dtype).removeprefix('torch.')} basis) five ways, median of {sizes.rounds} "
           f"interleaved rounds; ratio = path / direct per round; the ComfyUI-loaded model's LoRA equals the direct "
           f"one bit for bit: {same}")
    report.figure("generate_path_same_lora", same)
    for name in configs:
        ms, ratio = r.stat(name).median * 1e3, r.ratio(name)
        report(f"  {name:>20}: {ms:8.1f} ms  {ratio.ratio_text():>14}")
        report.figure(f"generate_path_{name}_ms", round(ms, 2))
        report.figure(f"generate_path_{name}_ratio", round(ratio.median, 3))
    for name, times in phases.items():
        report(f"  phases, {name}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in times.items()))
        for k, v in times.items():
            report.figure(f"generate_phase_{name}_{k}_ms", round(v * 1e3, 2))


def generation_phases(hl, clip, ids, sync, rounds: int, before: Callable[[], object] | None) -> dict[str, float]:
    """Median seconds of generation's phases: resampler tokens, basis mix, and the LoRA copied to the CPU
    and checked (`lora_state_dict`, which mixes again, minus the mix)."""
    import torch

    from hyperlora_core.coefficients import pool_photos

    samples: dict[str, list[float]] = {"tokens": [], "mix": [], "copy_and_check": []}
    for _ in range(rounds):
        if before:
            before()
        with torch.no_grad():
            if sync:
                sync()
            t0 = time.perf_counter()
            coeffs = pool_photos(hl.id_tokens(clip, ids).float())
            if sync:
                sync()
            t1 = time.perf_counter()
            hl.lora_factors(coeffs, "id")
            if sync:
                sync()
            t2 = time.perf_counter()
            hl.lora_state_dict(coeffs, "id")
            t3 = time.perf_counter()
        samples["tokens"].append(t1 - t0)
        samples["mix"].append(t2 - t1)
        samples["copy_and_check"].append(max(0.0, (t3 - t2) - (t2 - t1)))
    return {k: statistics.median(v) for k, v in samples.items()}


# -- part: the photo path -----------------------------------------------------------------------
def part_photo(sizes: Sizes, report: Report) -> None:
    import onnxruntime
    import torch

    from hyperlora_core.comfy_bridge.bases import SDXL
    from hyperlora_core.comfy_bridge.clip_vision import ComfyClipEncoder
    from hyperlora_core.comfy_bridge.model_management import hyperlora_patcher, load_for_use
    from hyperlora_core.encode import prepare_id
    from hyperlora_core.face import FaceAnalyzer
    from hyperlora_core.standins import write_tiny_face_pack

    report.section("The photo path: face analysis -> CLIP vision (ComfyUI) -> generation, per photo")
    dev, sync = device_and_sync()
    unet = SDXL.build(sizes.unet_config(), device="meta") if sizes.tiny else None
    hl = start_offloaded(sizes.hyper_config(unet), dev)
    patcher = hyperlora_patcher(hl)
    vision = clip_vision_model(sizes)
    encoder = ComfyClipEncoder(vision)

    def timed(fn):
        if sync:
            sync()
        t0 = time.perf_counter()
        out = fn()
        if sync:
            sync()
        return out, time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        analyzer = FaceAnalyzer.load(write_tiny_face_pack(Path(tmp) / "antelopev2"), providers="auto")
        providers = analyzer.providers
        report(f"onnxruntime {onnxruntime.__version__}, available providers {onnxruntime.get_available_providers()}; "
               f"face analysis ran on {providers[0]} (tiny stand-in models: the real antelopev2 costs more)")
        report(f"{'photos':>6} | {'face analysis':>13} {'CLIP vision':>11} {'generation':>10} | "
               f"{'total per photo':>19}")
        for count in (1, 4):
            photos = photos_for_check(count)
            model = load_for_use(patcher, vision)
            times: dict[str, list[float]] = {"face": [], "clip": [], "gen": []}
            for rep in range(1 + sizes.rounds):  # a warm-up pass, then the measured ones
                prepared, t_face = timed(partial(prepare_id, photos, analyzer))
                tokens, t_clip = timed(partial(encoder, prepared.pixels))
                _, t_gen = timed(partial(model.generate_id_lora, tokens, torch.from_numpy(prepared.id_embeds)))
                if rep:
                    for key, t in (("face", t_face), ("clip", t_clip), ("gen", t_gen)):
                        times[key].append(t)
            t_face, t_clip, t_gen = (statistics.median(times[k]) for k in ("face", "clip", "gen"))
            total = t_face + t_clip + t_gen
            report(f"{count:>6} | {t_face / count * 1e3:10.1f} ms {t_clip / count * 1e3:8.1f} ms "
                   f"{t_gen / count * 1e3:7.1f} ms | {total / count * 1e3:16.1f} ms")
            report.figure(f"photo_path_{count}photo_ms_per_photo", round(total / count * 1e3, 1))
        report.figure("photo_path_face_provider", providers[0])
        report(f"(medians of {sizes.rounds} passes; basis on {hl.id_basis.down[next(iter(hl.id_basis.down))].device})")
        report("paper: 1,143 ms of preprocessing per image on its GPU (face analysis + LoRA generation)")
    release()


# -- part: sampling -----------------------------------------------------------------------------
def part_sample(sizes: Sizes, report: Report) -> None:
    import torch
    from sampling import measure

    report.section(f"Sampling at {8 * sizes.latent} x {8 * sizes.latent}: bare vs LoRA (merged) vs attn2 patch")
    dev, _ = device_and_sync()
    out = measure(sizes.unet_config(), sizes.latent, sizes.sample_steps, sizes.rounds,
                  dtype=torch.float16 if dev.type == "cuda" else torch.float32, report=report)
    report.figure("sample_bare_step_ms", round(out["bare_step_s"] * 1e3, 2))
    report.figure("sample_lora_step_ratio", round(out["lora_ratio"].median, 4))
    report.figure("sample_lora_step_ratio_half_iqr", round(out["lora_ratio"].half_spread, 4))
    report.figure("sample_ip_adapter_step_ratio", round(out["ip_ratio"].median, 4))
    report.figure("sample_lora_merge_s", round(out["merge_s"], 3))
    report.raw["sample_rounds_s"] = out["rounds"]
    release()


# -- part: training -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def part_train(sizes: Sizes, report: Report) -> None:
    import torch
    import train_step as ts

    from hyperlora_core.comfy_bridge.backbone import Backbone
    from hyperlora_core.comfy_bridge.bases import SDXL
    from hyperlora_core.train.distributed import init_distributed, wrap

    dev, _ = device_and_sync()
    cuda = dev.type == "cuda"
    precision = "bf16" if cuda else "fp32"
    report.section(f"One {ts.STAGE} training step at {8 * sizes.latent} px: hypernetwork + SDXL UNet, "
                   f"{precision}{' autocast' if cuda else ''}, AdamW")
    unet = build_unet(sizes, torch.bfloat16 if cuda else torch.float32)
    vision = clip_vision_model(sizes)
    backbone = Backbone(unet=unet, clip=None, vae=None, clip_vision=vision, name="random-sdxl",
                        profile=SDXL)
    config = sizes.hyper_config(unet)
    rounds = max(3, sizes.rounds - 2)
    rows: list[tuple[str, dict]] = []
    start = None

    image_size = vision.image_size

    def measure(label: str, bench, batch_size: int, profile: bool = False) -> None:
        batch = ts.synthetic_batch(bench.denoiser, batch_size, sizes.latent, image_size, dev)
        try:
            rows.append((label, ts.compare(bench, batch, rounds, profile)))
        except torch.OutOfMemoryError:
            report(f"{label}: out of GPU memory")
            bench.optimizer.zero_grad(set_to_none=True)
            bench.state.clear()
            gc.collect()
            torch.cuda.empty_cache()

    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in (False, True):
            bench = ts.StepBench(backbone, config, ts.fit_config(Path(tmp), precision, ckpt), dev, start)
            start = bench.start_state
            if ckpt is False:
                report(f"hypernetwork: {bench.hyper_parameters / 1e9:.3f} B trainable parameters (fp32, AdamW); "
                       f"UNet {sum(p.numel() for p in unet.model.parameters()) / 1e9:.2f} B frozen "
                       f"({next(unet.model.parameters()).dtype}); median of {rounds} interleaved rounds")
            try:
                for b in (1, 4):
                    measure(f"batch {b}, grad ckpt {'on' if ckpt else 'off'}", bench, b, profile=not ckpt)
            finally:
                bench.close()
                del bench
                release()
        # the same step in a one-process group (NCCL on a GPU, gloo on the CPU), as a one-process torchrun
        os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                           "WORLD_SIZE": "1", "LOCAL_RANK": "0", "TORCHELASTIC_RUN_ID": "gpu-check"})
        info = init_distributed(dev)
        try:
            backend = torch.distributed.get_backend()
            for mode in ("ddp", "fsdp2"):
                bench = ts.StepBench(backbone, config, ts.fit_config(Path(tmp), precision, True), dev, start,
                                     wrap=lambda m, mode=mode: wrap(m, mode, info))
                wrapped = type(bench.step_module).__name__
                try:
                    measure(f"batch 1, ckpt on, {mode} ({backend})", bench, 1)
                finally:
                    bench.close()
                    del bench
                    release()
                report(f"{mode}: the step module is a {wrapped}")
        finally:
            torch.distributed.destroy_process_group()
            for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
                os.environ.pop(key, None)
    ts.print_rows(rows, report, "GPU" if cuda else "+RSS")
    report("ratio = HyperLoRA step (CLIP vision + hypernetwork + hooked UNet + AdamW) / fixed-LoRA step "
           "(the same hooked UNet + AdamW on one LoRA), per round")
    by_label = dict(rows)
    for ckpt in ("off", "on"):
        one, four = by_label.get(f"batch 1, grad ckpt {ckpt}"), by_label.get(f"batch 4, grad ckpt {ckpt}")
        if one and four and cuda:
            per_sample = (four["peak_lora"] - one["peak_lora"]) / 3 / 2**30
            report(f"activation memory per {8 * sizes.latent} px sample, gradient checkpointing {ckpt}: "
                   f"{per_sample:.2f} GiB (fixed-LoRA peaks, batch 4 - batch 1, / 3)")
            report.figure(f"train_activation_gib_per_sample_ckpt_{ckpt}", round(per_sample, 3))
    for label, m in rows:
        key = label.replace(", ", "_").replace(" ", "_").replace("(", "").replace(")", "")
        report.raw[f"train_{key}_rounds_s"] = m["rounds"]
        if "busy_hyper" in m:
            report.figure(f"train_{key}_gpu_busy_ms", round(m["busy_hyper"] * 1e3, 1))
            report.figure(f"train_{key}_kernels", m["kernels_hyper"])
            report.figure(f"train_{key}_lora_gpu_busy_ms", round(m["busy_lora"] * 1e3, 1))
        report.figure(f"train_{key}_ms", round(m["hyper_s"] * 1e3, 1))
        report.figure(f"train_{key}_ratio", round(m["ratio"].median, 3))
        report.figure(f"train_{key}_peak_gib", round(m["peak_hyper"] / 2**30, 2))
    release()


# -- part: the toy world's build ---------------------------------------------------------------
def part_toy(sizes: Sizes, report: Report) -> None:
    import torch

    from hyperlora_core.toy import build

    dev, _ = device_and_sync()
    report.section(f"The toy world's build stages on {dev.type} (smoke steps)")
    # the CPU smoke run (CI) keeps this part from rotting; every stage's CPU path is tests/test_toy_build.py's
    stages = "judge" if sizes.tiny else "judge,base_judge,arcface,clip,vae,base,hyper"
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="gpu-check-toy-") as out:
        try:
            stats = build.main(["--smoke", "--stages", stages, "--out", out, "--device", dev.type])
        finally:
            torch.set_num_threads(threads)
    devices = {name: s["device"] for name, s in stats["stages"].items()}
    report(f"trained on: {devices}")
    wrong = {name: d for name, d in devices.items() if not d.startswith(dev.type)}
    if wrong:
        raise RuntimeError(f"these toy stages did not train on {dev.type}: {wrong}")
    report.figure("toy_build_stages_on_device", len(devices))
    report.figure("toy_build_minutes", round(sum(s["minutes"] for s in stats["stages"].values()), 2))
    release()


# -- part: FLUX.1-dev size ------------------------------------------------------------------------
FLUX_TRAIN_BATCHES = (1, 2)
"""Training batches of the FLUX part; 2 only if it fits (FLUX-dev alone is 22 GiB in bf16)."""


def flux_hyper_config(sizes: Sizes, specs):
    """The published hypernetwork shapes (K 128, rank 8, resampler 1024 x 4, 16 ID tokens) over FLUX's
    target table, or tiny ones."""
    import dataclasses

    from _models import hyperlora_config

    from hyperlora_core.comfy_bridge.bases import FLUX

    if sizes.tiny:
        config = hyperlora_config(specs, dim=32, depth=1, heads=2, basis_size=8, id_tokens=2, clip_dim=sizes.clip_dim)
    else:
        config = hyperlora_config(specs)
    return dataclasses.replace(config, base=FLUX.name)  # its LoRAs say so; Apply refuses them on another base


def flux_conditioning(denoiser, batch: int, latent: int, g):  # noqa: ARG001 - train_step's signature
    """Random FLUX.1-dev conditioning under the profile's keys: T5 context, CLIP-L pooled vector, guidance."""
    import torch

    from hyperlora_core.comfy_bridge.bases import flux

    cfg = denoiser.model.model_config.unet_config
    return {"context": torch.randn(batch, flux.T5_TOKENS, cfg["context_in_dim"], generator=g),
            "pooled": torch.randn(batch, cfg["vec_in_dim"], generator=g),
            "guidance": torch.full((batch, 1), flux.GUIDANCE)}


def part_flux(sizes: Sizes, report: Report) -> None:
    import torch
    from _models import random_hyperlora

    from hyperlora_core.comfy_bridge.bases import FLUX
    from hyperlora_core.comfy_bridge.random_init import init_weights

    dev, sync = device_and_sync()
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    unet_config = FLUX.tiny_config() if sizes.tiny else None
    report.section(f"FLUX.1-dev{' (tiny)' if sizes.tiny else ''}: ComfyUI's Flux classes through our FLUX profile, "
                   f"random {str(dtype).removeprefix('torch.')} weights, target set '{FLUX.default_targets}'; "
                   f"sampling and training at {8 * sizes.flux_latent} px")
    meta = FLUX.build(unet_config, device="meta")
    specs = tuple(FLUX.module_specs(meta))
    transformer = sum(p.numel() for p in meta.model.diffusion_model.parameters())
    del meta
    config = flux_hyper_config(sizes, specs)
    flux_sizes(config, specs, transformer, report)
    hl = random_hyperlora(config, device=dev, dtype=dtype)
    lora = flux_generation(hl, sizes, report, sync)
    del hl
    release()
    t0 = time.perf_counter()
    model = FLUX.build(unet_config, device=dev, dtype=dtype)
    init_weights(model.model, seed=0, std=0.02)
    report(f"FLUX transformer built on {dev} in {time.perf_counter() - t0:.1f} s")
    try:
        flux_merge_and_sample(model, lora, sizes, report, sync)
        flux_train(model, config, sizes, report)
    finally:
        del model
        release()


def flux_sizes(config, specs, transformer: int, report: Report) -> None:
    """What the target table implies: layers, basis and hypernetwork parameters and bytes."""
    from hyperlora_core.model import HyperLoRA

    layers = [x for s in specs for x in s.layers]
    in_out = sum(x.in_features + x.out_features for x in layers)
    hl = HyperLoRA(config, device="meta")
    parts = {name: sum(p.numel() for p in m.parameters()) if m is not None else 0
             for name, m in (("id_basis", hl.id_basis), ("resampler", hl.resampler), ("id_projector", hl.id_projector))}
    total = sum(p.numel() for p in hl.parameters())
    report(f"transformer {transformer / 1e9:.3f} B parameters; {len(specs)} modules, {len(layers)} LoRA layers, "
           f"sum of in + out {in_out:,}; K {config.basis_size}, rank {config.rank}")
    report(f"hypernetwork (ID branch): basis {parts['id_basis'] / 1e9:.3f} B ({2 * parts['id_basis'] / 2**30:.2f} GiB in "
           f"bf16/fp16), resampler {parts['resampler'] / 1e6:.1f} M, ID projector {parts['id_projector'] / 1e6:.1f} M; "
           f"{total / 1e9:.3f} B in all; training state (fp32 weights + gradients + AdamW) {16 * total / 2**30:.1f} GiB")
    for name, value in (("transformer_params", transformer), ("layers", len(layers)), ("in_out", in_out),
                        ("basis_size", config.basis_size), ("rank", config.rank),
                        ("id_basis_params", parts["id_basis"]),
                        ("id_basis_gib_bf16", round(2 * parts["id_basis"] / 2**30, 3)),
                        ("resampler_params", parts["resampler"]), ("projector_params", parts["id_projector"]),
                        ("hypernetwork_params", total), ("train_state_gib", round(16 * total / 2**30, 2))):
        report.figure(f"flux_{name}", value)


def flux_generation(hl, sizes: Sizes, report: Report, sync) -> dict:
    """ID-LoRA generation for 1 and 4 photos (wall, CUDA synchronised; peak memory); returns a 1-photo LoRA."""
    from _measure import interleaved

    conds = {n: random_conditions(n, sizes.clip_dim) for n in (1, 4)}
    peaks: dict[int, dict] = {}
    for n, (clip, ids) in conds.items():
        hl.generate_id_lora(clip, ids)
        peaks[n] = {}
        with peak_gpu(peaks[n]):
            hl.generate_id_lora(clip, ids)
    r = interleaved({str(n): partial(hl.generate_id_lora, *conds[n]) for n in conds}, sizes.rounds, sync=sync)
    for n in conds:
        ms = r.stat(str(n)).median * 1e3
        report(f"ID-LoRA generation, {n} photo(s): {ms:.1f} ms (median of {sizes.rounds} rounds), peak memory "
               f"{peaks[n]['peak_mib']:.0f} MiB above the weights")
        report.figure(f"flux_generate_{n}photo_ms", round(ms, 2))
        report.figure(f"flux_generate_{n}photo_peak_mib", round(peaks[n]["peak_mib"], 1))
    return hl.generate_id_lora(*conds[1])


def flux_merge_and_sample(model, lora: dict, sizes: Sizes, report: Report, sync) -> None:
    """Apply's merge (ComfyUI's patcher, when it loads the model) and sampler steps merged vs bare."""
    import comfy.lora
    import comfy.model_management as mm
    import torch
    from _measure import cpu_clock, interleaved, wall_clock
    from sampling import sampler_run

    from hyperlora_core.comfy_bridge import apply_lora
    from hyperlora_core.comfy_bridge.bases import FLUX, flux

    dev, cuda = model.load_device, model.load_device.type == "cuda"
    patched = apply_lora(model, lora, FLUX.strength)

    def load(m) -> float:
        if sync:
            sync()
        t = time.perf_counter()
        mm.load_models_gpu([m], force_full_load=True)
        if sync:
            sync()
        return time.perf_counter() - t

    load(model)
    merges, restores = [], []
    for _ in range(2):  # a switch between clones: ComfyUI moves the weights off and back, then merges (or not)
        merges.append(load(patched))
        restores.append(load(model))
    load(patched)
    merge = min(merges) - min(restores)
    # the merged weights against W + s * (alpha / r) * up @ down from the LoRA, every target; nothing else patched
    to_model = comfy.lora.model_lora_keys_unet(model.model, {})
    weights = model.model.state_dict()
    eps = torch.finfo(weights[next(iter(patched.backup))].dtype).eps
    worst, largest_delta, within, targets = 0.0, 0.0, True, set()
    for name in [k for k in lora if k.endswith(".lora_down.weight")]:
        kohya = name.removesuffix(".lora_down.weight")
        key = to_model[kohya]
        targets.add(key)
        down = lora[name].to(dev, torch.float32)
        up = lora[f"{kohya}.lora_up.weight"].to(dev, torch.float32)
        delta = (up @ down) * (FLUX.strength * float(lora[f"{kohya}.alpha"]) / down.shape[0])
        expected = patched.backup[key].weight.to(dev, torch.float32) + delta
        err = (weights[key].float() - expected).abs().max().item()
        worst, largest_delta = max(worst, err), max(largest_delta, delta.abs().max().item())
        within &= err <= 2 * eps * expected.abs().max().item()  # the storage dtype's rounding (stochastic in bf16)
    only_targets = set(patched.backup) == targets
    report(f"Apply's merge (ComfyUI's patcher, when it loads the patched clone): switching bare -> merged "
           f"{min(merges):.3f} s, merged -> bare {min(restores):.3f} s (best of 2; ComfyUI moves the weights to the "
           f"offload device and back at each switch), so the merge of {len(targets)} weights ~{merge:.3f} s; "
           f"merged = W + s*alpha/r*up@down within rounding: {within} (max |error| {worst:.2e}, largest |delta| "
           f"{largest_delta:.2e}); only the targets patched: {only_targets}")
    report.figure("flux_switch_to_lora_s", round(min(merges), 3))
    report.figure("flux_switch_to_bare_s", round(min(restores), 3))
    report.figure("flux_merge_s", round(merge, 3))
    report.figure("flux_merge_weights", len(targets))
    report.figure("flux_merge_within_rounding", within)
    report.figure("flux_merge_only_targets", only_targets)
    report.figure("flux_merge_max_abs_err", float(f"{worst:.3e}"))

    unet = model.model.model_config.unet_config
    g = torch.Generator().manual_seed(4)
    positive = [[torch.randn(1, flux.T5_TOKENS, unet["context_in_dim"], generator=g),
                 {"pooled_output": torch.randn(1, unet["vec_in_dim"], generator=g), "guidance": FLUX.guidance}]]
    latent = torch.zeros(1, FLUX.latent_channels, sizes.flux_latent, sizes.flux_latent)
    clock = wall_clock if cuda else cpu_clock

    def run(m):
        return lambda: sampler_run(m, positive, positive, latent, sizes.flux_steps, clock, sync, cfg=FLUX.cfg)[0]

    r = interleaved({"bare": run(model), "lora": run(patched)}, sizes.flux_rounds, baseline="bare")
    ratio = r.ratio("lora")
    report(f"sampler step at {8 * sizes.flux_latent} px, CFG {FLUX.cfg} (one batch), euler: bare "
           f"{r.stat('bare').median * 1e3:.1f} ms, merged LoRA / bare {ratio.ratio_text()} "
           f"({sizes.flux_steps} steps x {sizes.flux_rounds} interleaved rounds; {'wall' if cuda else 'CPU'} time)")
    report.figure("flux_sample_bare_step_ms", round(r.stat("bare").median * 1e3, 2))
    report.figure("flux_sample_lora_step_ratio", round(ratio.median, 4))
    report.figure("flux_sample_lora_step_ratio_half_iqr", round(ratio.half_spread, 4))
    report.raw["flux_sample_rounds_s"] = r.times
    load(model)  # bare weights again for training


def flux_train(model, config, sizes: Sizes, report: Report) -> None:
    """One `arcface_id` step (hypernetwork + FLUX, gradient checkpointing) against a fixed-LoRA step."""
    import torch
    import train_step as ts
    from _models import random_hyperlora

    from hyperlora_core.comfy_bridge.backbone import Backbone
    from hyperlora_core.comfy_bridge.bases import FLUX

    dev, _ = device_and_sync()
    cuda = dev.type == "cuda"
    precision = "bf16" if cuda else "fp32"
    vision = clip_vision_model(sizes)
    backbone = Backbone(unet=model, clip=None, vae=None, clip_vision=vision, name="random-flux", profile=FLUX)
    start = random_hyperlora(config, device=dev, dtype=torch.float32)
    with torch.no_grad():
        for p in start.id_basis.up.values():  # the trainer's start: a zero LoRA until the up basis learns
            p.zero_()
    state = start.state_dict()
    rows: list[tuple[int, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bench = ts.StepBench(backbone, config, ts.fit_config(Path(tmp), precision, True), dev, state)
        bench.start_state = None
        del start, state
        gc.collect()
        report(f"training step at {8 * sizes.flux_latent} px, {precision}{' autocast' if cuda else ''}, AdamW, gradient "
               f"checkpointing on: hypernetwork {bench.hyper_parameters / 1e9:.3f} B trainable (fp32), FLUX frozen")
        try:
            for b in FLUX_TRAIN_BATCHES:
                batch = ts.synthetic_batch(bench.denoiser, b, sizes.flux_latent, vision.image_size, dev,
                                           conditioning=flux_conditioning)
                try:
                    m = ts.compare(bench, batch, sizes.flux_rounds)
                except torch.OutOfMemoryError:
                    report(f"batch {b}: out of GPU memory ({torch.cuda.get_device_properties(dev).total_memory / 2**30:.0f} "
                           "GiB card); larger batches skipped")
                    bench.optimizer.zero_grad(set_to_none=True)
                    bench.lora_optimizer.zero_grad(set_to_none=True)
                    bench.state.clear()
                    del batch
                    gc.collect()
                    torch.cuda.empty_cache()
                    break
                resident = torch.cuda.memory_allocated() if cuda else 0
                rows.append((b, m))
                report(f"batch {b}: HyperLoRA step {m['hyper_s'] * 1e3:.0f} ms, fixed-LoRA step {m['lora_s'] * 1e3:.0f} ms, "
                       f"ratio {m['ratio'].ratio_text()}; peak {'GPU' if cuda else '+RSS'} above the resident "
                       f"{resident / 2**30:.1f} GiB (FLUX, CLIP vision, hypernetwork and AdamW state): "
                       f"{m['peak_hyper'] / 2**30:.2f} / {m['peak_lora'] / 2**30:.2f} GiB; peak in all "
                       f"{(resident + m['peak_hyper']) / 2**30:.1f} GiB")
                report.figure(f"flux_train_batch_{b}_ms", round(m["hyper_s"] * 1e3, 1))
                report.figure(f"flux_train_batch_{b}_lora_ms", round(m["lora_s"] * 1e3, 1))
                report.figure(f"flux_train_batch_{b}_ratio", round(m["ratio"].median, 3))
                report.figure(f"flux_train_batch_{b}_peak_gib", round(m["peak_hyper"] / 2**30, 2))
                report.figure(f"flux_train_batch_{b}_lora_peak_gib", round(m["peak_lora"] / 2**30, 2))
                if cuda:
                    report.figure(f"flux_train_batch_{b}_resident_gib", round(resident / 2**30, 2))
                    report.figure(f"flux_train_batch_{b}_peak_total_gib", round((resident + m["peak_hyper"]) / 2**30, 2))
                report.raw[f"flux_train_batch_{b}_rounds_s"] = m["rounds"]
        finally:
            bench.close()
            del bench
            release()
    by_batch = dict(rows)
    if cuda and 1 in by_batch:
        one = by_batch[1]
        line = (f"for train/configs/flux.yaml (measured, {8 * sizes.flux_latent} px, bf16, checkpointing, ID branch only, "
                f"no Base branch): peak {(one['peak_hyper']) / 2**30:.2f} GiB above the resident state at batch 1")
        if 2 in by_batch:
            per_sample = (by_batch[2]["peak_lora"] - one["peak_lora"]) / 2**30
            transient = (one["peak_hyper"] - one["peak_lora"]) / 2**30
            line += (f"; activations {per_sample:.2f} GiB per sample (fixed-LoRA peaks, batch 2 - batch 1); "
                     f"hypernetwork transient {transient:.2f} GiB")
            report.figure("flux_train_activation_gib_per_sample", round(per_sample, 3))
            report.figure("flux_train_hypernetwork_transient_gib", round(transient, 2))
        report(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (seconds)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--json", type=Path, help="write every gpu_check figure to this file (after each part)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no part after this many seconds (a lent machine's time limit); later parts are "
                             "listed as skipped_parts")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")

    import torch

    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: the full-size check needs one (use --tiny for the CPU smoke run)")
    boot_comfy(cpu=args.tiny)
    import comfy.model_management

    if args.tiny:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    sizes = Sizes(tiny=args.tiny)
    report = Report()
    dev = comfy.model_management.get_torch_device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    report(f"gpu check: {name}; torch {torch.__version__}"
           + (f", CUDA {torch.version.cuda}" if dev.type == "cuda" else "") + f"; {'tiny' if args.tiny else 'full'} sizes; "
           f"{time.strftime('%Y-%m-%d')}")
    report.figure("device", name)
    run: dict[str, Callable[[Sizes, Report], None]] = {
        "mm": part_mm, "generate": part_generate, "photo": part_photo, "sample": part_sample, "train": part_train,
        "toy": part_toy, "flux": part_flux,
    }
    t0 = time.perf_counter()
    failed, skipped = [], []

    def write_json() -> None:
        if args.json:
            args.json.write_text(json.dumps({**report.figures, "raw": report.raw}, indent=1))

    for part in parts:
        t = time.perf_counter()
        if args.budget_s is not None and t - t0 > args.budget_s:
            skipped.append(part)
            report(f"\nPART {part} SKIPPED: {t - t0:.0f} s spent of the {args.budget_s:.0f} s budget")
            continue
        try:
            run[part](sizes, report)
        except Exception as err:  # one failing part must not hide the others' figures
            import traceback

            traceback.print_exc()
            failed.append(part)
            report(f"PART {part} FAILED: {type(err).__name__}: {err}")
            release()
        left = f"; GPU memory still allocated {gpu_mib():.0f} MiB" if dev.type == "cuda" else ""
        report(f"({part}: {time.perf_counter() - t:.0f} s{left})")
        if dev.type == "cuda" and gpu_mib() > 256:
            live_cuda_tensors(report)
        write_json()  # a run stopped by a time limit keeps what it measured
    report.figure("total_s", round(time.perf_counter() - t0, 1))
    report.figure("skipped_parts", ",".join(skipped) or "none")
    report.figure("failed_parts", ",".join(failed) or "none")
    report(f"\n(total {time.perf_counter() - t0:.0f} s)")
    write_json()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
