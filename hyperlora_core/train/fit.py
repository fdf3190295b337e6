"""`fit`: run the configured stages in order, each resumable on its own.

Layout of a run folder::

    <run_dir>/<stage>/checkpoints/step-XXXXXXXX/   DCP state (resume)
    <run_dir>/<stage>/final.safetensors            the stage's result (fp32 single file)
    <run_dir>/<stage>/losses.jsonl                  one line per logged step
    <run_dir>/<stage>/samples/step-XXXXXXXX.png     sample grids
    <run_dir>/tensorboard/<stage>/                  TensorBoard event files

A stage whose `final.safetensors` exists is done and skipped; otherwise it resumes from its newest
checkpoint, or starts from the previous stage's result.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch

from ..comfy_bridge.backbone import PARTS, Backbone, backbone_kind
from ..comfy_bridge.diffusion import Denoiser, euler_sample
from ..comfy_bridge.lora_hooks import LoRAHookState, LoRASet, attach_lora_hooks, deactivate, layer_module_paths
from ..config import HyperLoRAConfig
from ..errors import HyperLoRAError
from ..lora import sample_scales
from ..model import HyperLoRA
from . import checkpointing
from .config import STAGE, STAGE_ORDER, FitConfig, prerequisite
from .data import BatchSource
from .distributed import DistInfo, all_reduce_mean, barrier, init_distributed, wrap
from .objective import Conditions, HyperStep, StepRunner, uses_base_lora
from .observe import StageLogger, save_grid
from .schedule import lr_lambda
from .setup import hyper_config, load_into, new_hyperlora, set_trainable, zero_face_stream_output
from .shards import ShardDataset

log = logging.getLogger("hyperlora.train")
FINAL = "final.safetensors"


def build_backbone(cfg: FitConfig, parts: Collection[str] = PARTS) -> Backbone:
    """The frozen models the config's `model` section names, through the backbone registry; of a base's model
    files only the `parts` the command needs are loaded."""
    m = cfg.model
    kind = backbone_kind(m.backbone)
    files = dict(diffusion_model=m.diffusion_model, text_encoders=m.text_encoders, vae=m.vae, parts=parts)
    return kind.load(checkpoint=m.checkpoint, clip_vision=m.clip_vision, seed=m.tiny_seed, base=m.base,
                     **(files if kind.split_files else {}))


def session_parts(cfg: FitConfig) -> tuple[str, ...]:
    """What `fit` needs of the base: the diffusion model, and the encoders for its sample grids if it draws any."""
    return PARTS if cfg.train.samples.every >= 0 else ("diffusion_model",)


def stage_dir(cfg: FitConfig, stage: str) -> Path:
    return Path(cfg.run_dir) / stage


def final_path(cfg: FitConfig, stage: str) -> Path:
    return stage_dir(cfg, stage) / FINAL


def check_prerequisites(cfg: FitConfig) -> None:
    """Fail before any work if a stage lacks what it builds on."""
    listed = cfg.stage_names()
    for i, stage in enumerate(listed):
        need = prerequisite(stage, cfg)
        if need is None or cfg.hypernetwork.init or need in listed[:i] or final_path(cfg, need).is_file():
            continue
        raise HyperLoRAError(
            f"stage '{stage}' needs stage '{need}' to have finished first, but '{need}' is not in stages and "
            f"{final_path(cfg, need)} does not exist. Add '{need}' to stages (before '{stage}'), or set "
            "hypernetwork.init to a checkpoint that already went through it."
        )


def start_weights(cfg: FitConfig, stage: str) -> Path | None:
    """The newest earlier stage's result in this run, else hypernetwork.init, else None (random)."""
    for earlier in reversed(STAGE_ORDER[: STAGE_ORDER.index(stage)]):
        if final_path(cfg, earlier).is_file():
            return final_path(cfg, earlier)
    return Path(cfg.hypernetwork.init) if cfg.hypernetwork.init else None


