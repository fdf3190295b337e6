"""ID-LoRA generation at the full published size against the per-layer reference form.

Random weights at the released shapes (K=128, r=8, 140 SDXL modules, resampler 1024 x depth 4,
12 x 64 heads, 16 ID tokens), fp16 storage, 2 photos. Both forms run in this process on the same
weights:

* reference: what the published code does -- the resampler in the stored dtype (fp16) and 1,120
  separate `einsum('bi,ijk->bjk')` calls on contiguous per-layer fp16 bases;
* ours: `HyperLoRA.generate_id_lora` -- fp32 resampler on CPU, stacked basis cast to fp32 chunk by
  chunk (five batched matmuls).

Run: .venv/bin/python bench/generate.py [--rounds N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import PeakRSS, Stat, gib, interleaved  # noqa: E402
from _models import PerLayerReference, hyperlora_config, random_hyperlora  # noqa: E402

from hyperlora_core.coefficients import pool_photos  # noqa: E402
from hyperlora_core.model import HyperLoRA  # noqa: E402


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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    hl = random_hyperlora(hyperlora_config(), dtype=torch.float16)
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

    ours_tokens = pool_photos(hl.id_tokens(clip, ids))
    r = interleaved({
        "ref_resampler": lambda: ref.tokens(clip, ids),
        "ref_mix": lambda: ref.mix(ref_tokens),
        "our_resampler": lambda: hl.id_tokens(clip, ids),
        "our_mix": lambda: hl.lora_state_dict(ours_tokens),
        "ours": lambda: hl.generate_id_lora(clip, ids),
        "read": lambda: read_once(hl),
    }, args.rounds, baseline="ours", warmup=0)
    with PeakRSS() as mem_ref:
        ref.mix(ref.tokens(clip, ids))
    with PeakRSS() as mem_ours:
        hl.generate_id_lora(clip, ids)

    def med(name: str) -> float:
        return r.stat(name).median

    def per_round(num: list[str], den: str) -> Stat:
        return Stat.of([sum(r.times[n][i] for n in num) / r.times[den][i] for i in range(args.rounds)])

    print(f"\nmedian of {args.rounds} interleaved rounds (ratios: median of per-round ratios +- half the IQR)")
    print(f"{'':28s}{'resampler':>11s}{'basis mix':>11s}{'total':>9s}{'peak extra RSS':>16s}")
    print(f"{'per-layer reference (fp16)':28s}{med('ref_resampler'):10.2f}s{med('ref_mix'):10.2f}s"
          f"{med('ref_resampler') + med('ref_mix'):8.2f}s{gib(mem_ref.peak_extra):>16s}")
    print(f"{'ours (stacked, fp32 compute)':28s}{med('our_resampler'):10.2f}s{med('our_mix'):10.2f}s{med('ours'):8.2f}s"
          f"{gib(mem_ours.peak_extra):>16s}")
    print(f"one read of the basis (chunked copy of every byte into a 16 MiB buffer): {med('read'):.2f}s")
    print()
    print(f"resampler_speedup={per_round(['ref_resampler'], 'our_resampler').ratio_text()}")
    print(f"basis_mix_speedup={per_round(['ref_mix'], 'our_mix').ratio_text()}")
    print(f"basis_mix_vs_one_read={per_round(['our_mix'], 'read').ratio_text()}")
    print(f"speedup_vs_per_layer_fp16={per_round(['ref_resampler', 'ref_mix'], 'ours').median:.2f}")


if __name__ == "__main__":
    main()
