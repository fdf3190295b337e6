"""An independent re-statement of the published HyperLoRA semantics, for tests only.

Written from the format document with plain tensor maths on the raw published tensors (no
module of ours), so a test comparing it with `HyperLoRA.generate_id_lora` checks our modules,
stacked basis and key layout against the specification.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def _ln(x, sd, prefix):
    return F.layer_norm(x, (x.shape[-1],), sd[f"{prefix}.weight"].float(), sd[f"{prefix}.bias"].float(), 1e-5)


def _attn(q_in, kv_in, sd, prefix, dim_head):
    wq, wk, wv = (sd[f"{prefix}.to_{n}.weight"].float() for n in "qkv")
    wo = sd[f"{prefix}.to_out.0.weight"].float()
    heads = wq.shape[0] // dim_head
    b = q_in.shape[0]

    def split(t):
        return t.view(b, -1, heads, dim_head).permute(0, 2, 1, 3)

    q, k, v = split(q_in @ wq.T), split(kv_in @ wk.T), split(kv_in @ wv.T)
    att = torch.softmax(q @ k.transpose(-1, -2) * dim_head**-0.5, dim=-1)
    return (att @ v).permute(0, 2, 1, 3).reshape(b, -1, heads * dim_head) @ wo.T


def resampler_tokens(sd, x, y=None, dim_head=64):
    """Per-photo resampler output `[B, Q, K]` (before the photo mean)."""
    lin = lambda t, p: t @ sd[f"{p}.weight"].float().T + sd[f"{p}.bias"].float()  # noqa: E731
    x = lin(x, "proj_in")
    y = lin(y, "proj_in_2") if y is not None else None
    lat = sd["latents"].float().repeat(x.shape[0], 1, 1)
    depth = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
    for j in range(depth):
        p = f"layers.{j}"
        h = _ln(lat, sd, f"{p}.norm_attn1")
        lat = lat + _attn(h, h, sd, f"{p}.attn1", dim_head)
        lat = lat + _attn(_ln(lat, sd, f"{p}.norm_attn2_l"), _ln(x, sd, f"{p}.norm_attn2_x"), sd, f"{p}.attn2", dim_head)
        if y is not None:
            lat = lat + _attn(_ln(lat, sd, f"{p}.norm_attn3_l"), _ln(y, sd, f"{p}.norm_attn3_y"), sd, f"{p}.attn3", dim_head)
        h = _ln(lat, sd, f"{p}.norm_ff")
        h = F.gelu(lin(h, f"{p}.ff.net.0.proj"))
        lat = lat + lin(h, f"{p}.ff.net.2")
    return lin(lat, "proj_out")


def reference_id_lora(folder: Path, clip_tokens, id_embeds, weights=None, dim_head=64):
    """The published ID-LoRA for these conditions, computed layer by layer with einsum."""
    folder = Path(folder)
    modules = json.loads((folder / "hyper_lora_modules.json").read_text())
    basis = load_file(str(folder / "hyper_lora_modules.safetensors"))
    res = load_file(str(folder / "resampler.safetensors"))
    proj = load_file(str(folder / "id_projector.safetensors"))
    d = proj["2.weight"].shape[0]
    ids = id_embeds.float() @ proj["0.weight"].float().T + proj["0.bias"].float()
    ids = F.layer_norm(ids.view(ids.shape[0], -1, d), (d,), proj["2.weight"].float(), proj["2.bias"].float(), 1e-5)
    tokens = resampler_tokens(res, ids, clip_tokens.float(), dim_head)
    if weights is None:
        mean = tokens.mean(0)
    else:
        w = torch.as_tensor(weights, dtype=torch.float32)
        mean = (tokens * (w / w.sum()).view(-1, 1, 1)).sum(0)
    mean = mean / torch.sqrt((mean**2).sum(-1, keepdim=True) + 1e-8)
    out = {}
    for i, name in enumerate(modules):
        for j, (proj_name, key) in enumerate(
            (("to_q", "to_q"), ("to_k", "to_k"), ("to_v", "to_v"), ("to_out", "to_out_0"))
        ):
            c_down = mean[8 * i + 2 * j].unsqueeze(0)
            c_up = mean[8 * i + 2 * j + 1].unsqueeze(0)
            down = torch.einsum("bi,ijk->bjk", c_down, basis[f"{i}.{proj_name}.id_down_basis"].float())[0]
            up = torch.einsum("bi,ijk->bjk", c_up, basis[f"{i}.{proj_name}.id_up_basis"].float())[0]
            rank = down.shape[1]
            out[f"{name}_{key}.lora_down.weight"] = down.T
            out[f"{name}_{key}.lora_up.weight"] = up.T
            out[f"{name}_{key}.alpha"] = torch.tensor(rank * 0.5)
    return out
