"""ID-LoRA generation at the full published size against the per-layer reference form.

Random weights at the released shapes (K=128, r=8, 140 SDXL modules, resampler 1024 x depth 4,
12 x 64 heads, 16 ID tokens), fp16 storage, 2 photos. Both forms run in this process on the same
weights:

* reference: what the published code does -- the resampler in the stored dtype (fp16) and 1,120
  separate `einsum('bi,ijk->bjk')` calls on contiguous per-layer fp16 bases;
* ours: `HyperLoRA.generate_id_lora` -- fp32 resampler on CPU, stacked basis cast to fp32 chunk by
  chunk (five batched matmuls).

Run: .venv/bin/python bench/generate.py [--repeats N]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import PeakRSS, best_of, gib  # noqa: E402

from hyperlora_core.coefficients import normalize  # noqa: E402
from hyperlora_core.config import (  # noqa: E402
    LORA_KEY_SUFFIX,
    PROJECTIONS,
    HyperLoRAConfig,
    IDProjectorConfig,
    ModuleSpec,
    ResamplerConfig,
)
from hyperlora_core.model import HyperLoRA  # noqa: E402


def published_config() -> HyperLoRAConfig:
    table = json.loads((ROOT / "models" / "sdxl_hyper_lora_modules.json").read_text())
    modules = tuple(ModuleSpec(name=k, **v) for k, v in table.items())
    rs = ResamplerConfig(dim=1024, depth=4, num_queries=8 * len(modules), output_dim=128, ff_mult=4, heads=12,
                         dim_head=64, input_dims=(1024, 1024))
    return HyperLoRAConfig(modules=modules, basis_size=128, rank=8, resampler=rs,
                           id_projector=IDProjectorConfig(embed_dim=512, num_tokens=16, token_dim=1024))


@torch.no_grad()
def build(config: HyperLoRAConfig) -> HyperLoRA:
    hl = HyperLoRA(config, dtype=torch.float16)
    gen = torch.Generator().manual_seed(0)
    for p in hl.parameters():
        p.normal_(0.0, 0.02, generator=gen)
    return hl.eval().requires_grad_(False)  # as from_pretrained leaves it


class PerLayerReference:
    """The published structure: fp16 resampler, one einsum per layer on contiguous fp16 bases."""

    def __init__(self, hl: HyperLoRA) -> None:
        self.projector = copy.deepcopy(hl.id_projector).half()
        self.resampler = copy.deepcopy(hl.resampler).half()
        self.names = [f"{m.name}_{LORA_KEY_SUFFIX[p]}" for m in hl.config.modules for p in PROJECTIONS]
        self.down = [hl.id_basis.published_down(i).contiguous() for i in range(len(self.names))]
        self.up = [hl.id_basis.published_up(i).contiguous() for i in range(len(self.names))]
        self.rank = hl.config.rank

    @torch.no_grad()
    def tokens(self, clip: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        t = self.resampler(self.projector(ids.half()), clip.half())
        return normalize(t.mean(0, keepdim=True))

    @torch.no_grad()
    def mix(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, name in enumerate(self.names):
            down = torch.einsum("bi,ijk->bjk", tokens[:, 2 * i], self.down[i])
            up = torch.einsum("bi,ijk->bjk", tokens[:, 2 * i + 1], self.up[i])
            out[f"{name}.lora_down.weight"] = down[0].t().contiguous()
            out[f"{name}.lora_up.weight"] = up[0].t().contiguous()
            out[f"{name}.alpha"] = torch.tensor(self.rank * 0.5)
        return out


def read_once(hl: HyperLoRA) -> None:
    """Touch every byte of the stored basis once (the memory-bound floor of any mix)."""
    buf = torch.empty(1 << 23, dtype=torch.float16)
    for p in hl.id_basis.parameters():
        flat = p.detach().view(-1)
        for s in range(0, flat.numel(), buf.numel()):
            chunk = flat[s : s + buf.numel()]
            buf[: chunk.numel()].copy_(chunk)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--photos", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    config = published_config()
    hl = build(config)
    basis_bytes = sum(p.numel() * p.element_size() for p in hl.id_basis.parameters())
    print(f"built random published-size HyperLoRA in {time.perf_counter() - t0:.1f} s; basis {gib(basis_bytes)} fp16, "
          f"threads {torch.get_num_threads()}")
    ref = PerLayerReference(hl)
    clip = torch.randn(args.photos, 257, 1024)
    ids = torch.nn.functional.normalize(torch.randn(args.photos, 512), dim=-1)

    # correctness first: both forms agree (fp16 rounding in the reference only)
    ours_lora = hl.generate_id_lora(clip, ids)
    ref_tokens = ref.tokens(clip, ids)
    ref_lora = ref.mix(ref_tokens)
    worst = max((ours_lora[k].float() - ref_lora[k].float()).abs().max().item() for k in ours_lora)
    scale = max(v.abs().max().item() for k, v in ours_lora.items() if not k.endswith("alpha"))
    print(f"max |ours - reference| = {worst:.2e} (largest weight {scale:.2e}; the reference rounds to fp16)")

    ours_tokens = normalize(hl.id_tokens(clip, ids).mean(0, keepdim=True))
    t_ref_res = best_of(lambda: ref.tokens(clip, ids), args.repeats)
    t_ref_mix = best_of(lambda: ref.mix(ref_tokens), args.repeats)
    t_our_res = best_of(lambda: hl.id_tokens(clip, ids), args.repeats)
    t_our_mix = best_of(lambda: hl.lora_state_dict(ours_tokens), args.repeats)
    t_our_all = best_of(lambda: hl.generate_id_lora(clip, ids), args.repeats)
    t_read = best_of(lambda: read_once(hl), args.repeats)
    with PeakRSS() as mem_ref:
        ref.mix(ref.tokens(clip, ids))
    with PeakRSS() as mem_ours:
        hl.generate_id_lora(clip, ids)

    print()
    print(f"{'':28s}{'resampler':>11s}{'basis mix':>11s}{'total':>9s}{'peak extra RSS':>16s}")
    print(f"{'per-layer reference (fp16)':28s}{t_ref_res:10.2f}s{t_ref_mix:10.2f}s{t_ref_res + t_ref_mix:8.2f}s{gib(mem_ref.peak_extra):>16s}")
    print(f"{'ours (stacked, fp32 compute)':28s}{t_our_res:10.2f}s{t_our_mix:10.2f}s{t_our_all:8.2f}s{gib(mem_ours.peak_extra):>16s}")
    print(f"one read of the basis (chunked copy of every byte into a 16 MiB buffer): {t_read:.2f}s")
    print()
    print(f"resampler_speedup={t_ref_res / t_our_res:.2f}")
    print(f"basis_mix_speedup={t_ref_mix / t_our_mix:.2f}")
    print(f"basis_mix_vs_one_read={t_our_mix / t_read:.2f}")
    print(f"speedup_vs_per_layer_fp16={(t_ref_res + t_ref_mix) / t_our_all:.2f}")


if __name__ == "__main__":
    main()
