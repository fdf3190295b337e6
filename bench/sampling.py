"""Seconds per sampler step: bare model, with a HyperLoRA LoRA, with an IP-Adapter-style patch.

HyperLoRA hands its identity to the model as weights: ComfyUI adds the LoRA into the UNet's weights
once when it loads the model, after which every step runs the same layers as the bare model. Peer
packs (IP-Adapter, InstantID, PuLID) inject identity at every step instead, through a
cross-attention patch that attends to extra image tokens. This script measures both on one
SDXL-architecture UNet built with ComfyUI's classes: real block layout (transformer depths
0,0,2,2,10,10 and a 10-deep middle, 70 attn1 + 70 attn2, context 2048), random weights, ComfyUI's
own sampler (`comfy.sample.sample`, euler, CFG batch of 2):

* bare: the model as loaded;
* lora: the same after `apply_lora` of a rank-8 ID-LoRA made by a random HyperLoRA for all 140
  modules x 4 projections (what the published checkpoints produce);
* ip-adapter: an attn2 replace patch on all 70 cross-attentions that adds attention to 16 image
  tokens through its own to_k/to_v projections (`set_model_attn2_replace`, as peer packs do);
* merge: the one-off cost of ComfyUI merging the LoRA into the weights when it loads the model.

Method (bench/_measure.py): the three run in interleaved rounds; each run samples `--steps` steps
and counts the median of its steps after the first quarter (a GPU may still be raising its clocks); each round gives lora/bare and ip/bare, and the
report is the median of those per-round ratios with half their interquartile range. On the CPU the
clock is this process's CPU time on one torch thread (another process on a shared machine does not
add to it); on a GPU it is wall time with CUDA synchronised at every step. The last line is
`lora_step_overhead=<lora / bare>`; the goal is <= 1.01 (the LoRA is merged, so the true ratio is 1).

Run: .venv/bin/python bench/sampling.py [--channels 64] [--latent 24] [--steps 4] [--rounds 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scripts.comfy_env import boot_comfy  # noqa: E402

IMAGE_TOKENS = 16


def build_model(unet_config: dict, dtype=None):
    """An SDXL-layout UNet with ComfyUI's classes, seeded random weights, built on ComfyUI's device."""
    import comfy.model_management
    import torch

    from hyperlora_core.comfy_bridge.bases import SDXL
    from hyperlora_core.comfy_bridge.random_init import init_weights

    device = comfy.model_management.get_torch_device()
    model = SDXL.build(unet_config, device=device, dtype=dtype or torch.float32)
    init_weights(model.model, seed=0)
    return model


def make_lora(model, hyperlora=None) -> tuple[dict, int]:
    """A rank-8 ID-LoRA for every attention module of `model` (from `hyperlora`, else a small random one)."""
    import torch
    from _models import hyperlora_config, random_hyperlora

    from hyperlora_core.comfy_bridge.bases import SDXL

    specs = tuple(SDXL.module_specs(model))
    if hyperlora is None:
        hyperlora = random_hyperlora(hyperlora_config(specs, dim=64, depth=1, heads=1, basis_size=8, id_tokens=2),
                                     dtype=torch.float32, seed=1)
    g = torch.Generator().manual_seed(2)
    clip = torch.randn(1, 257, 1024, generator=g)
    ids = torch.nn.functional.normalize(torch.randn(1, 512, generator=g), dim=-1)
    lora = hyperlora.generate_id_lora(clip, ids)
    return lora, len(specs)


def ip_adapter_patch(model, context_dim: int):
    """A clone with an IP-Adapter-style attn2 replace patch on every cross-attention block."""
    import torch
    from comfy.ldm.modules.attention import BasicTransformerBlock, optimized_attention

    patched = model.clone()
    g = torch.Generator().manual_seed(3)
    image_tokens = torch.randn(1, IMAGE_TOKENS, context_dim, generator=g)
    unet = patched.model.diffusion_model
    sites = []
    for kind, blocks in (("input", unet.input_blocks), ("middle", [unet.middle_block]), ("output", unet.output_blocks)):
        for number, block in enumerate(blocks):
            tbs = [m for m in block.modules() if isinstance(m, BasicTransformerBlock)]
            for index, tb in enumerate(tbs):
                sites.append((kind, number, index, tb.attn2.to_k.weight.shape[0]))

    class IPAttention:
        def __init__(self, inner: int):
            self.to_k_ip = torch.nn.Linear(context_dim, inner, bias=False)
            self.to_v_ip = torch.nn.Linear(context_dim, inner, bias=False)
            torch.nn.init.normal_(self.to_k_ip.weight, std=0.02, generator=g)
            torch.nn.init.normal_(self.to_v_ip.weight, std=0.02, generator=g)
            self.placed = None

        @torch.no_grad()
        def __call__(self, q, k, v, extra_options):
            if self.placed != (q.device, q.dtype):  # as peer packs do: weights follow the model's device
                self.to_k_ip.to(q.device, q.dtype)
                self.to_v_ip.to(q.device, q.dtype)
                self.placed = (q.device, q.dtype)
            heads = extra_options["n_heads"]
            out = optimized_attention(q, k, v, heads)
            cond = image_tokens.to(q.device, q.dtype).expand(q.shape[0], -1, -1)
            ip_k, ip_v = self.to_k_ip(cond), self.to_v_ip(cond)
            return out + 0.8 * optimized_attention(q, ip_k, ip_v, heads)

    for kind, number, index, inner in sites:
        patched.set_model_attn2_replace(IPAttention(inner), kind, number, index)
    return patched, len(sites)


def conditioning(tokens: int, context_dim: int, pooled_dim: int | None = None):
    import torch

    from hyperlora_core.comfy_bridge.bases import sdxl

    pooled_dim = pooled_dim or sdxl.POOLED_WIDTH
    g = torch.Generator().manual_seed(4)
    pos = [[torch.randn(1, tokens, context_dim, generator=g), {"pooled_output": torch.randn(1, pooled_dim, generator=g)}]]
    neg = [[torch.randn(1, tokens, context_dim, generator=g), {"pooled_output": torch.randn(1, pooled_dim, generator=g)}]]
    return pos, neg


def sampler_run(model, positive, negative, latent, steps: int, clock: Callable[[], float],
                sync: Callable[[], None] | None, seed: int = 0, cfg: float = 5.0) -> tuple[float, float]:
    """(median seconds of steps 2..n, seconds from the call to the end of step 1) of one KSampler-path run
    (`cfg` 1: ComfyUI runs the positive batch only, as for FLUX.1-dev)."""
    import comfy.sample

    marks: list[float] = []

    def on_step(*_):
        if sync:
            sync()
        marks.append(clock())

    start = clock()
    noise = comfy.sample.prepare_noise(latent, seed)
    comfy.sample.sample(model, noise, steps, cfg, "euler", "normal", positive, negative, latent,
                        callback=on_step, disable_pbar=True, seed=seed)
    steps_s = [b - a for a, b in zip(marks, marks[1:])]
    settled = steps_s[len(steps_s) // 4:]  # a GPU's clocks may still be ramping up after loading or patching
    return statistics.median(settled), marks[0] - start


def measure(unet_config: dict, latent_side: int, steps: int, rounds: int, dtype=None, hyperlora=None,
            clock: Callable[[], float] | None = None, report: Callable[[str], None] = print) -> dict:
    """The whole comparison; returns the figures (also printed through `report`)."""
    import comfy.model_management
    import torch
    from _measure import cpu_clock, interleaved, wall_clock

    from hyperlora_core.comfy_bridge import apply_lora

    device = comfy.model_management.get_torch_device()
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else None
    clock = clock or (wall_clock if cuda else cpu_clock)
    t0 = time.perf_counter()
    model = build_model(unet_config, dtype=dtype)
    params = sum(p.numel() for p in model.model.diffusion_model.parameters())
    lora, modules = make_lora(model, hyperlora)
    context_dim = model.model.model_config.unet_config["context_dim"]
    report(f"UNet: SDXL block layout, base width {unet_config['model_channels']} (SDXL 320), {params / 1e6:.0f} M parameters, "
           f"{next(model.model.parameters()).dtype}, {modules} attention modules on {device}; latent "
           f"{latent_side}x{latent_side} ({8 * latent_side} px), CFG batch 2, {steps} euler steps x {rounds} rounds; "
           f"built in {time.perf_counter() - t0:.1f} s")
    positive, negative = conditioning(77, context_dim)
    latent = torch.zeros(1, 4, latent_side, latent_side)

    # One-off cost: ComfyUI merges the LoRA into the weights when it loads the patched model.
    def timed_load(m) -> float:
        comfy.model_management.unload_all_models()
        if sync:
            sync()
        t = time.perf_counter()
        comfy.model_management.load_models_gpu([m], force_full_load=True)
        if sync:
            sync()
        return time.perf_counter() - t

    timed_load(model)
    probe = next(k for k in model.model.state_dict() if k.endswith("attn2.to_k.weight"))  # a cross-attention weight
    bare_weight = model.model.state_dict()[probe].detach().to("cpu", copy=True)
    bare_load = min(timed_load(model) for _ in range(3))
    lora_model = apply_lora(model, lora, 0.85)
    lora_load = min(timed_load(lora_model) for _ in range(3))
    changed = (lora_model.model.state_dict()[probe].detach().cpu() - bare_weight).abs().max().item()
    if not changed > 0:
        raise RuntimeError("the LoRA did not change the weights")
    comfy.model_management.unload_all_models()
    if not torch.equal(model.model.state_dict()[probe].detach().cpu(), bare_weight):
        raise RuntimeError("unloading did not restore the bare weights")
    ip_model, sites = ip_adapter_patch(model, context_dim)

    configs = {"bare": model, "lora": lora_model, "ip-adapter": ip_model}
    firsts: dict[str, list[float]] = {n: [] for n in configs}

    def run(name):
        def f() -> float:
            step, first = sampler_run(configs[name], positive, negative, latent, steps, clock, sync)
            firsts[name].append(first)
            return step
        return f

    rounds_out = interleaved({n: run(n) for n in configs}, rounds, baseline="bare")
    lora_ratio, ip_ratio = rounds_out.ratio("lora"), rounds_out.ratio("ip-adapter")
    unit = "wall" if clock is wall_clock else "cpu"
    report(f"{'':12s} {unit + ' s/step (median)':>20s} {'vs bare (median of rounds)':>28s} {'call -> end of step 1':>22s}")
    for name in configs:
        ratio = rounds_out.ratio(name).ratio_text() if name != "bare" else "1"
        report(f"{name:12s} {rounds_out.stat(name).median:20.4f} {ratio:>28s} {min(firsts[name]):21.3f}s")
    report(f"ip-adapter patch: {sites} cross-attentions attend to {IMAGE_TOKENS} extra image tokens every step")
    report(f"LoRA merge at model load (one-off, best of 3): {lora_load:.3f} s vs {bare_load:.3f} s bare load "
           f"({4 * modules} weights updated)")
    return {"rounds": rounds_out.times, "bare_step_s": rounds_out.stat("bare").median, "lora_ratio": lora_ratio, "ip_ratio": ip_ratio,
            "merge_s": lora_load - bare_load, "lora_load_s": lora_load, "bare_load_s": bare_load, "clock": unit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=64, help="UNet base width (SDXL: 320)")
    parser.add_argument("--latent", type=int, default=24, help="latent side (SDXL at 1024 px: 128)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU time is exact with one)")
    args = parser.parse_args()

    boot_comfy()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    from hyperlora_core.comfy_bridge.bases import sdxl

    out = measure(sdxl.unet_config(model_channels=args.channels), args.latent, args.steps, args.rounds)
    print(f"ip_adapter_step_overhead={out['ip_ratio'].median:.3f}")
    print(f"lora_step_overhead={out['lora_ratio'].median:.3f}")


if __name__ == "__main__":
    main()
