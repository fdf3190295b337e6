"""Training step time and peak memory: the HyperLoRA step against a fixed-LoRA step of the same UNet.

1. The comparison (`StepBench`, also used by bench/gpu.py at full size on a GPU): one `arcface_id`
   training step of the trainer (`StepRunner.loss` -> backward -> grad clip -> the trainer's AdamW),
   i.e. CLIP vision on the face crops, the hypernetwork, per-sample LoRAs through the trainer's hooks
   on ComfyUI's SDXL UNet, against the baseline a plain LoRA trainer runs: the same UNet, batch and
   hooks with one trainable rank-r LoRA (leaf tensors, AdamW) and no hypernetwork. Interleaved rounds,
   median of per-round ratios (bench/_measure.py). Here: the tiny SDXL-architecture UNet on the CPU.
2. Full-size hypernetwork (published shapes), fp32, batch 1, CPU, without the UNet (a full SDXL UNet
   does not fit next to it in this machine's RAM; bench/gpu.py measures the whole step on a GPU):
   forward + backward + SGD against the same forward with no gradients (LoRA generation).
3. Memory plan for the full model (ID + Base branches) on N x 80 GB GPUs, DDP vs FSDP2, from the
   exact parameter counts and the activation memory per sample (`--activation-gb`; the default is
   the measurement of bench/gpu.py on an H200, README "Speed on a GPU").

Run: .venv/bin/python bench/train_step.py [--skip-full]   (about 1-3 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import PeakRSS, Stat, gib, interleaved  # noqa: E402
from _models import hyperlora_config  # noqa: E402

from scripts.comfy_env import boot_comfy  # noqa: E402

GB = 1e9
GPU_GB = 80.0
STAGE = "arcface_id"
TINY_CONFIG = ROOT / "hyperlora_core" / "train" / "configs" / "tiny.yaml"
MEASURED_ACTIVATION_GB = 0.72
"""Activation memory per 1024 x 1024 sample with gradient checkpointing and bf16 (GB) for the plan:
0.67 GiB, measured by bench/gpu.py on an H200 (2026-11-26); the earlier plan assumed 5 GB."""


def fit_config(tmp: Path, precision: str, checkpointing: bool):
    """The trainer's config for the step: the tiny example's settings, only the `arcface_id` stage and
    no Base-LoRA branch (the published layout), one identity per sample."""
    import yaml

    from hyperlora_core.train.config import parse_config

    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["stages"] = {STAGE: raw["stages"][STAGE]}
    raw["hypernetwork"]["base_rank"] = None
    raw["run_dir"], raw["data"]["shards"] = str(tmp / "run"), str(tmp / "data")
    raw["train"].update({"precision": precision, "gradient_checkpointing": checkpointing, "references": "same_photo",
                         "samples": {"every": -1}, "dropout": {"text": 0.0, "face": 0.0, "base_lora": 0.0}})
    return parse_config(yaml.safe_dump(raw), base_dir=tmp)


def sdxl_conditioning(denoiser, batch: int, latent: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """An SDXL model's random conditioning: context, pooled, the crop numbers of a square image."""
    from hyperlora_core.comfy_bridge.bases import sdxl

    pixels = 8 * latent
    return {
        "context": torch.randn(batch, 77, denoiser.context_dim, generator=g),
        "pooled": torch.randn(batch, denoiser.model.model_config.unet_config["adm_in_channels"] - sdxl.SIZE_EMBEDDING,
                              generator=g),
        "sizes": torch.stack([sdxl.PROFILE.image_conditioning([pixels] * 2, [0, 0], [pixels] * 2)["sizes"]] * batch),
    }