def make_optimizer(model: torch.nn.Module, cfg: FitConfig, stage: str) -> torch.optim.Optimizer:
    o, st = cfg.train.optimizer, cfg.stages[stage]
    lr = st.lr if st.lr is not None else o.lr
    basis_lr = st.basis_lr if st.basis_lr is not None else (o.basis_lr if o.basis_lr is not None else lr)
    basis, other = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (basis if "_basis." in name else other).append(p)
    groups = [g for g in ({"params": other, "lr": lr}, {"params": basis, "lr": basis_lr}) if g["params"]]
    if o.kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)


@dataclass
class Session:
    """What all stages share: the process group, the frozen backbone with its hooks, the data."""

    cfg: FitConfig
    info: DistInfo
    backbone: Backbone
    denoiser: Denoiser
    hook_state: LoRAHookState
    dataset: ShardDataset
    source: BatchSource
    config: HyperLoRAConfig
    sample_text: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None
    """The sample prompts' conditioning and the empty caption's (the base profile's keys)."""


def open_session(cfg: FitConfig, info: DistInfo | None = None) -> Session:
    info = info or init_distributed()
    backbone = build_backbone(cfg, session_parts(cfg))
    dataset = ShardDataset(cfg.data.shards, cfg.data.verify)
    denoiser = Denoiser(backbone.unet)
    text_dim = dataset.tensors["empty_text"].shape[-1]
    if text_dim != denoiser.context_dim or dataset.info.get("backbone") != backbone.name:
        raise HyperLoRAError(
            f"{cfg.data.shards}: prepared with backbone '{dataset.info.get('backbone')}' (text width {text_dim}) but the "
            f"config loads '{backbone.name}' (text width {denoiser.context_dim}); cached latents and text embeddings "
            "only fit the models that made them. Run prepare with this config."
        )
    if cfg.hypernetwork.base_rank is not None and not dataset.has_base:
        raise HyperLoRAError(f"{cfg.data.shards}: has no face-blurred base crops, but the config trains a Base-LoRA.")
    if dataset.base is not backbone.profile:
        raise HyperLoRAError(
            f"{cfg.data.shards}: prepared for {dataset.base.display_name} but the config loads a "
            f"{backbone.profile.display_name} model; run prepare with this config."
        )
    specs = backbone.profile.module_specs(backbone.unet, cfg.lora.targets)
    if not specs:
        profile = backbone.profile
        raise HyperLoRAError(f"config: lora.targets {list(cfg.lora.targets or [])} selects no layer of the "
                             f"{profile.display_name} model; its target sets: {', '.join(profile.target_sets)}.")
    config = hyper_config(cfg, specs, backbone.clip_vision_dim, backbone.profile.name)
    state = attach_lora_hooks(backbone.unet, layer_module_paths(backbone.unet, config.modules), info.device,
                              cfg.train.gradient_checkpointing)
    backbone.unet.model.requires_grad_(False)
    sample_text = None
    if cfg.train.samples.every >= 0:
        sample_text = (backbone.encode_text([config.trigger_words + p for p in cfg.train.samples.prompts]),
                       backbone.encode_text([""]))
    source = BatchSource(dataset, cfg, info.rank, info.world, info.device)
    return Session(cfg, info, backbone, denoiser, state, dataset, source, config, sample_text)


def close_session(s: Session) -> None:
    deactivate(s.backbone.unet)
    s.dataset.close()


def fit(cfg: FitConfig, info: DistInfo | None = None) -> dict[str, str]:
    """Run every configured stage that has not finished; returns stage -> final weights path."""
    check_prerequisites(cfg)
    if all(final_path(cfg, s).is_file() for s in cfg.stage_names()):
        log.info("every stage has finished already; nothing to do")
        return {s: str(final_path(cfg, s)) for s in cfg.stage_names()}
    session = open_session(cfg, info)
    results = {}
    try:
        for stage in cfg.stage_names():
            final = final_path(cfg, stage)
            if final.is_file():
                if session.info.is_main:
                    log.info("stage %s: already finished (%s), skipping", stage, final)
            else:
                run_stage(session, stage)
            results[stage] = str(final)
    finally:
        close_session(session)
    return results


