"""The learned LoRA basis, stacked by shape so one forward is a handful of batched matmuls.

The published file stores, per LoRA'd linear, `down_basis [K, in, r]` and `up_basis [K, r, out]`.
Here every linear with the same `in` shares one stacked down tensor `[L, K, r*in]` (each row the
transposed basis matrix, flattened), and likewise for `up` by `out`, so the mix for all 560 SDXL
linears is five `bmm` calls whose results are already `lora_down.weight [r, in]` and
`lora_up.weight [out, r]` without a transpose. Conversion to and from the published per-layer
tensors happens only at load and export.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

_CHUNK_ELEMENTS = 10 * 2**20 // 4
"""Basis elements cast to fp32 at a time on CPU (10 MiB of fp32): keeps memory near the stored
size, and the converted chunk stays in the last-level cache for the matmul that reads it (measured
on a 32 MiB-L3 EPYC: 2 SDXL layers per chunk ran at 1.3x one read of the fp16 basis, 8 layers at 15x)."""


def compute_dtype_for(t: torch.Tensor) -> torch.dtype:
    """fp32 on CPU (fp16 matmuls are slow and inexact there); the stored dtype elsewhere."""
    if t.device.type == "cpu" and t.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return t.dtype


class LoRABasis(nn.Module):
    """`basis_size` down/up basis matrices of rank `rank` for every LoRA'd linear layer."""

    def __init__(
        self,
        layer_shapes: list[tuple[int, int]],
        basis_size: int,
        rank: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.layer_shapes = list(layer_shapes)
        self.basis_size = basis_size
        self.rank = rank
        self._down_slot: list[tuple[str, int]] = []
        self._up_slot: list[tuple[str, int]] = []
        down_members: dict[str, list[int]] = {}
        up_members: dict[str, list[int]] = {}
        for layer, (n_in, n_out) in enumerate(self.layer_shapes):
            dk, uk = f"in{n_in}", f"out{n_out}"
            self._down_slot.append((dk, len(down_members.setdefault(dk, []))))
            down_members[dk].append(layer)
            self._up_slot.append((uk, len(up_members.setdefault(uk, []))))
            up_members[uk].append(layer)
        self._down_members = down_members
        self._up_members = up_members
        self._width = {f"in{n_in}": n_in for n_in, _ in self.layer_shapes} | {f"out{n}": n for _, n in self.layer_shapes}
        """Stack name -> the input (down) or output (up) width of its layers."""
        factory = {"device": device, "dtype": dtype}
        self.down = nn.ParameterDict(
            {k: nn.Parameter(torch.zeros(len(v), basis_size, rank * self._width[k], **factory)) for k, v in down_members.items()}
        )
        self.up = nn.ParameterDict(
            {k: nn.Parameter(torch.zeros(len(v), basis_size, self._width[k] * rank, **factory)) for k, v in up_members.items()}
        )

    @property
    def num_layers(self) -> int:
        return len(self.layer_shapes)

    def reset_for_training(self, generator: torch.Generator | None = None) -> None:
        """LoRA-style start: random down basis, zero up basis (zero-zero would get no gradient)."""
        with torch.no_grad():
            for key, p in self.down.items():
                bound = 1.0 / math.sqrt(self._width[key])
                p.copy_(torch.rand(p.shape, generator=generator, dtype=torch.float32).mul_(2 * bound).sub_(bound))
            for p in self.up.values():
                p.zero_()

    # -- published per-layer layout -------------------------------------------------------------
    def published_down(self, layer: int) -> torch.Tensor:
        """Layer's down basis as published: `[K, in, r]` (a view of the stacked storage)."""
        key, pos = self._down_slot[layer]
        n_in = self.layer_shapes[layer][0]
        return self.down[key][pos].view(self.basis_size, self.rank, n_in).transpose(1, 2)

    def published_up(self, layer: int) -> torch.Tensor:
        """Layer's up basis as published: `[K, r, out]` (a view of the stacked storage)."""
        key, pos = self._up_slot[layer]
        n_out = self.layer_shapes[layer][1]
        return self.up[key][pos].view(self.basis_size, n_out, self.rank).transpose(1, 2)

    def load_published(self, get: Callable[[int, str], torch.Tensor]) -> None:
        """Fill from published tensors; `get(layer, "down"|"up")` returns one at a time (low memory)."""
        with torch.no_grad():
            for layer in range(self.num_layers):
                self.published_down(layer).copy_(get(layer, "down"))
                self.published_up(layer).copy_(get(layer, "up"))

    def iter_published(self) -> Iterator[tuple[int, str, torch.Tensor]]:
        """(layer, "down"|"up", contiguous published tensor) for export."""
        for layer in range(self.num_layers):
            yield layer, "down", self.published_down(layer).contiguous()
            yield layer, "up", self.published_up(layer).contiguous()

    # -- the mix ---------------------------------------------------------------------------------
    @staticmethod
    def _mix_group(coeffs: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """`coeffs [B, L, K]` x `basis [L, K, F]` -> `[L, B, F]`, casting fp16 chunks on CPU."""
        compute = compute_dtype_for(basis)
        c = coeffs.transpose(0, 1).to(device=basis.device, dtype=compute)
        if basis.dtype == compute:
            return torch.bmm(c, basis)
        per_layer = basis.shape[1] * basis.shape[2]
        step = max(1, _CHUNK_ELEMENTS // per_layer)
        if torch.is_grad_enabled() and (basis.requires_grad or c.requires_grad):
            return torch.cat([torch.bmm(c[s : s + step], basis[s : s + step].to(compute)) for s in range(0, basis.shape[0], step)])
        out = torch.empty((basis.shape[0], c.shape[1], basis.shape[2]), device=basis.device, dtype=compute)
        for s in range(0, basis.shape[0], step):
            torch.bmm(c[s : s + step], basis[s : s + step].to(compute), out=out[s : s + step])
        return out

    def mix(
        self, down_coeffs: torch.Tensor, up_coeffs: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-layer LoRA factors from coefficients `[B, L, K]` (layer order of `layer_shapes`).

        Returns `downs[l] [B, r, in]` and `ups[l] [B, out, r]`, the kohya `lora_down.weight` and
        `lora_up.weight` of each batch entry.
        """
        b = down_coeffs.shape[0]
        downs: list[torch.Tensor | None] = [None] * self.num_layers
        ups: list[torch.Tensor | None] = [None] * self.num_layers
        for key, members in self._down_members.items():
            idx = torch.tensor(members, device=down_coeffs.device)
            mixed = self._mix_group(down_coeffs.index_select(1, idx), self.down[key])
            for pos, layer in enumerate(members):
                downs[layer] = mixed[pos].view(b, self.rank, self._width[key])
        for key, members in self._up_members.items():
            idx = torch.tensor(members, device=up_coeffs.device)
            mixed = self._mix_group(up_coeffs.index_select(1, idx), self.up[key])
            for pos, layer in enumerate(members):
                ups[layer] = mixed[pos].view(b, self._width[key], self.rank)
        return downs, ups  # type: ignore[return-value]
