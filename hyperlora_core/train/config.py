"""The trainer's YAML config: dataclasses, strict validation, stage order and prerequisites.

Every key is known: an unknown or misspelt key is an error naming the key and the allowed ones,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import HyperLoRAError

PARTS: tuple[str, ...] = ("id_projector", "id_resampler", "id_basis", "base_resampler", "base_basis")
BASE_PARTS: tuple[str, ...] = ("base_resampler", "base_basis")


@dataclass(frozen=True)
class StageSpec:
    """What one training stage trains, freezes and feeds: the only place a stage is described.

    Code elsewhere asks these fields, never the stage's name, so a new stage is a new row.
    """

    name: str
    trains: tuple[str, ...]
    """Default trainable parts (a stage's `trainable` overrides it); every other part is frozen."""
    id_lora: bool
    """Makes an ID-LoRA from the face crops' CLIP tokens (and trains it)."""
    face_embedding: bool
    """Feeds the ArcFace embedding into the face stream; without it the stream's parameters stay frozen."""
    base_lora: str
    """How the Base-LoRA takes part: `trained` (alone, full strength), `frozen` (added at the stage's
    `base_strength`, dropped per sample with `dropout.base_lora`) or `teacher` (only inside the teacher)."""
    builds_on: tuple[str, ...] = ()
    """Earlier stages whose result it starts from: the first one this model can have must have finished."""
    needs_base_branch: bool = False
    """Only possible with a Base-LoRA branch (`hypernetwork.base_rank`)."""
    starts_face_stream: bool = False
    """Switches the face stream on (`zero_init_face_stream` applies to it)."""
    teacher: str | None = None
    """The stage whose result is the frozen teacher the student (ID-LoRA alone) matches."""


STAGES: tuple[StageSpec, ...] = (
    StageSpec("base", trains=BASE_PARTS, id_lora=False, face_embedding=False, base_lora="trained",
              needs_base_branch=True),
    StageSpec("clip_id", trains=("id_resampler", "id_basis"), id_lora=True, face_embedding=False, base_lora="frozen",
              builds_on=("base",)),
    StageSpec("arcface_id", trains=("id_projector", "id_resampler", "id_basis"), id_lora=True, face_embedding=True,
              base_lora="frozen", builds_on=("clip_id",), starts_face_stream=True),
    StageSpec("distill", trains=("id_projector", "id_resampler", "id_basis"), id_lora=True, face_embedding=True,
              base_lora="teacher", builds_on=("arcface_id",), needs_base_branch=True, teacher="arcface_id"),
)
"""The stages, in the order they run."""
STAGE: dict[str, StageSpec] = {s.name: s for s in STAGES}
STAGE_ORDER: tuple[str, ...] = tuple(STAGE)


@dataclass(frozen=True)
class DataConfig:
    shards: str = ""
    """Folder written by `prepare` (index.json + .tar shards)."""
    verify: str = "quick"
    """quick: shard sizes; full: also the sha256 of every shard. Every read checks a CRC either way."""


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "tiny"
    """A registered backbone (`comfy_bridge.backbone`): tiny (seeded stand-ins of `base`'s architecture),
    checkpoint (a model .safetensors, or split files) or toy (the toy world; `checkpoint` is then its folder)."""
    base: str | None = None
    """The base model's profile (`comfy_bridge.bases`: sdxl, sd15, flux, zimage). Default: detected from the
    checkpoint (or the diffusion model); for `tiny`, sdxl."""
    checkpoint: str | None = None
    """One file holding the diffusion model, its text encoders and VAE (ComfyUI's models/checkpoints)."""
    diffusion_model: str | None = None
    """The split form instead of `checkpoint` (how FLUX and Z-Image ship): the diffusion model file (ComfyUI's
    models/diffusion_models); the base is detected from it."""
    text_encoders: tuple[str, ...] = ()
    """Split form: the base's text encoder files (ComfyUI's models/text_encoders), e.g. FLUX's CLIP-L and T5-XXL;
    used by prepare, finetune on photos and fit's sample grids."""
    vae: str | None = None
    """Split form: the VAE file (ComfyUI's models/vae); used where the text encoders are."""
    clip_vision: str | None = None
    """CLIP ViT-L/14 vision tower (.safetensors, ComfyUI clip_vision format)."""
    tiny_seed: int = 0


@dataclass(frozen=True)
class ResamplerSettings:
    dim: int = 1024
    depth: int = 4
    heads: int = 12
    dim_head: int = 64
    ff_mult: int = 4


@dataclass(frozen=True)
class HypernetworkConfig:
    init: str | None = None
    """Start from this HyperLoRA checkpoint (published folder or single file) instead of random."""
    basis_size: int = 128
    rank: int = 8
    base_rank: int | None = 4
    """Rank of the Base-LoRA branch; null trains without it (no base and distill stages)."""
    id_tokens: int = 16
    face_embed_dim: int = 512
    resampler: ResamplerSettings = field(default_factory=ResamplerSettings)
    base_resampler: ResamplerSettings = field(default_factory=ResamplerSettings)
    modules: str = "from_model"
    """from_model (the base's layers `lora.targets` selects) or a hyper_lora_modules.json path."""


@dataclass(frozen=True)
class LoRATargets:
    targets: tuple[str, ...] | None = None
    """Which linear layers get a LoRA (`hypernetwork.modules: from_model`): each entry a target set of the base
    (`attention`: every attn1/attn2 projection of SDXL and SD1.5; FLUX's and Z-Image's in their profiles) or a regular
    expression over kohya layer names (e.g. `_attn2_to_[kv]$`); null: the base's default set."""


@dataclass(frozen=True)
class BatchConfig:
    identities: int = 2
    photos_per_identity: int = 2
    """Global batch = identities x photos_per_identity, split over processes by identity."""


@dataclass(frozen=True)
class LossConfig:
    objective: str = "eps"
    """eps | v | x0: the weight on the x0 error is 1/sigma^2, 1 + 1/sigma^2 or 1."""
    min_snr_gamma: float | None = None
    """If set, the weight becomes min(SNR, gamma) with SNR = 1/sigma^2 (min-SNR weighting)."""
    t_min: int = 0
    t_max: int = 1000
    noise_offset: float = 0.0


@dataclass(frozen=True)
class DropoutConfig:
    text: float = 0.05
    """Caption replaced by the empty caption (classifier-free guidance)."""
    face: float = 0.05
    """ArcFace embedding zeroed (arcface stages)."""
    base_lora: float = 0.0
    """Base-LoRA switched off for a sample in the ID stages (the paper's LoRA-part toggling)."""


@dataclass(frozen=True)
class OptimizerConfig:
    kind: str = "adamw"
    """adamw | sgd. SGD (with `momentum`) moves each weight in proportion to its gradient, so two
    runs that differ only in float rounding stay that close: what equivalence checks compare."""
    lr: float = 1e-4
    basis_lr: float | None = None
    """Learning rate of the LoRA bases (default: lr)."""
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.0
    """sgd only."""
    grad_clip: float | None = 1.0


@dataclass(frozen=True)
class SchedulerConfig:
    kind: str = "constant"
    """constant | cosine (to 0 at the stage's last step), after a linear warm-up."""
    warmup_steps: int = 0


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 500
    keep_last: int = 2


@dataclass(frozen=True)
class LogConfig:
    every: int = 10
    progress_bar: bool = True
    tensorboard: bool = True


@dataclass(frozen=True)
class SamplesConfig:
    every: int = 0
    """Steps between sample grids (0: only at the end of each stage; -1: never)."""
    identities: int = 2
    prompts: tuple[str, ...] = ("a photo of a person", "a portrait photo of a person, oil painting")
    steps: int = 8
    cfg: float = 4.0
    seed: int = 0
    size: int = 1024


@dataclass(frozen=True)
class TrainConfig:
    precision: str = "fp32"
    """fp32 | bf16 | fp16: autocast dtype of the forward passes (weights stay fp32)."""
    gradient_checkpointing: bool = False
    distributed: str = "ddp"
    """ddp | fsdp2 (shards the hypernetwork; the frozen UNet is replicated). One process: neither."""
    batch: BatchConfig = field(default_factory=BatchConfig)
    references: str = "other_photos"
    """Which photos make a target's ID-LoRA: other_photos (of the same identity in the batch, the
    target itself if it is alone), same_photo, or same_identity (all, target included)."""
    loss: LossConfig = field(default_factory=LossConfig)
    dropout: DropoutConfig = field(default_factory=DropoutConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)


@dataclass(frozen=True)
class StageConfig:
    steps: int = 100
    lr: float | None = None
    basis_lr: float | None = None
    warmup_steps: int | None = None
    decay_steps: int = 0
    """Last steps of the stage over which the lr falls to 0 along a cosine (0: none). Steps before
    them are untouched, so lengthening a finished stage with a tail keeps its first steps exact."""
    trainable: tuple[str, ...] | None = None
    """Parts trained in this stage (default: the stage's `StageSpec.trains`)."""
    base_strength: float = 1.0
    """Strength of the frozen Base-LoRA during the ID stages (0 switches it off)."""
    base_fraction: float = 0.25
    """distill only: teacher = ID-LoRA + base_fraction x Base-LoRA, student = ID-LoRA."""
    zero_init_face_stream: bool = True
    """arcface_id only: zero the face cross-attention outputs when the stage starts fresh, so the
    first step reproduces the CLIP-only model and the face stream grows in smoothly."""
    text_dropout: float | None = None
    """This stage's caption dropout (default `train.dropout.text`). A Base warm-up at 1.0 sees only
    empty captions, so the Base-LoRA alone must carry background and clothing."""
    objective: str | None = None
    """This stage's loss objective (default `train.loss.objective`); it also switches min-SNR weighting
    off for the stage. x0 weights every noise level alike; eps starves the high-noise steps where a
    background's colour is decided."""


@dataclass(frozen=True)
class FitConfig:
    run_dir: str
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    hypernetwork: HypernetworkConfig = field(default_factory=HypernetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stages: dict[str, StageConfig] = field(default_factory=dict)
    lora: LoRATargets = field(default_factory=LoRATargets)
    seed: int = 0
    source: str = ""
    """The YAML text this config came from (stored in checkpoints and exports)."""

    def stage_names(self) -> list[str]:
        return [s for s in STAGE_ORDER if s in self.stages]

    def trainable(self, stage: str) -> tuple[str, ...]:
        return self.stages[stage].trainable or STAGE[stage].trains

    def loss_for(self, stage: str) -> LossConfig:
        """`train.loss` with the stage's own objective, if it sets one (which also replaces min-SNR weighting)."""
        objective = self.stages[stage].objective
        if objective is None:
            return self.train.loss
        return dataclasses.replace(self.train.loss, objective=objective, min_snr_gamma=None)

    def text_dropout_for(self, stage: str) -> float:
        value = self.stages[stage].text_dropout
        return self.train.dropout.text if value is None else value


# -- strict loading ---------------------------------------------------------------------------
def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _convert(value, tp, where: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise HyperLoRAError(f"config: '{where}' must be a list; found {value!r}.")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise HyperLoRAError(f"config: '{where}' must have {len(args)} entries; found {len(value)}.")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise HyperLoRAError(f"config: '{where}' must be a mapping; found {value!r}.")
        return {str(k): _convert(v if v is not None else {}, val_t, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)  # YAML reads 1e-4 as a string
        except ValueError:
            number = None
        if number is not None and not math.isfinite(number):
            raise HyperLoRAError(f"config: '{where}' must be a finite number; found {value!r}.")
        if number is not None:
            return number
    if tp in (int, str, bool) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise HyperLoRAError(f"config: '{where}' must be {_type_name(tp)}; found {value!r}.")


def _build(cls, raw, where: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise HyperLoRAError(f"config: '{where or 'top level'}' must be a mapping; found {raw!r}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    unknown = [k for k in raw if k not in names]
    if unknown:
        place = f"in '{where}'" if where else "at the top level"
        raise HyperLoRAError(
            f"config: unknown key '{unknown[0]}' {place}; allowed keys: {', '.join(names)}."
        )
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            values[f.name] = _convert(raw[f.name], hints[f.name], f"{where}.{f.name}" if where else f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise HyperLoRAError(f"config: '{where + '.' if where else ''}{f.name}' is required.")
    return cls(**values)


def _choice(value: str, allowed: tuple[str, ...], where: str) -> None:
    if value not in allowed:
        raise HyperLoRAError(f"config: '{where}' is '{value}'; allowed: {', '.join(allowed)}.")


def _check_optimizer(o: OptimizerConfig, where: str) -> None:
    """Ranges torch checks only for its own defaults (AdamW accepts a negative lr per group)."""
    if o.lr <= 0 or (o.basis_lr is not None and o.basis_lr <= 0):
        raise HyperLoRAError(f"config: {where}.lr and basis_lr must be > 0; found {o.lr} and {o.basis_lr}.")
    if o.weight_decay < 0 or o.eps <= 0:
        raise HyperLoRAError(f"config: {where}.weight_decay must be >= 0 and eps > 0; found {o.weight_decay} and {o.eps}.")
    if not all(0.0 <= b < 1.0 for b in o.betas) or not 0.0 <= o.momentum < 1.0:
        raise HyperLoRAError(f"config: {where}.betas and momentum must be in [0, 1); found {list(o.betas)} and {o.momentum}.")
    if o.grad_clip is not None and o.grad_clip <= 0:
        raise HyperLoRAError(f"config: {where}.grad_clip must be > 0 (or null for no clipping); found {o.grad_clip}.")


def _check_model_files(m: ModelConfig, kind) -> None:
    """One checkpoint or the split form (`diffusion_model` with `text_encoders`, `vae`), as the backbone reads."""
    split = [f"model.{k}" for k in ("diffusion_model", "text_encoders", "vae") if getattr(m, k)]
    if split and not kind.split_files:
        raise HyperLoRAError(f"config: {', '.join(split)} set, but backbone '{m.backbone}' reads no split model files; "
                             "remove them (they are for backbone 'checkpoint').")
    if not kind.needs_checkpoint:
        return
    if not kind.split_files:
        if not m.checkpoint:
            raise HyperLoRAError(f"config: model.backbone is '{m.backbone}' but model.checkpoint is not set.")
        return
    if m.checkpoint and m.diffusion_model:
        raise HyperLoRAError("config: model.checkpoint and model.diffusion_model are both set; set model.checkpoint "
                             "to one file holding everything, or model.diffusion_model (with model.text_encoders and "
                             "model.vae) to split files, not both.")
    if not m.diffusion_model and (m.text_encoders or m.vae):
        raise HyperLoRAError("config: model.text_encoders and model.vae belong to split files and need "
                             "model.diffusion_model; a checkpoint's own are used with model.checkpoint. Set "
                             "model.diffusion_model instead of model.checkpoint, or remove them.")
    if not m.checkpoint and not m.diffusion_model:
        raise HyperLoRAError(f"config: model.backbone is '{m.backbone}' but neither model.checkpoint (one file) nor "
                             "model.diffusion_model (split files) is set.")


def validate(cfg: FitConfig) -> FitConfig:
    """Value checks that types alone cannot express (choices, ranges, stage names)."""
    t = cfg.train
    from ..comfy_bridge.backbone import backbone_kind
    from ..comfy_bridge.bases import profile_named

    _check_model_files(cfg.model, backbone_kind(cfg.model.backbone))
    if cfg.model.base is not None:
        profile_named(cfg.model.base, "config: model.base")
    if cfg.lora.targets is not None and not cfg.lora.targets:
        raise HyperLoRAError("config: lora.targets is empty; list a target set (e.g. attention) or regexes.")
    _choice(cfg.data.verify, ("quick", "full"), "data.verify")
    _choice(t.precision, ("fp32", "bf16", "fp16"), "train.precision")
    _choice(t.distributed, ("ddp", "fsdp2"), "train.distributed")
    _choice(t.references, ("other_photos", "same_photo", "same_identity"), "train.references")
    _choice(t.loss.objective, ("eps", "v", "x0"), "train.loss.objective")
    _choice(t.scheduler.kind, ("constant", "cosine"), "train.scheduler.kind")
    _choice(t.optimizer.kind, ("adamw", "sgd"), "train.optimizer.kind")
    if not 0 <= t.loss.t_min < t.loss.t_max <= 1000:
        raise HyperLoRAError(f"config: need 0 <= train.loss.t_min < t_max <= 1000; found {t.loss.t_min}, {t.loss.t_max}.")
    for name in ("text", "face", "base_lora"):
        p = getattr(t.dropout, name)
        if not 0.0 <= p <= 1.0:
            raise HyperLoRAError(f"config: train.dropout.{name} must be in [0, 1]; found {p}.")
    _check_optimizer(t.optimizer, "train.optimizer")
    if t.loss.min_snr_gamma is not None and t.loss.min_snr_gamma <= 0:
        raise HyperLoRAError(f"config: train.loss.min_snr_gamma must be > 0 (or null for none); found {t.loss.min_snr_gamma}.")
    if t.loss.noise_offset < 0:
        raise HyperLoRAError(f"config: train.loss.noise_offset must be >= 0; found {t.loss.noise_offset}.")
    if t.scheduler.warmup_steps < 0 or t.log.every < 1:
        raise HyperLoRAError("config: train.scheduler.warmup_steps must be >= 0 and train.log.every >= 1.")
    if t.samples.steps < 1 or t.samples.identities < 1 or t.samples.size < 8:
        raise HyperLoRAError("config: train.samples needs steps >= 1, identities >= 1 and size >= 8.")
    if t.batch.identities < 1 or t.batch.photos_per_identity < 1:
        raise HyperLoRAError("config: train.batch.identities and photos_per_identity must be >= 1.")
    if t.checkpoint.every < 1 or t.checkpoint.keep_last < 1:
        raise HyperLoRAError("config: train.checkpoint.every and keep_last must be >= 1.")
    if not cfg.stages:
        raise HyperLoRAError(f"config: 'stages' is empty; list at least one of {', '.join(STAGE_ORDER)}.")
    for name, st in cfg.stages.items():
        if name not in STAGE_ORDER:
            raise HyperLoRAError(f"config: unknown stage '{name}'; allowed stages: {', '.join(STAGE_ORDER)}.")
        if st.steps < 1:
            raise HyperLoRAError(f"config: stages.{name}.steps must be >= 1; found {st.steps}.")
        if not 0 <= st.decay_steps <= st.steps:
            raise HyperLoRAError(
                f"config: stages.{name}.decay_steps must be between 0 and the stage's steps ({st.steps}); "
                f"found {st.decay_steps}."
            )
        for key in ("lr", "basis_lr"):
            value = getattr(st, key)
            if value is not None and value <= 0:
                raise HyperLoRAError(f"config: stages.{name}.{key} must be > 0; found {value}. Leave it out to use train.optimizer.{key}.")
        if st.warmup_steps is not None and st.warmup_steps < 0:
            raise HyperLoRAError(f"config: stages.{name}.warmup_steps must be >= 0; found {st.warmup_steps}.")
        if st.objective is not None:
            _choice(st.objective, ("eps", "v", "x0"), f"stages.{name}.objective")
        if st.text_dropout is not None and not 0.0 <= st.text_dropout <= 1.0:
            raise HyperLoRAError(f"config: stages.{name}.text_dropout must be between 0 and 1; found {st.text_dropout}.")
        if st.base_strength < 0 or st.base_fraction < 0:
            raise HyperLoRAError(f"config: stages.{name}.base_strength and base_fraction must be >= 0.")
        for part in st.trainable or ():
            if part not in PARTS:
                raise HyperLoRAError(f"config: stages.{name}.trainable has '{part}'; allowed: {', '.join(PARTS)}.")
        if STAGE[name].needs_base_branch and cfg.hypernetwork.base_rank is None:
            raise HyperLoRAError(
                f"config: stage '{name}' needs the Base-LoRA branch but hypernetwork.base_rank is null; "
                f"set a base rank (e.g. {max(1, cfg.hypernetwork.rank // 2)}) or remove the stage."
            )
    return cfg


def load_config(path: str | Path, overrides: dict | list[str] | None = None) -> FitConfig:
    """Read and validate a YAML config; relative paths in it are taken relative to the file."""
    p = Path(path)
    if not p.is_file():
        raise HyperLoRAError(f"config file '{p}' does not exist.")
    text = p.read_text(encoding="utf-8")
    return parse_config(text, base_dir=p.parent, overrides=overrides)


def parse_overrides(items: list[str]) -> dict:
    """`["train.batch.identities=4", "stages.base.steps=10"]` -> nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise HyperLoRAError(f"override '{item}' must look like key.path=value.")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def _merge(base, extra):
    if isinstance(base, dict) and isinstance(extra, dict):
        merged = dict(base)
        for k, v in extra.items():
            merged[k] = _merge(base.get(k), v) if k in base else v
        return merged
    return extra


def parse_config(text: str, base_dir: str | Path = ".", overrides: dict | list[str] | None = None) -> FitConfig:
    """Parse YAML text; `overrides` (nested dict or key.path=value strings) replace values in it."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HyperLoRAError(f"config: not valid YAML ({exc}).") from None
    if overrides:
        extra = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        raw = _merge(raw or {}, extra)
        text = yaml.safe_dump(raw, sort_keys=False)
    cfg = _build(FitConfig, raw, "")
    base = Path(base_dir)

    def resolve(v: str | None) -> str | None:
        return str((base / v).resolve()) if v and not Path(v).is_absolute() else v

    cfg = dataclasses.replace(
        cfg,
        run_dir=resolve(cfg.run_dir),
        data=dataclasses.replace(cfg.data, shards=resolve(cfg.data.shards)),
        model=dataclasses.replace(cfg.model, checkpoint=resolve(cfg.model.checkpoint), clip_vision=resolve(cfg.model.clip_vision),
                                  diffusion_model=resolve(cfg.model.diffusion_model), vae=resolve(cfg.model.vae),
                                  text_encoders=tuple(resolve(p) for p in cfg.model.text_encoders)),
        hypernetwork=dataclasses.replace(
            cfg.hypernetwork,
            init=resolve(cfg.hypernetwork.init),
            modules=cfg.hypernetwork.modules if cfg.hypernetwork.modules == "from_model" else resolve(cfg.hypernetwork.modules),
        ),
        source=text,
    )
    return validate(cfg)


def prerequisite(stage: str, cfg: FitConfig) -> str | None:
    """The stage that must have finished before `stage` starts (None: it may start from scratch).

    An earlier stage that needs the Base-LoRA branch is passed over when there is none, or when
    `stage` trains the Base-LoRA itself (the "no Base warm-up" ablation trains both branches together)."""
    has_base = cfg.hypernetwork.base_rank is not None
    trains_base = bool(set(BASE_PARTS) & set(cfg.trainable(stage)))
    for earlier in STAGE[stage].builds_on:
        if not STAGE[earlier].needs_base_branch or (has_base and not trains_base):
            return earlier
    return None