def _teacher(session: Session, stage: str) -> HyperStep:
    """The frozen teacher of a distilling stage: the result of the stage its spec names."""
    path = final_path(session.cfg, STAGE[stage].teacher)
    if not path.is_file():
        path = start_weights(session.cfg, stage)
    if path is None:
        raise HyperLoRAError(f"stage '{stage}' needs a trained model as its teacher; run {STAGE[stage].teacher} first.")
    model = HyperLoRA(session.config)
    load_into(model, path)
    return HyperStep(model.requires_grad_(False).eval()).to(session.info.device)


def run_stage(session: Session, stage: str) -> Path:
    cfg, info = session.cfg, session.info
    st, spec = cfg.stages[stage], STAGE[stage]
    folder = stage_dir(cfg, stage)
    ckpt_dir = folder / "checkpoints"
    checkpointing.clean_temporaries(ckpt_dir, info)

    model = new_hyperlora(session.config, cfg.seed)
    start_from = start_weights(cfg, stage)
    if start_from is not None:
        load_into(model, start_from)
    resume = checkpointing.latest_checkpoint(ckpt_dir)
    if spec.starts_face_stream and st.zero_init_face_stream and resume is None:
        zero_face_stream_output(model)
    set_trainable(model, stage, cfg.trainable(stage))
    step_module = HyperStep(model).to(info.device)
    wrapped = wrap(step_module, cfg.train.distributed, info)
    optimizer = make_optimizer(wrapped, cfg, stage)
    warmup = st.warmup_steps if st.warmup_steps is not None else cfg.train.scheduler.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.train.scheduler.kind, warmup, st.steps, st.decay_steps))
    start = 0
    if resume is not None:
        start = checkpointing.load_checkpoint(resume, wrapped, optimizer, scheduler, info)["step"]
        if info.is_main:
            log.info("stage %s: resumed from %s", stage, resume)
    teacher = _teacher(session, stage) if spec.teacher else None
    runner = StepRunner(stage, cfg, session.backbone, session.denoiser, session.hook_state, info.device, teacher)
    lg = cfg.train.log
    logger = StageLogger(folder, stage, st.steps, start, info.is_main, lg.progress_bar, lg.tensorboard)
    scaler = torch.amp.GradScaler(info.device.type) if cfg.train.precision == "fp16" and info.device.type == "cuda" else None
    trainable = [p for p in wrapped.parameters() if p.requires_grad]
    samples = cfg.train.samples
    try:
        for step in range(start, st.steps):
            t0 = time.perf_counter()
            batch = session.source.batch(stage, step, with_base=runner.use_base)
            loss = runner.loss(wrapped, batch)
            if not torch.isfinite(loss):
                raise HyperLoRAError(
                    f"stage {stage}, step {step + 1}: the loss is {loss.item()}; lower the learning rate or use "
                    "bf16/fp32 precision. The last checkpoint is intact."
                )
            (scaler.scale(loss) if scaler else loss).backward()
            session.hook_state.clear()
            if scaler:
                scaler.unscale_(optimizer)
            if cfg.train.optimizer.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.train.optimizer.grad_clip)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            value = float(all_reduce_mean(loss.detach(), info).item())
            logger.step(done, value, scheduler.get_last_lr()[0], time.perf_counter() - t0,
                        write=done % lg.every == 0 or done == st.steps)
            if done % cfg.train.checkpoint.every == 0 and done < st.steps:
                checkpointing.save_checkpoint(
                    ckpt_dir, done, wrapped, optimizer, scheduler, info,
                    {"stage": stage, "config": cfg.source, "data_position": session.source.position(stage, done)},
                    cfg.train.checkpoint.keep_last,
                )
            if samples.every > 0 and done % samples.every == 0 and done < st.steps:
                sample_grid(session, wrapped, stage, done, logger)
        if samples.every >= 0:
            sample_grid(session, wrapped, stage, st.steps, logger)
        return save_final(session, wrapped, stage)
    finally:
        session.hook_state.clear()
        logger.close()


