"""Deterministic batches: which photos, which noise, which dropouts, for every step.

Everything random about a step is a function of (seed, stage, step) alone, drawn for the whole
global batch and then sliced by rank. So one process and N processes see the same samples and
the same noise (equal losses), and resuming at step s needs nothing but s (the data position).
Identities never straddle ranks, so per-identity averaging stays local.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

from ..errors import HyperLoRAError
from .config import FitConfig
from .shards import ShardDataset


def step_generator(seed: int, stage: str, step: int, purpose: str) -> torch.Generator:
    """A CPU generator seeded from the run seed, the stage, the step and what it is for."""
    key = zlib.crc32(f"{stage}/{purpose}".encode())
    return torch.Generator().manual_seed((seed * 1_000_003 + key * 7919 + step) % (2**63 - 1))


@dataclass
class Batch:
    """One rank's slice of a global batch (tensors on the training device)."""

    latents: torch.Tensor  # [b, 4, h, w] VAE latents (unscaled)
    cond: dict[str, torch.Tensor]  # the base profile's conditioning, batch first (text dropout applied)
    face: torch.Tensor  # [b, 224, 224, 3] float 0..1
    base: torch.Tensor | None  # [b, 224, 224, 3] float 0..1
    arcface: torch.Tensor  # [b, 512]
    groups: torch.Tensor  # [b] identity slot within this slice
    num_groups: int
    noise: torch.Tensor  # [b, 4, h, w]
    timesteps: torch.Tensor  # [b] long
    drop_text: torch.Tensor  # [b] bool
    drop_face: torch.Tensor  # [b] bool
    drop_base: torch.Tensor  # [b] bool
    global_index: torch.Tensor  # [b] position in the global batch
    sample_ids: list[int]

    @property
    def size(self) -> int:
        return self.latents.shape[0]


class BatchSource:
    """Builds step `s`'s batch for one rank from a `ShardDataset`."""

    def __init__(self, dataset: ShardDataset, cfg: FitConfig, rank: int, world: int, device: torch.device) -> None:
        b = cfg.train.batch
        if b.identities % world:
            raise HyperLoRAError(
                f"train.batch.identities ({b.identities}) must be divisible by the number of processes ({world}); "
                "identities are split over processes."
            )
        self.dataset, self.cfg, self.rank, self.world, self.device = dataset, cfg, rank, world, device
        self.identities, self.photos = b.identities, b.photos_per_identity
        self.empty = dataset.empty

    def _identities_for(self, stage: str, step: int) -> list[int]:
        """Walk through epochs of shuffled identities, `identities` per step (wrapping over epochs)."""
        n = self.dataset.num_identities
        out = []
        start = step * self.identities
        for pos in range(start, start + self.identities):
            epoch, k = divmod(pos, n)
            perm = torch.randperm(n, generator=step_generator(self.cfg.seed, stage, epoch, "epoch"))
            out.append(int(perm[k]))
        return out

    def position(self, stage: str, step: int) -> dict:
        """Where the data stream stands before `step` (informational: batches depend on the step alone)."""
        consumed = step * self.identities
        n = self.dataset.num_identities
        return {"stage": stage, "next_step": step, "epoch": consumed // n, "identity_in_epoch": consumed % n}

    def global_samples(self, stage: str, step: int) -> tuple[list[int], list[int]]:
        """Sample indices of the global batch and their identity slot (0..identities-1)."""
        gen = step_generator(self.cfg.seed, stage, step, "photos")
        samples, slots = [], []
        for slot, ident in enumerate(self._identities_for(stage, step)):
            photos = self.dataset.by_identity[ident]
            order = torch.randperm(len(photos), generator=gen).tolist()
            for j in range(self.photos):
                samples.append(photos[order[j % len(order)]])
                slots.append(slot)
        return samples, slots

    def batch(self, stage: str, step: int, with_base: bool) -> Batch:
        samples, slots = self.global_samples(stage, step)
        per_rank = len(samples) // self.world
        lo, hi = self.rank * per_rank, (self.rank + 1) * per_rank
        loaded = [self.dataset.load(i, with_base) for i in samples[lo:hi]]
        gsize = len(samples)

        first = loaded[0]["latent"]
        for item, idx in zip(loaded, samples[lo:hi]):
            if item["latent"].shape != first.shape:
                raise HyperLoRAError(
                    f"sample '{self.dataset.samples[idx]['key']}' has latent shape {list(item['latent'].shape)}, others "
                    f"{list(first.shape)}; prepare all photos at one resolution."
                )
        t = self.cfg.train
        gen = step_generator(self.cfg.seed, stage, step, "noise")
        noise = torch.randn((gsize, *first.shape), generator=gen)
        if t.loss.noise_offset:
            noise = noise + t.loss.noise_offset * torch.randn((gsize, first.shape[0], 1, 1), generator=gen)
        timesteps = torch.randint(t.loss.t_min, t.loss.t_max, (gsize,), generator=gen)
        drop = torch.rand((3, gsize), generator=step_generator(self.cfg.seed, stage, step, "dropout"))
        drop_text = drop[0] < self.cfg.text_dropout_for(stage)
        drop_face = drop[1] < t.dropout.face
        drop_base = drop[2] < t.dropout.base_lora

        cond = {k: torch.stack([x["cond"][k] for x in loaded]) for k in loaded[0]["cond"]}
        sl = slice(lo, hi)
        dt = drop_text[sl]
        if dt.any():
            for k, empty in self.empty.items():
                cond[k][dt] = empty.to(cond[k].dtype)
        local_slots = torch.tensor(slots[lo:hi])
        local_slots = local_slots - local_slots.min()
        dev = self.device
        return Batch(
            latents=torch.stack([x["latent"] for x in loaded]).to(dev),
            cond={k: v.to(dev) for k, v in cond.items()},
            face=(torch.stack([x["face"] for x in loaded]).float() / 255.0).to(dev),
            base=(torch.stack([x["base"] for x in loaded]).float() / 255.0).to(dev) if with_base else None,
            arcface=torch.stack([x["arcface"] for x in loaded]).to(dev),
            groups=local_slots.to(dev),
            num_groups=int(local_slots.max()) + 1,
            noise=noise[sl].to(dev),
            timesteps=timesteps[sl].to(dev),
            drop_text=dt.to(dev),
            drop_face=drop_face[sl].to(dev),
            drop_base=drop_base[sl].to(dev),
            global_index=torch.arange(lo, hi),
            sample_ids=samples[lo:hi],
        )
