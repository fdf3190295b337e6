"""DCP checkpoints: atomic writes, keep-last-K, restore, and a full disk (simulated) mid-write."""

from __future__ import annotations

import errno

import pytest
import torch
import torch.distributed.checkpoint.filesystem as dcp_fs

from hyperlora_core.config import DEFAULT_DIM_HEAD, HyperLoRAConfig, IDProjectorConfig, ModuleSpec, ResamplerConfig
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.train import checkpointing
from hyperlora_core.train.distributed import init_distributed
from hyperlora_core.train.objective import HyperStep
from hyperlora_core.train.setup import new_hyperlora


def _tiny_step() -> tuple[HyperStep, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    modules = (ModuleSpec.attention("lora_unet_a_attn1", 16, None), ModuleSpec.attention("lora_unet_a_attn2", 16, 8))
    rs = ResamplerConfig(dim=16, depth=1, num_queries=16, output_dim=4, ff_mult=2, heads=1,
                         dim_head=DEFAULT_DIM_HEAD, input_dims=(16, 8))
    cfg = HyperLoRAConfig(modules=modules, basis_size=4, rank=2, resampler=rs,
                          id_projector=IDProjectorConfig(embed_dim=8, num_tokens=2, token_dim=16))
    step = HyperStep(new_hyperlora(cfg, seed=0))
    opt = torch.optim.AdamW(step.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    return step, opt, sched


def _train(step, opt, sched, n: int) -> None:
    for _ in range(n):
        loss = sum(p.float().pow(2).sum() for p in step.parameters())
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()


def test_save_restore_and_keep_last(tmp_path):
    info = init_distributed()
    step, opt, sched = _tiny_step()
    for s in (1, 2, 3):
        _train(step, opt, sched, 1)
        checkpointing.save_checkpoint(tmp_path, s, step, opt, sched, info, {"stage": "t"}, keep_last=2)
    assert [p.name for p in checkpointing.list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    saved = {k: v.clone() for k, v in step.state_dict().items()}
    saved_avg = [opt.state[p]["exp_avg"].clone() for p in step.parameters()]

    other, opt2, sched2 = _tiny_step()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    trainer = checkpointing.load_checkpoint(tmp_path / "step-00000003", other, opt2, sched2, info)
    assert trainer["step"] == 3 and trainer["stage"] == "t"
    for k, v in other.state_dict().items():
        assert torch.equal(v, saved[k]), k
    for p, avg in zip(other.parameters(), saved_avg):
        assert torch.equal(opt2.state[p]["exp_avg"], avg)
    assert sched2.last_epoch == sched.last_epoch == 3


def test_model_weights_alone_need_no_optimizer(tmp_path):
    """Reading the trained weights of a checkpoint (e.g. for a held-out curve) builds no optimiser."""
    info = init_distributed()
    step, opt, sched = _tiny_step()
    _train(step, opt, sched, 2)
    checkpointing.save_checkpoint(tmp_path, 2, step, opt, sched, info, {"stage": "t"}, keep_last=1)
    fresh, _, _ = _tiny_step()
    checkpointing.load_model_weights(tmp_path / "step-00000002", fresh)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, step.state_dict()[k]), k
    with pytest.raises(HyperLoRAError, match="could not read the model weights"):
        checkpointing.load_model_weights(tmp_path / "missing", fresh)


def test_full_disk_while_writing_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    info = init_distributed()
    step, opt, sched = _tiny_step()
    _train(step, opt, sched, 1)
    checkpointing.save_checkpoint(tmp_path, 1, step, opt, sched, info, {}, keep_last=3)
    good = {k: v.clone() for k, v in step.state_dict().items()}
    _train(step, opt, sched, 1)

    real_write = dcp_fs._write_item
    calls = {"n": 0}

    def full_disk(transforms, stream, data, write_item, storage_key, fmt):
        calls["n"] += 1
        if calls["n"] > 3:  # some tensors made it to disk, then the device is full
            stream.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(transforms, stream, data, write_item, storage_key, fmt)

    monkeypatch.setattr(dcp_fs, "_write_item", full_disk)
    with pytest.raises(HyperLoRAError, match="^disk full writing checkpoint .*step-00000002: no space left") as err:
        checkpointing.save_checkpoint(tmp_path, 2, step, opt, sched, info, {}, keep_last=3)
    assert "step-00000001 is intact" in str(err.value)
    assert calls["n"] > 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000001"]  # no temp dir, no step 2
    monkeypatch.setattr(dcp_fs, "_write_item", real_write)

    fresh, opt2, sched2 = _tiny_step()
    checkpointing.load_checkpoint(checkpointing.latest_checkpoint(tmp_path), fresh, opt2, sched2, info)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, good[k]), k