def synthetic_batch(denoiser, batch: int, latent: int, image_size: int, device, seed: int = 0,
                    conditioning: Callable[..., dict[str, torch.Tensor]] = sdxl_conditioning):
    """A batch of the trainer's shape with random contents: one photo per identity, the base's latent
    channels, and `conditioning(denoiser, batch, latent, generator)` (the profile's keys; SDXL's by default)."""
    from hyperlora_core.train.data import Batch

    g = torch.Generator().manual_seed(seed)
    zeros = torch.zeros(batch, dtype=torch.bool, device=device)
    channels = denoiser.profile.latent_channels
    return Batch(
        latents=torch.randn(batch, channels, latent, latent, generator=g).to(device),
        cond={k: v.to(device) for k, v in conditioning(denoiser, batch, latent, g).items()},
        face=torch.rand(batch, image_size, image_size, 3, generator=g).to(device),
        base=None,
        arcface=torch.nn.functional.normalize(torch.randn(batch, 512, generator=g), dim=-1).to(device),
        groups=torch.arange(batch, device=device),
        num_groups=batch,
        noise=torch.randn(batch, channels, latent, latent, generator=g).to(device),
        timesteps=torch.randint(200, 1000, (batch,), generator=g).to(device),
        drop_text=zeros, drop_face=zeros, drop_base=zeros,
        global_index=torch.arange(batch),
        sample_ids=list(range(batch)),
    )


class StepBench:
    """The trainer's HyperLoRA step and a fixed-LoRA step on one backbone, hooks installed once."""

    def __init__(self, backbone, config, cfg, device: torch.device, start: dict | None = None,
                 wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None) -> None:
        """`start`: the hypernetwork's weights (e.g. an earlier bench's `start_state`), else the trainer's
        random start (`new_hyperlora`, built on the CPU: slow at full size, so reuse it)."""
        from hyperlora_core.comfy_bridge.diffusion import Denoiser
        from hyperlora_core.comfy_bridge.lora_hooks import (
            LoRAHookState,
            activate,
            install_lora_hooks,
            layer_module_paths,
        )
        from hyperlora_core.model import HyperLoRA
        from hyperlora_core.train.fit import make_optimizer
        from hyperlora_core.train.objective import HyperStep, StepRunner
        from hyperlora_core.train.setup import new_hyperlora, set_trainable

        self.backbone, self.cfg, self.device = backbone, cfg, device
        self.denoiser = Denoiser(backbone.unet)
        self.state = LoRAHookState()
        install_lora_hooks(backbone.unet, layer_module_paths(backbone.unet, config.modules), self.state,
                           cfg.train.gradient_checkpointing)
        activate(backbone.unet, device)
        backbone.unet.model.requires_grad_(False)
        if start is None:
            model = new_hyperlora(config, 0)
            self.start_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            model = HyperLoRA(config, device=device)
            model.load_state_dict(start)
            self.start_state = start
        set_trainable(model, STAGE, cfg.trainable(STAGE))
        step = HyperStep(model).to(device)
        self.step_module = wrap(step) if wrap else step
        self.optimizer = make_optimizer(self.step_module, cfg, STAGE)
        self.trainable = [p for p in self.step_module.parameters() if p.requires_grad]
        self.runner = StepRunner(STAGE, cfg, backbone, self.denoiser, self.state, device)
        self.hyper_parameters = sum(p.numel() for p in self.trainable)
        # the baseline's LoRA: one rank-r LoRA for every hooked layer, LoRA-style init
        g = torch.Generator().manual_seed(1)
        shapes = config.layer_shapes()
        self.lora_down = [torch.nn.Parameter((torch.randn(1, config.rank, i, generator=g) / i**0.5).to(device))
                          for i, _ in shapes]
        self.lora_up = [torch.nn.Parameter(torch.zeros(1, o, config.rank, device=device)) for _, o in shapes]
        self.lora_optimizer = torch.optim.AdamW([*self.lora_down, *self.lora_up], lr=1e-4)

    def hyper_step(self, batch) -> float:
        """The trainer's step (as `fit.run_stage` runs it); returns the loss."""
        loss = self.runner.loss(self.step_module, batch)
        loss.backward()
        self.state.clear()
        if self.cfg.train.optimizer.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.train.optimizer.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def lora_step(self, batch) -> float:
        """A plain LoRA trainer's step: the same UNet, batch, hooks and loss weighting, one fixed LoRA."""
        from hyperlora_core.comfy_bridge.lora_hooks import LoRASet
        from hyperlora_core.lora import sample_scales
        from hyperlora_core.train.objective import autocast_for, loss_weights

        den = self.denoiser
        sigma = den.sigmas.to(self.device)[batch.timesteps]
        x0 = den.latent_in(batch.latents)
        x = den.noisy(sigma, batch.noise, x0)
        inputs = den.inputs(batch.cond)
        b = batch.size
        with autocast_for(self.device, self.cfg.train.precision):
            self.state.sets = [LoRASet([d.expand(b, -1, -1) for d in self.lora_down],
                                       [u.expand(b, -1, -1) for u in self.lora_up],
                                       sample_scales(b, device=self.device))]
            pred = den.denoise(x, sigma, inputs).float()
        err = (pred - x0.float()).pow(2).mean(dim=tuple(range(1, pred.ndim)))
        loss = (loss_weights(sigma, self.cfg.train.loss) * err).mean()
        loss.backward()
        self.state.clear()
        torch.nn.utils.clip_grad_norm_([*self.lora_down, *self.lora_up], 1.0)
        self.lora_optimizer.step()
        self.lora_optimizer.zero_grad(set_to_none=True)
        return loss

    def close(self) -> None:
        from hyperlora_core.comfy_bridge.lora_hooks import deactivate

        self.state.clear()
        deactivate(self.backbone.unet)


