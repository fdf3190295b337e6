"""Headless demo of the core: checkpoint -> LoRA -> patched ComfyUI SDXL model -> saved LoRA file.

Uses a real checkpoint when one is given (`--checkpoint`), else builds a small random stand-in
on a tiny SDXL-architecture UNet (and says so). The full graph demo is `make demo`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scripts.comfy_env import ROOT, boot_comfy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", help="a HyperLoRA checkpoint folder or single file")
    parser.add_argument("--out", default=str(ROOT / "output" / "core_demo"))
    args = parser.parse_args()
    boot_comfy()
    import comfy.model_management
    import torch

    from hyperlora_core import HyperLoRA
    from hyperlora_core.comfy_bridge import apply_lora
    from hyperlora_core.comfy_bridge.bases import SDXL, sdxl
    from hyperlora_core.comfy_bridge.random_init import init_weights
    from hyperlora_core.config import HyperLoRAConfig, IDProjectorConfig, ResamplerConfig
    from hyperlora_core.lora import save_lora

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    unet = SDXL.build(sdxl.unet_config(**sdxl.TINY_OVERRIDES), device="cpu")
    init_weights(unet.model, seed=0)
    if args.checkpoint:
        hl = HyperLoRA.from_pretrained(args.checkpoint)
        print(f"loaded {args.checkpoint}")
    else:
        print("no checkpoint given: using a small RANDOM stand-in HyperLoRA on a tiny SDXL-architecture UNet")
        specs = tuple(SDXL.module_specs(unet))
        rs = ResamplerConfig(dim=64, depth=2, num_queries=2 * sum(len(s.layers) for s in specs), output_dim=16, ff_mult=2, heads=1,
                             dim_head=64, input_dims=(64, 1024))
        cfg = HyperLoRAConfig(modules=specs, basis_size=16, rank=4, resampler=rs,
                              id_projector=IDProjectorConfig(embed_dim=512, num_tokens=4, token_dim=64))
        torch.manual_seed(0)
        hl = HyperLoRA(cfg)
        with torch.no_grad():
            for p in hl.parameters():
                p.normal_(0, 0.05)
        hl.save_pretrained(out / "standin_checkpoint")
        hl = HyperLoRA.from_pretrained(out / "standin_checkpoint")
    c = hl.config
    print(f"inferred: {len(c.modules)} modules, K={c.basis_size}, rank={c.rank}, resampler dim {c.resampler.dim} "
          f"depth {c.resampler.depth} heads {c.resampler.heads}x{c.resampler.dim_head}, "
          f"{c.id_projector.num_tokens if c.id_projector else 0} ID tokens, Base-LoRA: {c.has_base}")
    clip = torch.randn(2, 257, c.resampler.input_dims[-1])
    ids = torch.nn.functional.normalize(torch.randn(2, c.id_projector.embed_dim), dim=-1)
    t0 = time.perf_counter()
    lora = hl.generate_id_lora(clip, ids)
    print(f"generated an ID-LoRA from 2 (random) photo conditions in {time.perf_counter() - t0:.2f} s: {len(lora)} tensors")
    if not args.checkpoint:
        patched = apply_lora(unet, lora, 0.85)
        widths = unet.model.model_config.unet_config
        x, ctx = torch.randn(1, 4, 8, 8), torch.randn(1, 77, widths["context_dim"])
        y = torch.randn(1, widths["adm_in_channels"])
        outs = []
        for m in (unet, patched):
            comfy.model_management.load_models_gpu([m])
            with torch.no_grad():
                outs.append(m.model.apply_model(x, torch.tensor([5.0]), c_crossattn=ctx, y=y))
        print(f"applied at strength 0.85: denoiser output changed by max {float((outs[0] - outs[1]).abs().max()):.4f}")
    path = out / f"id_lora_{time.strftime('%Y%m%d_%H%M%S')}.safetensors"
    save_lora(lora, path, base_metadata=SDXL.kohya_metadata(), metadata={"hyperlora.source": str(args.checkpoint or "random stand-in")})
    print(f"LoRA written to {path}")


if __name__ == "__main__":
    main()