def full_state(wrapped: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole hypernetwork's state on CPU (gathered from all ranks; full on rank 0)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k[len("hl."):]: v for k, v in sd.items() if k.startswith("hl.")}


def save_final(session: Session, wrapped: torch.nn.Module, stage: str) -> Path:
    cfg, info = session.cfg, session.info
    path = final_path(cfg, stage)
    state = full_state(wrapped)
    if info.is_main:
        model = HyperLoRA(session.config)
        model.load_state_dict(state, strict=True)
        extra = {"trainer": {"stage": stage, "steps": cfg.stages[stage].steps, "config": cfg.source}}
        model.config = dataclasses.replace(model.config, extra=extra)
        model.save_single_file(path, dtype=None)
    barrier(info)
    return path


def sample_conditions(session: Session) -> dict:
    """Fixed reference photos: the first photo of the first N identities (same on every rank)."""
    ds = session.dataset
    n = min(session.cfg.train.samples.identities, ds.num_identities)
    items = [ds.load(ds.by_identity[i][0], with_base=ds.has_base) for i in range(n)]
    dev = session.info.device
    return {
        "face": torch.stack([x["face"] for x in items]).float().div(255).to(dev),
        "base": torch.stack([x["base"] for x in items]).float().div(255).to(dev) if ds.has_base else None,
        "arcface": torch.stack([x["arcface"] for x in items]).to(dev),
        "latent_shape": tuple(items[0]["latent"].shape),
    }


@torch.no_grad()
def sample_grid(session: Session, wrapped: torch.nn.Module, stage: str, step: int, logger: StageLogger) -> Path | None:
    """Images from the current weights: one row per reference photo, one column per prompt.

    Every rank runs the hypernetwork (FSDP2 needs all ranks to unshard); rank 0 samples and saves.
    """
    cfg, bb = session.cfg, session.backbone
    spec = STAGE[stage]
    sc = sample_conditions(session)
    dev = session.info.device
    face_tokens = bb.clip_tokens(sc["face"]).to(dev)
    use_base = uses_base_lora(spec, cfg) and spec.base_lora == "trained" and sc["base"] is not None
    base_tokens = bb.clip_tokens(sc["base"]).to(dev) if use_base else None
    n = face_tokens.shape[0]
    arcface = sc["arcface"] if spec.face_embedding else None
    factors = wrapped(Conditions(face_tokens if spec.id_lora else None, arcface, base_tokens,
                                 torch.arange(n, device=dev), n), "same_photo")
    if not session.info.is_main:
        return None
    s = cfg.train.samples
    cond, uncond = session.sample_text
    prompts = next(iter(cond.values())).shape[0]
    pick = torch.arange(n).repeat_interleave(prompts)  # sample k = identity k // P, prompt k % P
    which = torch.arange(prompts).repeat(n)
    one = sample_scales(n * prompts, device=dev)
    sets = []
    for downs, ups in factors.values():  # the LoRA the stage trains: the ID-LoRA, or the Base-LoRA alone
        sets.append(LoRASet([d[pick.to(d.device)] for d in downs], [u[pick.to(u.device)] for u in ups], one))
    latent_size = max(1, s.size // 8)
    geometry = bb.profile.image_conditioning([s.size, s.size], [0, 0], [s.size, s.size])
    image = {k: v.unsqueeze(0).repeat(n * prompts, *[1] * v.ndim).to(dev) for k, v in geometry.items()}
    den = session.denoiser
    noise = torch.cat([  # one noise per prompt, shared by the identities: rows differ only by the LoRA
        torch.randn((1, sc["latent_shape"][0], latent_size, latent_size), generator=torch.Generator().manual_seed(s.seed + j))
        for j in range(prompts)
    ])[which].to(dev)
    inputs = den.inputs({**{k: v[which].to(dev) for k, v in cond.items()}, **image})
    uinputs = den.inputs({**{k: v.repeat(n * prompts, *[1] * (v.ndim - 1)).to(dev) for k, v in uncond.items()}, **image})
    session.hook_state.sets = sets
    try:
        latent = euler_sample(den, noise, inputs, uinputs, s.steps, s.cfg)
    finally:
        session.hook_state.clear()
    images = bb.decode_latents(den.latent_out(latent).cpu())
    rows = [[sc["face"][i].cpu(), *images[i * prompts : (i + 1) * prompts]] for i in range(n)]
    path = save_grid(rows, stage_dir(cfg, stage) / "samples" / f"step-{step:08d}.png")
    logger.image(f"samples/{stage}", path, step)
    return path
