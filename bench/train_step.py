"""Training step time and peak memory (CPU), and the memory plan of the full model on 80 GB GPUs.

1. Tiny: one arcface_id training step (hypernetwork dim 32, K 4, rank 2 + the tiny
   SDXL-architecture UNet, ComfyUI's own classes), batch 1, AdamW. Baseline in the same process:
   the bare UNet forward + backward on the same batch with no LoRA (ratio = cost of the
   hypernetwork + hooks), and the same step with gradient checkpointing (ratio).
2. Full-size hypernetwork (published shapes: 140 SDXL modules, K 128, rank 8, 16 ID tokens,
   resampler 1024 x 4, 12 x 64 heads), fp32, batch 1, random weights. The UNet is NOT in this
   step (a full SDXL UNet does not fit next to it in this machine's RAM): the factors feed a fixed
   random linear surrogate, i.e. the step is the hypernetwork's own forward + backward + optimiser.
   SGD without momentum is used so the step fits in RAM; AdamW's two fp32 states are in the plan.
   Baseline in the same process: the same forward with no gradients (LoRA generation).
3. Memory plan for the full model (ID + Base branches) on N x 80 GB GPUs, DDP vs FSDP2, from the
   exact parameter counts and stated per-sample activation assumptions.

Run: .venv/bin/python bench/train_step.py [--skip-full]   (about 1-3 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import PeakRSS, best_of, gib  # noqa: E402

from scripts.comfy_env import boot_comfy  # noqa: E402

GB = 1e9
GPU_GB = 80.0


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    return best_of(fn, repeats)


def _interleaved(a, b, repeats: int) -> tuple[float, float]:
    """Best-of times of `a` and `b`, alternated so a busy machine slows both alike."""
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return min(ta), min(tb)


def _tiny_measure(tmp: Path, ckpt: bool, repeats: int) -> tuple[float, int, float]:
    from hyperlora_core.comfy_bridge.lora_hooks import LoRASet
    from hyperlora_core.train.config import load_config
    from hyperlora_core.train.fit import close_session, open_session
    from hyperlora_core.train.objective import Conditions, HyperStep, StepRunner
    from hyperlora_core.train.setup import new_hyperlora, set_trainable

    cfg = load_config(ROOT / "hyperlora_core/train/configs/tiny.yaml", {
        "run_dir": str(tmp / "run"), "data": {"shards": str(tmp / "data")},
        "train": {"batch": {"identities": 1, "photos_per_identity": 1}, "gradient_checkpointing": ckpt,
                  "samples": {"every": -1}, "dropout": {"text": 0.0, "face": 0.0, "base_lora": 0.0}}})
    session = open_session(cfg)
    try:
        model = new_hyperlora(session.config, 0)
        set_trainable(model, "arcface_id", cfg.trainable("arcface_id"))
        step = HyperStep(model)
        opt = torch.optim.AdamW([p for p in step.parameters() if p.requires_grad], lr=1e-4)
        runner = StepRunner("arcface_id", cfg, session.backbone, session.denoiser, session.hook_state, session.info.device)
        batch = session.source.batch("arcface_id", 0, with_base=True)

        def train_step():
            loss = runner.loss(step, batch)
            loss.backward()
            session.hook_state.clear()
            opt.step()
            opt.zero_grad(set_to_none=True)

        den = session.denoiser
        x0 = den.latent_in(batch.latents)
        sigma = den.sigmas[batch.timesteps]
        adm = den.adm(batch.pooled, batch.sizes)
        x = den.noisy(sigma, batch.noise, x0)
        with torch.no_grad():
            cond = runner.conditions(batch)
            made = step(Conditions(cond.face_tokens, cond.arcface, None, batch.groups, 1), "same_photo")
        leaf = [[t.detach().clone().requires_grad_() for t in part] for part in made["id"]]

        def hooked_unet():  # baseline: the same UNet pass with the LoRA as fixed leaf tensors (no hypernetwork)
            session.hook_state.sets = [LoRASet(leaf[0], leaf[1], torch.full((1,), 0.5))]
            (den.denoise(x, sigma, batch.context, adm) - x0).pow(2).mean().backward()
            session.hook_state.clear()

        with PeakRSS() as mem_step:
            train_step()
        hooked_unet()
        t_step, t_bare = _interleaved(train_step, hooked_unet, repeats)
        return t_step, mem_step.peak_extra, t_bare
    finally:
        close_session(session)


def tiny_step(repeats: int) -> None:
    from hyperlora_core.comfy_bridge.backbone import tiny_backbone
    from hyperlora_core.train.synthetic import write_synthetic_dataset

    print("== tiny: hypernetwork (dim 32, K 4, rank 2) + tiny SDXL-architecture UNet, batch 1, CPU ==")
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_dataset(Path(tmp) / "data", tiny_backbone(0), identities=2, photos=1)
        rows = [(ckpt, *_tiny_measure(Path(tmp), ckpt, repeats)) for ckpt in (False, True)]
    print(f"{'grad ckpt':>9} | {'train step':>10} | {'peak +RSS':>10} | {'UNet+LoRA f+b':>13} | {'ratio':>5}")
    for ckpt, t, m, tb in rows:
        print(f"{ckpt!s:>9} | {t * 1e3:8.1f} ms | {m / 2**20:7.1f} MiB | {tb * 1e3:10.1f} ms | {t / tb:5.2f}")
    print("ratio = full step (hypernetwork + hooked UNet + AdamW) / hooked UNet forward+backward with a fixed LoRA")
    print(f"gradient checkpointing: step time x{rows[1][1] / rows[0][1]:.2f}, first-step peak x{rows[1][2] / max(rows[0][2], 1):.2f}")


def full_config(with_base: bool):
    from hyperlora_core.config import HyperLoRAConfig, IDProjectorConfig, ModuleSpec, ResamplerConfig

    table = json.loads((ROOT / "models" / "sdxl_hyper_lora_modules.json").read_text())
    modules = tuple(ModuleSpec(name=k, **v) for k, v in table.items())
    q = 8 * len(modules)
    rs = ResamplerConfig(dim=1024, depth=4, num_queries=q, output_dim=128, ff_mult=4, heads=12, dim_head=64,
                         input_dims=(1024, 1024))
    base = ResamplerConfig(dim=1024, depth=4, num_queries=q, output_dim=128, ff_mult=4, heads=12, dim_head=64,
                           input_dims=(1024,)) if with_base else None
    return HyperLoRAConfig(modules=modules, basis_size=128, rank=8, resampler=rs,
                           id_projector=IDProjectorConfig(embed_dim=512, num_tokens=16, token_dim=1024),
                           base_rank=4 if with_base else None, base_resampler=base)


def param_counts(with_base: bool) -> dict[str, int]:
    from hyperlora_core.model import HyperLoRA

    model = HyperLoRA(full_config(with_base), device="meta")
    out = {}
    for name, p in model.named_parameters():
        head = name.split(".")[0]
        out[head] = out.get(head, 0) + p.numel()
    return out


def full_step(repeats: int) -> None:
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
    model = HyperLoRA(full_config(False))
    model.id_basis.reset_for_training(torch.Generator().manual_seed(0))
    with torch.no_grad():  # a trained-looking up basis, so every path carries signal
        for p in model.id_basis.up.values():
            p.normal_(0, 0.01)
    print(f"built {params / 1e9:.3f} B parameters in {time.perf_counter() - t0:.1f} s")
    set_trainable(model, "arcface_id", ("id_projector", "id_resampler", "id_basis"))
    step = HyperStep(model)
    opt = torch.optim.SGD([p for p in step.parameters() if p.requires_grad], lr=0.0)
    gen = torch.Generator().manual_seed(1)
    clip = torch.randn(1, 257, 1024, generator=gen)
    face = torch.nn.functional.normalize(torch.randn(1, 512, generator=gen), dim=-1)
    cond = Conditions(clip, face, None, torch.zeros(1, dtype=torch.long), 1)
    with torch.no_grad():
        downs, ups = step(cond, "same_photo")["id"]
    probe_d = [torch.randn(d.shape, generator=gen) for d in downs]
    probe_u = [torch.randn(u.shape, generator=gen) for u in ups]

    def train_step():
        d, u = step(cond, "same_photo")["id"]
        loss = sum((a * b).sum() for a, b in zip(d, probe_d)) + sum((a * b).sum() for a, b in zip(u, probe_u))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def generate():
        with torch.no_grad():
            step(cond, "same_photo")

    with PeakRSS() as mem_gen:
        t_gen = _timed(generate, repeats)
    with PeakRSS() as mem_train:  # one step: every step allocates its gradients afresh (zero_grad to None)
        t0 = time.perf_counter()
        train_step()
        t_train = time.perf_counter() - t0
    print(f"{'':>28} | {'time':>9} | {'peak +RSS (weights excluded)':>28}")
    print(f"{'forward, no grad (generate)':>28} | {t_gen:7.2f} s | {gib(mem_gen.peak_extra):>28}")
    print(f"{'forward + backward + SGD':>28} | {t_train:7.2f} s | {gib(mem_train.peak_extra):>28}")
    print(f"training step / generation: x{t_train / t_gen:.2f} time; gradients are "
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
    print(f"\nassumed activations {activation_gb:.1f} GB per 1024x1024 sample (bf16, gradient checkpointing; "
          "kohya-style SDXL LoRA runs report 10-12 GB at batch 1 including the 5 GB UNet): an assumption, "
          "not a measurement on this CPU-only machine. 'max batch' = samples per GPU that still fit in 80 GB.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-full", action="store_true", help="skip the full-size hypernetwork step (needs ~15 GB RAM)")
    parser.add_argument("--activation-gb", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared 2-core box two OpenMP threads can be ~10x slower)")
    args = parser.parse_args()
    boot_comfy(cpu=True)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), {psutil.cpu_count()} cores")
    import logging

    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    tiny_step(max(10, args.repeats))
    if not args.skip_full:
        full_step(args.repeats)
    memory_plan(args.activation_gb, unet_gb=2.567e9 * 2 / GB, clip_gb=0.304e9 * 2 / GB)
    print(f"\n(total benchmark time {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
