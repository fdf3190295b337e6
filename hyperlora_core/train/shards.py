"""The prepared dataset on disk: webdataset tar shards plus an index for random access.

Each sample is one photo, stored as tar members `{key}.{ext}` (webdataset's convention, so any
webdataset tool can stream the shards):

    json          identity, caption, the crop's geometry (orig_hw, crop_tl, target_hw), face box, 106 landmarks
    latent.npy    VAE latent of the target crop, fp16 [C, H/8, W/8] (as `VAE.encode` returns it; C is the
                  base's latent channels: 4 for SD1.5 / SDXL, 16 for FLUX / Z-Image)
    <key>.npy     the caption's conditioning, one member per key of the base profile's text conditioning,
                  fp16 (`context` is stored as text.npy [tokens, width]: SDXL [77, 2048]; SDXL adds
                  pooled.npy, FLUX pooled.npy and guidance.npy)
    arcface.npy   normed ArcFace embedding, fp32 [512]
    face.png      224x224 ID crop (grey background), the CLIP vision input of the ID branch
    base.png      224x224 face-blurred crop, the CLIP vision input of the Base-LoRA branch

`index.json` lists every sample's members with their byte offset, size and CRC32 inside the tar,
and every shard's size and sha256, so the trainer reads any sample directly (deterministic
batches at any world size, exact resume) and detects a damaged shard on the first bad read.
Frozen-encoder outputs that belong to the dataset (the empty caption's conditioning for text
dropout, `empty_<member>`) live next to it in `dataset.safetensors`. The index's info names the
base (`base`) and the conditioning keys (`conditioning`); shards written before base profiles carry
neither and are SDXL's (text + pooled). What the crop geometry adds (SDXL's sizes) is computed by the
profile when a sample is read (`BaseProfile.image_conditioning`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import temporaries
from ..comfy_bridge.bases import Conditioning, profile_named
from ..config import LEGACY_BASE
from ..errors import HyperLoRAError, os_error_message
from ..safetensors_io import load_tensors, save_tensors_atomic

INDEX_FILE = "index.json"
DATASET_TENSORS = "dataset.safetensors"
INDEX_VERSION = 1
NPY_MEMBERS = ("latent.npy", "arcface.npy")
PNG_MEMBERS = ("face.png", "base.png")
LEGACY_CONDITIONING = ("context", "pooled")
"""The conditioning keys of shards written before base profiles (SDXL's)."""


def member(key: str) -> str:
    """The tar member stem (and `empty_<stem>` tensor) of a conditioning key: the context is `text`, as it
    always was; other keys are their own name."""
    return "text" if key == "context" else key


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class SampleRecord:
    """One photo's cached data (numpy arrays) and its metadata."""

    key: str
    meta: dict
    latent: np.ndarray
    cond: dict[str, np.ndarray]
    """The caption's conditioning (the profile's text keys), one sample, no batch axis."""
    arcface: np.ndarray
    face: np.ndarray
    base: np.ndarray | None = None


class ShardWriter:
    """Writes samples into tar shards of at most `per_shard` samples and builds the index."""

    def __init__(self, folder: str | Path, per_shard: int = 1000) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.per_shard = per_shard
        self.samples: list[dict] = []
        self.shards: dict[str, dict] = {}
        self._tar: tarfile.TarFile | None = None
        self._name = ""
        self._count = 0

    def _open(self) -> None:
        self._name = f"shard-{len(self.shards):06d}.tar"
        self._temporary = contextlib.ExitStack()  # removed on close, on SIGTERM, or by a later sweep
        self._tmp = self._temporary.enter_context(temporaries.temporary(self.folder, self._name))
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)
        self.shards[self._name] = {}
        self._count = 0

    def _close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        final = self.folder / self._name
        with self._temporary:
            os.chmod(self._tmp, temporaries.file_mode())
            os.replace(self._tmp, final)
        self.shards[self._name] = {"size": final.stat().st_size, "sha256": _sha256(final)}
        self._tar = None

    def _failed(self, exc: OSError) -> HyperLoRAError:
        """Drop the shard being written (its temporary too) and say which file could not be written."""
        if self._tar is not None:
            with contextlib.suppress(OSError):
                self._tar.close()
            self._tar = None
            self._temporary.close()
        return HyperLoRAError(os_error_message(self.folder / self._name, exc, "write"))

    def add(self, rec: SampleRecord) -> None:
        try:
            self._add(rec)
        except OSError as exc:  # disk full, read-only: our message naming the shard, not tarfile's
            raise self._failed(exc) from None

    def _add(self, rec: SampleRecord) -> None:
        if self._tar is None or self._count >= self.per_shard:
            self._close()
            self._open()
        members = {
            "json": json.dumps({**rec.meta, "key": rec.key}).encode(),
            "latent.npy": _npy_bytes(rec.latent.astype(np.float16)),
            **{f"{member(k)}.npy": _npy_bytes(v.astype(np.float16)) for k, v in rec.cond.items()},
            "arcface.npy": _npy_bytes(rec.arcface.astype(np.float32)),
            "face.png": _png_bytes(rec.face),
        }
        if rec.base is not None:
            members["base.png"] = _png_bytes(rec.base)
        where = {}
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{rec.key}.{ext}")
            info.size = len(data)
            self._tar.addfile(info, io.BytesIO(data))
            offset = self._tar.offset - tarfile.BLOCKSIZE * ((len(data) + tarfile.BLOCKSIZE - 1) // tarfile.BLOCKSIZE)
            where[ext] = [offset, len(data), zlib.crc32(data)]
        self.samples.append({"key": rec.key, "identity": rec.meta["identity"], "shard": self._name, "members": where})
        self._count += 1

    def finish(self, empty: Conditioning, info: dict, base: str) -> Path:
        """Close the last shard, write dataset.safetensors (`empty`: the empty caption's conditioning, batch
        of one) and then the index (last, atomically); `base` is the profile that made the conditioning."""
        try:
            self._close()
        except OSError as exc:
            raise self._failed(exc) from None
        tensors = {f"empty_{member(k)}": v[0].contiguous() for k, v in empty.items()}
        info = {**info, "base": base, "conditioning": list(empty)}
        save_tensors_atomic(tensors, self.folder / DATASET_TENSORS, {"hyperlora.dataset": json.dumps(info)})
        index = {"version": INDEX_VERSION, "info": info, "shards": self.shards, "samples": self.samples}
        with temporaries.replacing(self.folder / INDEX_FILE) as tmp:
            tmp.write_text(json.dumps(index), encoding="utf-8")
        return self.folder / INDEX_FILE


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ShardDataset:
    """Random access to the samples of a prepared dataset, with integrity checks."""

    def __init__(self, folder: str | Path, verify: str = "quick") -> None:
        self.folder = Path(folder)
        index_path = self.folder / INDEX_FILE
        if not index_path.is_file():
            raise HyperLoRAError(
                f"{self.folder}: no {INDEX_FILE}; this is not a prepared dataset. Run "
                "`python -m hyperlora_core.train prepare` on your photos first (data.shards points at its output)."
            )
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise HyperLoRAError(f"{index_path}: corrupt index ({exc}); run prepare again.") from None
        if index.get("version") != INDEX_VERSION:
            raise HyperLoRAError(f"{index_path}: index version {index.get('version')}, expected {INDEX_VERSION}; run prepare again.")
        self.info: dict = index["info"]
        self.base = profile_named(self.info.get("base", LEGACY_BASE), f"{index_path}: info.base")
        self.text_keys: tuple[str, ...] = tuple(self.info.get("conditioning", LEGACY_CONDITIONING))
        """The conditioning keys stored per sample (what text dropout replaces with `empty`)."""
        self.samples: list[dict] = index["samples"]
        self.shards: dict[str, dict] = index["shards"]
        if not self.samples:
            raise HyperLoRAError(
                f"{self.folder}: the dataset is empty (0 samples). prepare found no usable photo; see its report "
                "(photos need exactly one face)."
            )
        self._check_shards(verify)
        self.tensors = load_tensors(self.folder / DATASET_TENSORS)
        self.empty: Conditioning = {k: self.tensors[f"empty_{member(k)}"].float() for k in self.text_keys}
        """The empty caption's conditioning, one sample."""
        identities = sorted({s["identity"] for s in self.samples})
        self.identity_ids = {name: i for i, name in enumerate(identities)}
        self.by_identity: list[list[int]] = [[] for _ in identities]
        for i, s in enumerate(self.samples):
            self.by_identity[self.identity_ids[s["identity"]]].append(i)
        self._files: dict[str, object] = {}

    @property
    def has_base(self) -> bool:
        return "base.png" in self.samples[0]["members"]

    @property
    def num_identities(self) -> int:
        return len(self.by_identity)

    def _check_shards(self, verify: str) -> None:
        for name, info in self.shards.items():
            path = self.folder / name
            if not path.is_file():
                raise HyperLoRAError(f"{path}: shard listed in {INDEX_FILE} is missing; restore it or run prepare again.")
            size = path.stat().st_size
            if size != info["size"]:
                raise HyperLoRAError(
                    f"{path}: shard is corrupt ({size} bytes, the index says {info['size']}); it was truncated or "
                    "overwritten. Restore it or run prepare again."
                )
            if verify == "full" and _sha256(path) != info["sha256"]:
                raise HyperLoRAError(f"{path}: shard is corrupt (sha256 differs from the index); restore it or run prepare again.")

    def _read(self, sample: dict, member: str) -> bytes:
        shard = sample["shard"]
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = open(self.folder / shard, "rb")  # noqa: SIM115 - kept open for reuse
        offset, size, crc = sample["members"][member]
        f.seek(offset)
        data = f.read(size)
        if len(data) != size or zlib.crc32(data) != crc:
            raise HyperLoRAError(
                f"{self.folder / shard}: shard is corrupt: member '{sample['key']}.{member}' fails its checksum. "
                "Restore the shard or run prepare again."
            )
        return data

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def load(self, i: int, with_base: bool) -> dict:
        """Sample `i` as tensors: latent, arcface, face [224,224,3] uint8 (base), meta, and `cond`: its
        conditioning by the profile's keys (the caption's, then what its crop geometry adds)."""
        s = self.samples[i]
        out = {}
        for m in (*NPY_MEMBERS, *(f"{member(k)}.npy" for k in self.text_keys)):
            try:
                out[m.split(".")[0]] = torch.from_numpy(np.load(io.BytesIO(self._read(s, m)), allow_pickle=False).astype(np.float32))
            except (ValueError, OSError) as exc:
                raise HyperLoRAError(f"{self.folder / s['shard']}: member '{s['key']}.{m}' cannot be decoded ({exc}).") from None
        pngs = ("face.png", "base.png") if with_base else ("face.png",)
        for m in pngs:
            out[m.split(".")[0]] = torch.from_numpy(np.array(Image.open(io.BytesIO(self._read(s, m))).convert("RGB")))
        meta = json.loads(self._read(s, "json"))
        out["cond"] = {k: out.pop(member(k)) for k in self.text_keys}
        out["cond"].update(self.base.image_conditioning(meta["orig_hw"], meta["crop_tl"], meta["target_hw"]))
        out["meta"] = meta
        return out