def peak_of(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory above the start while `fn` runs: GPU bytes on CUDA, resident bytes on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    with PeakRSS() as mem:
        fn()
    return float(mem.peak_extra)


def gpu_busy(fn: Callable[[], object]) -> tuple[float, int]:
    """(seconds of GPU kernel time, kernels launched) in one call of `fn`, by torch's profiler.

    Set against the wall time of the same step it tells whether the step waits for the GPU or for
    the Python thread that launches the kernels."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    busy, kernels = 0.0, 0
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            busy += event.device_time if hasattr(event, "device_time") else event.cuda_time
            kernels += 1
    return busy / 1e6, kernels


def compare(bench: StepBench, batch, rounds: int, profile: bool = False) -> dict:
    """Step times (interleaved rounds) and peak memory of the HyperLoRA step and the fixed-LoRA step."""
    dev = bench.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    for fn in (bench.hyper_step, bench.lora_step):
        loss = fn(batch)  # warm-up; also checks the step computes a number
        if not torch.isfinite(loss):
            raise RuntimeError(f"{fn.__name__}: loss {loss.item()}")
    peak_hyper = peak_of(lambda: bench.hyper_step(batch), dev)
    peak_lora = peak_of(lambda: bench.lora_step(batch), dev)
    r = interleaved({"lora": lambda: bench.lora_step(batch), "hyper": lambda: bench.hyper_step(batch)},
                    rounds, baseline="lora", sync=sync, warmup=0)
    out = {"hyper_s": r.stat("hyper").median, "lora_s": r.stat("lora").median, "ratio": r.ratio("hyper"),
           "peak_hyper": peak_hyper, "peak_lora": peak_lora, "rounds": r.times}
    if profile and dev.type == "cuda":
        out["busy_hyper"], out["kernels_hyper"] = gpu_busy(lambda: bench.hyper_step(batch))
        out["busy_lora"], out["kernels_lora"] = gpu_busy(lambda: bench.lora_step(batch))
    return out


def print_rows(rows: list[tuple[str, dict]], report: Callable[[str], None], mem_label: str) -> None:
    report(f"{'setting':>24} | {'HyperLoRA step':>14} | {'fixed-LoRA step':>15} | {'ratio (median of rounds)':>24} | "
           f"{'peak ' + mem_label + ' hyper':>18} | {'lora':>9}")
    for label, m in rows:
        report(f"{label:>24} | {m['hyper_s'] * 1e3:11.1f} ms | {m['lora_s'] * 1e3:12.1f} ms | {m['ratio'].ratio_text():>24} | "
               f"{m['peak_hyper'] / 2**30:14.2f} GiB | {m['peak_lora'] / 2**30:5.2f} GiB")
    for label, m in rows:
        if "busy_hyper" in m:
            report(f"{label}: GPU busy {m['busy_hyper'] * 1e3:.0f} ms in {m['kernels_hyper']} kernels (HyperLoRA step), "
                   f"{m['busy_lora'] * 1e3:.0f} ms in {m['kernels_lora']} kernels (fixed-LoRA step)")


def tiny_step(rounds: int) -> None:
    from hyperlora_core.comfy_bridge.backbone import tiny_backbone
    from hyperlora_core.comfy_bridge.bases import SDXL

    print("== tiny: hypernetwork (dim 32, K 4, rank 2) + tiny SDXL-architecture UNet, CPU ==")
    backbone = tiny_backbone(0)
    config = hyperlora_config(tuple(SDXL.module_specs(backbone.unet)), dim=32, depth=1, heads=2,
                              basis_size=4, rank=2, id_tokens=2, clip_dim=backbone.clip_vision_dim)
    rows, start = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in (False, True):
            bench = StepBench(backbone, config, fit_config(Path(tmp), "fp32", ckpt), torch.device("cpu"), start)
            start = bench.start_state
            try:
                for b in (1, 4):
                    batch = synthetic_batch(bench.denoiser, b, 8, 224, bench.device)
                    rows.append((f"batch {b}, grad ckpt {'on' if ckpt else 'off'}", compare(bench, batch, rounds)))
            finally:
                bench.close()
    print_rows(rows, print, "+RSS")
    print("ratio = HyperLoRA training step (CLIP vision + hypernetwork + hooked UNet + AdamW) / fixed-LoRA step "
          "(hooked UNet + AdamW on one LoRA)")
    print(f"train_step_ratio={rows[0][1]['ratio'].median:.3f}")


def param_counts(with_base: bool) -> dict[str, int]:
    from hyperlora_core.model import HyperLoRA

    model = HyperLoRA(hyperlora_config(base_rank=4 if with_base else None), device="meta")
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        head = name.split(".")[0]
        out[head] = out.get(head, 0) + p.numel()
    return out


def full_hypernetwork_step(rounds: int) -> None:
    from hyperlora_core.model import HyperLoRA
    from hyperlora_core.train.objective import Conditions, HyperStep
    from hyperlora_core.train.setup import set_trainable

    print("\n== full-size hypernetwork (ID branch, published shapes), fp32, batch 1, CPU; no UNet (see docstring) ==")
    params = sum(param_counts(False).values())
    need = 2 * 4 * params + 2 * GB  # weights + gradients + working memory
    avail = psutil.virtual_memory().available
    if avail < need:
        print(f"skipped: needs about {need / GB:.1f} GB free RAM, {avail / GB:.1f} GB available.")
        return
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = HyperLoRA(hyperlora_config())
    model.id_basis.reset_for_training(torch.Generator().manual_seed(0))
    with torch.no_grad():  # a trained-looking up basis, so every path carries signal
        for p in model.id_basis.up.values():
            p.normal_(0, 0.01)
    print(f"built {params / 1e9:.3f} B parameters in {time.perf_counter() - t0:.1f} s")
    set_trainable(model, STAGE, ("id_projector", "id_resampler", "id_basis"))
    step = HyperStep(model)
    opt = torch.optim.SGD([p for p in step.parameters() if p.requires_grad], lr=0.0)
    gen = torch.Generator().manual_seed(1)
    clip = torch.randn(1, 257, 1024, generator=gen)
    face = torch.nn.functional.normalize(torch.randn(1, 512, generator=gen), dim=-1)
    groups = torch.zeros(1, dtype=torch.long)

    def factors():
        return step(Conditions(clip, face, None, groups, 1), "same_photo")["id"]

    with torch.no_grad():
        downs, ups = factors()
    probe_d = [torch.randn(d.shape, generator=gen) for d in downs]
    probe_u = [torch.randn(u.shape, generator=gen) for u in ups]

    def train_step():
        d, u = factors()
        loss = sum((a * b).sum() for a, b in zip(d, probe_d)) + sum((a * b).sum() for a, b in zip(u, probe_u))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def generate():
        with torch.no_grad():
            factors()

    with PeakRSS() as mem_gen:
        generate()
    with PeakRSS() as mem_train:  # every step allocates its gradients afresh (zero_grad to None)
        train_step()
    r = interleaved({"generate": generate, "train": train_step}, rounds, warmup=0)
    print(f"{'':>28} | {'time (median)':>13} | {'peak +RSS (weights excluded)':>28}")
    print(f"{'forward, no grad (generate)':>28} | {r.stat('generate').median:11.2f} s | {gib(mem_gen.peak_extra):>28}")
    print(f"{'forward + backward + SGD':>28} | {r.stat('train').median:11.2f} s | {gib(mem_train.peak_extra):>28}")
    ratio: Stat = r.ratio("train")
    print(f"training step / generation: x{ratio.ratio_text()} time; gradients are "
          f"{gib(4 * params)} (fp32), AdamW would add {gib(8 * params)}")


def memory_plan(activation_gb: float, unet_gb: float, clip_gb: float) -> None:
    print("\n== memory plan, full model on 80 GB GPUs (per GPU, GB) ==")
    for with_base in (False, True):
        counts = param_counts(with_base)
        p = sum(counts.values())
        basis = counts["id_basis"]  # the largest FSDP2 unit, gathered in fp32 for forward and its gradient
        label = "ID + Base branches" if with_base else "ID branch only (published layout)"
        parts = ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in counts.items())
        print(f"\n{label}: {p / 1e9:.3f} B trainable parameters ({parts})")
        teacher = 2 * p / GB if with_base else 0.0
        frozen = unet_gb + clip_gb + teacher
        print(f"frozen, replicated: UNet bf16 {unet_gb:.1f} + CLIP ViT-L fp16 {clip_gb:.1f}"
              + (f" + distill teacher bf16 {teacher:.1f}" if with_base else "") + f" = {frozen:.1f}")
        print(f"{'GPUs':>4} | {'DDP state':>9} | {'DDP total':>9} | {'DDP max batch':>13} | {'FSDP2 state':>11} | "
              f"{'FSDP2 peak':>10} | {'FSDP2 max batch':>15}")
        for n in (1, 2, 4, 8, 16):
            ddp_state = 16 * p / GB  # fp32 weights + grads + AdamW m, v (grads as bucket views)
            fsdp_state = 16 * p / GB / n
            fsdp_peak = fsdp_state + (2 * 4 * basis / GB if n > 1 else 0.0)  # gathered basis + its full grad
            ddp_total = frozen + ddp_state
            fsdp_total = frozen + fsdp_peak
            ddp_b = int((GPU_GB - ddp_total) // activation_gb) if ddp_total < GPU_GB else 0
            fsdp_b = int((GPU_GB - fsdp_total) // activation_gb) if fsdp_total < GPU_GB else 0
            print(f"{n:>4} | {ddp_state:9.1f} | {ddp_total:9.1f} | {ddp_b:13d} | {fsdp_state:11.1f} | "
                  f"{fsdp_total:10.1f} | {fsdp_b:15d}")
    print(f"\nactivations {activation_gb:.1f} GB per 1024x1024 sample (bf16, gradient checkpointing). "
          "'max batch' = samples per GPU that still fit in 80 GB.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--skip-full", action="store_true", help="skip the full-size hypernetwork step (needs ~15 GB RAM)")
    parser.add_argument("--activation-gb", type=float, default=MEASURED_ACTIVATION_GB)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared 2-core box two OpenMP threads can be ~10x slower)")
    args = parser.parse_args()
    boot_comfy(cpu=True)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), {psutil.cpu_count()} cores")
    import logging

    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    tiny_step(args.rounds)
    if not args.skip_full:
        full_hypernetwork_step(max(3, args.rounds // 3))
    memory_plan(args.activation_gb, unet_gb=2.567e9 * 2 / GB, clip_gb=0.304e9 * 2 / GB)
    print(f"\n(total benchmark time {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
