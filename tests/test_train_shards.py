"""Prepared datasets on disk: round trip, empty, missing and corrupt shards (clear errors, no half results)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.training import TINY_TRAIN_CONFIG as TINY

from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.train.config import load_config
from hyperlora_core.train.fit import fit
from hyperlora_core.train.shards import INDEX_FILE, SampleRecord, ShardDataset, ShardWriter

pytestmark = pytest.mark.usefixtures("one_thread")


def _record(i: int, rng: np.random.Generator) -> SampleRecord:
    return SampleRecord(
        key=f"s{i:03d}", meta={"identity": f"p{i % 2}", "caption": "c", "orig_hw": [64, 64], "crop_tl": [0, 0],
                               "target_hw": [64, 64]},
        latent=rng.normal(size=(4, 8, 8)).astype(np.float32),
        cond={"context": rng.normal(size=(77, 64)).astype(np.float32), "pooled": rng.normal(size=(32,)).astype(np.float32)},
        arcface=rng.normal(size=(512,)).astype(np.float32),
        face=rng.integers(0, 255, (224, 224, 3), dtype=np.uint8), base=rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
    )


def _write(folder: Path, n: int = 5) -> list[SampleRecord]:
    rng = np.random.default_rng(0)
    recs = [_record(i, rng) for i in range(n)]
    w = ShardWriter(folder, per_shard=2)
    for r in recs:
        w.add(r)
    w.finish({"context": torch.zeros(1, 77, 64), "pooled": torch.zeros(1, 32)}, {"backbone": "x"}, "sdxl")
    return recs


def test_round_trip_and_webdataset_layout(tmp_path):
    recs = _write(tmp_path)
    ds = ShardDataset(tmp_path, verify="full")
    assert len(ds.samples) == 5 and len(ds.shards) == 3 and ds.num_identities == 2 and ds.has_base
    for i, rec in enumerate(recs):
        item = ds.load(i, with_base=True)
        assert torch.equal(item["latent"], torch.from_numpy(rec.latent.astype(np.float16).astype(np.float32)))
        assert torch.equal(item["arcface"], torch.from_numpy(rec.arcface))
        assert torch.equal(item["face"], torch.from_numpy(rec.face)) and torch.equal(item["base"], torch.from_numpy(rec.base))
        assert item["cond"]["sizes"].tolist() == [64, 64, 0, 0, 64, 64]  # SDXL's crop numbers, from the json
        for key in ("context", "pooled"):
            assert torch.equal(item["cond"][key], torch.from_numpy(rec.cond[key].astype(np.float16).astype(np.float32)))
    ds.close()
    import webdataset as wds  # any webdataset reader sees the same samples

    keys = [s["__key__"] for s in wds.WebDataset(sorted(str(p) for p in tmp_path.glob("shard-*.tar")), shardshuffle=False)]
    assert keys == [r.key for r in recs]


def test_shards_from_before_base_profiles_read_as_sdxl(tmp_path):
    """An index without `base`/`conditioning` (every dataset prepared before profiles) is SDXL's: text.npy is
    the context, pooled.npy the pooled vector, and the crop numbers come back as SDXL's sizes."""
    recs = _write(tmp_path)
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["info"].pop("base") == "sdxl" and index["info"].pop("conditioning") == ["context", "pooled"]
    assert set(index["samples"][0]["members"]) >= {"text.npy", "pooled.npy"}  # the member names never changed
    (tmp_path / "index.json").write_text(json.dumps(index))
    ds = ShardDataset(tmp_path)
    assert ds.base.name == "sdxl" and set(ds.empty) == {"context", "pooled"}
    item = ds.load(0, with_base=False)
    assert set(item["cond"]) == {"context", "pooled", "sizes"}
    assert torch.equal(item["cond"]["pooled"], torch.from_numpy(recs[0].cond["pooled"].astype(np.float16).astype(np.float32)))
    ds.close()


def test_empty_dataset(tmp_path):
    ShardWriter(tmp_path).finish({"context": torch.zeros(1, 77, 64)}, {}, "sdxl")
    with pytest.raises(HyperLoRAError, match="the dataset is empty"):
        ShardDataset(tmp_path)
    with pytest.raises(HyperLoRAError, match="no index.json; this is not a prepared dataset"):
        ShardDataset(tmp_path / "nothing")


def test_truncated_or_missing_shard(tmp_path):
    _write(tmp_path)
    shard = tmp_path / "shard-000001.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(HyperLoRAError, match="shard-000001.tar: shard is corrupt"):
        ShardDataset(tmp_path)
    shard.unlink()
    with pytest.raises(HyperLoRAError, match="shard-000001.tar: shard listed in index.json is missing"):
        ShardDataset(tmp_path)


def _flip_latents(folder: Path) -> None:
    index = json.loads((folder / INDEX_FILE).read_text())
    for s in index["samples"]:
        offset, size, _ = s["members"]["latent.npy"]
        path = folder / s["shard"]
        raw = bytearray(path.read_bytes())
        raw[offset + size - 3] ^= 0xFF  # a data byte: same size, still a valid tar
        path.write_bytes(bytes(raw))


def test_corrupt_member_is_caught_on_read(tmp_path):
    _write(tmp_path)
    _flip_latents(tmp_path)
    ds = ShardDataset(tmp_path)  # sizes still match: only the per-member checksum can tell
    with pytest.raises(HyperLoRAError, match=r"shard is corrupt: member 's000.latent.npy' fails its checksum"):
        ds.load(0, with_base=False)
    with pytest.raises(HyperLoRAError, match="sha256 differs"):
        ShardDataset(tmp_path, verify="full")


def test_fit_on_a_corrupt_shard_fails_cleanly(tmp_path):
    from hyperlora_core.comfy_bridge.backbone import tiny_backbone
    from hyperlora_core.train.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", tiny_backbone(0), identities=2, photos=2)
    _flip_latents(tmp_path / "data")
    cfg = load_config(TINY, [f"run_dir={tmp_path / 'run'}", f"data.shards={tmp_path / 'data'}",
                             "train.log.progress_bar=false", "train.samples.every=-1"])
    with pytest.raises(HyperLoRAError, match="shard is corrupt"):
        fit(cfg)
    left = [p.relative_to(tmp_path / "run") for p in (tmp_path / "run").rglob("*") if p.is_file() or p.name.startswith(".")]
    assert not [p for p in left if p.suffix == ".safetensors" or "checkpoints" in p.parts], left
