"""MODEL_CARD.md and its figures, written from `toy_world.json` (what the build measured)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from . import files, world

FIGURES = "figures"


def plot_match_curve(stats: dict, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hyper = stats.get("stages", {}).get("hyper", {})
    curve = hyper.get("match_curve") or []
    if not curve:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    steps = [r["step"] for r in curve]
    for key, label in (("match_1ref", "ID-LoRA, 1 reference"), ("match_4ref", "ID-LoRA, 4 references")):
        ax.plot(steps, [r[key] for r in curve], marker="o", label=label)
    ax.axhline(hyper["no_lora_match"], color="grey", ls="--", label="no LoRA")
    ax.axhline(world.CHANCE_MATCH, color="grey", ls=":", label="chance")
    recipe = hyper.get("recipe", {})
    switch = (recipe.get("steps_base") or 0) + (recipe.get("steps_clip") or 0)
    if switch:
        ax.axvline(switch, color="k", lw=0.8, alpha=0.4)
        ax.text(switch, 0.95, " ArcFace stream on", fontsize=7, va="top")
    ax.set_xlabel("HyperLoRA training step")
    ax.set_ylabel("held-out attribute match")
    ax.set_ylim(0.2, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _size_rows(folder: Path) -> list[tuple[str, int, int]]:
    from ..safetensors_io import read_shapes

    rows = []
    names = {**files.FILES, **files.DIT_FILES}  # the DiT base's files where the world has them
    for part in names:
        p = files.part_path(part, folder)
        if p.is_file():
            params = 0
            for shape in read_shapes(p).values():
                n = 1
                for d in shape:
                    n *= d
                params += n
            rows.append((names[part], params, p.stat().st_size))
    return rows


def write_card(folder: str | os.PathLike | None = None) -> Path:
    folder = files.world_dir(folder)
    stats = files.read_stats(folder)
    fig_dir = folder / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    curve_png = plot_match_curve(stats, fig_dir / "match_curve.png")
    st = stats.get("stages", {})
    ev = stats.get("eval", {})
    lines = ["# Toy HyperLoRA world: model card", ""]
    lines += [
        "A tiny, fully synthetic world in which HyperLoRA visibly transfers identity on a CPU. Everything here was",
        "trained from scratch by `make toy-world` (`python -m hyperlora_core.toy.build`); nothing was downloaded.",
        "It is the demo the pack falls back to without the published weights, and the end-to-end test that the",
        "training recipe learns.",
        "",
        "## What is in it",
        "",
        "| file | what | params | bytes (fp16) |",
        "|---|---|---|---|",
    ]
    what = {
        "toy_judge.safetensors": "attribute classifier: the JUDGE only (never read by HyperLoRA)",
        "toy_base_judge.safetensors": "background colour / pattern / shirt colour classifier: a JUDGE only (never read by HyperLoRA)",
        "toy_arcface.safetensors": "ArcFace analogue: contrastive identity encoder, 512-d L2-normalised",
        "toy_clip_vision.safetensors": "CLIP-vision analogue: conv stem + 3-layer transformer, CLIP-style trained; `hidden_states[-2]` = 65 x 64 tokens",
        "toy_vae.safetensors": "ComfyUI `AutoencoderKL` (ch 32, /2): 32x32x3 <-> 4x16x16, SDXL latent scale folded in",
        "toy_unet.safetensors": "ComfyUI SDXL UNet (`model_base.SDXL`), model_channels 32, context 64, 22 attention modules",
        "toy_caption_encoder.safetensors": "caption encoder: attribute and background/shirt phrases -> context [10, 64] + pooled [64]",
        "hyper_lora/toy_hyperlora.safetensors": "HyperLoRA (`hyperlora_core.model.HyperLoRA`), single-file format",
        "toy_dit.safetensors": "the second base: ComfyUI FLUX transformer (`model_base.Flux`), hidden 128, 2 double + 4 "
                               "single blocks, 4 latent channels, flow matching",
        "toy_dit_caption_encoder.safetensors": "the DiT's own caption encoder (same kind as the UNet's)",
        "hyper_lora/toy_dit_hyperlora.safetensors": "the DiT's HyperLoRA (FLUX profile, image-attention targets)",
    }
    total_p = total_b = 0
    for name, params, size in _size_rows(folder):
        lines.append(f"| `{name}` | {what.get(name, '')} | {params:,} | {size:,} |")
        total_p += params
        total_b += size
    lines.append(f"| **total** | | **{total_p:,}** | **{total_b:,}** ({total_b / 2**20:.1f} MiB) |")
    lines += ["", "## The world", ""]
    lines += [
        f"- Identity = 6 discrete attributes ({', '.join(f'{n} {v}' for n, v in zip(world.ATTRIBUTE_NAMES, world.ATTRIBUTE_SIZES))}):",
        f"  {world.NUM_IDENTITIES} identities. Base (not identity) = background colour (8 named colours, jittered), pattern (3),",
        "  clothing colour (8), pose shift. The named base factors can be said in a caption (\"red shirt, blue striped",
        "  background\") and are judged by the base judge.",
        f"- {len(world.heldout_identities())} identities (20 %) are held out of EVERY stage; all numbers below are on them.",
        f"- Chance attribute match {world.CHANCE_MATCH:.3f}; all-6 exact by chance {1 / world.NUM_IDENTITIES:.4f}.",
        "- Three different networks with three different training signals: the judge (supervised attributes), the",
        "  ArcFace analogue (contrastive: two renders of one identity vs other identities, never an attribute label) and",
        "  the CLIP analogue (contrastive against full captions including background and clothes). HyperLoRA reads only",
        "  the last two (frozen), as the published model reads ArcFace and CLIP ViT-L/14; the judge is independent.",
        "",
        "## How it was made (stage, steps, wall minutes, CPU minutes of the process, where it trained)",
        "",
        "| stage | steps | wall min | CPU min | threads | trained on | result |",
        "|---|---|---|---|---|---|---|",
    ]
    results = {
        "judge": lambda s: f"held-out accuracy per attribute {s.get('heldout_accuracy')}",
        "base_judge": lambda s: f"held-out accuracy (background, pattern, shirt) {s.get('heldout_accuracy')}",
        "arcface": lambda s: ", ".join(f"{k} {v:.3f}" for k, v in (s.get("heldout") or {}).items()),
        "clip": lambda s: "",
        "vae": lambda s: (f"PSNR {s.get('heldout_psnr')} dB, judge on reconstructions {s.get('judge_on_reconstructions')}"
                          + (f" (reused, not retrained: {s['reused']})" if s.get("reused") else "")),
        "base": lambda s: (f"text fidelity (full captions, CFG 2) {s['fidelity_curve'][-1]['mean']:.3f}"
                           if s.get("fidelity_curve") else ""),
        "hyper": lambda s: (f"held-out match {s['match_curve'][-1]['match_1ref']:.3f} (1 ref), "
                            f"{s['match_curve'][-1]['match_4ref']:.3f} (4 refs); no LoRA {s['no_lora_match']:.3f}"
                            if s.get("match_curve") else ""),
    }
    total = 0.0
    for name in ("judge", "base_judge", "arcface", "clip", "vae", "base", "hyper", "dit_base", "dit_hyper"):
        s = st.get(name)
        if not s:
            continue
        kind = name.removeprefix("dit_")  # the DiT base's stages (`build --base dit`) read like the UNet's
        r = s.get("recipe", {})
        per_stage = {"base": r.get("steps_base") or 0, "clip_id": r.get("steps_clip") or 0,
                     "arcface_id": r.get("steps_id") or 0}
        steps = s.get("steps") or sum(per_stage.values())
        minutes, cpu = s.get("minutes", ""), s.get("cpu_minutes", "")
        if kind == "hyper" and s.get("resumed") and s.get("seconds_per_step"):
            # a resumed build's own clock says little: the trainer's measured step times times the steps
            minutes = round(sum(per_stage[k] * v for k, v in s["seconds_per_step"].items()) / 60, 2)
            cpu = "(see below)"
        total += minutes if isinstance(minutes, (int, float)) else 0
        # builds before the `--device` option trained everything on the CPU and did not say so
        lines.append(f"| {name} | {steps} | {minutes} | {cpu} | {s.get('threads', '')} | {s.get('device', 'cpu')} "
                     f"| {results[kind](s)} |")
    lines.append(f"| **total** | | **{total:.1f}** | | | | |")
    lines += ["", "Machine: 2 CPU cores. Parts trained on the CPU used one thread each while other jobs shared the machine",
              "(load average about 5), so their wall minutes overstate the cost on an idle machine; CPU minutes are the",
              "process's own CPU time."]
    hyper = st.get("hyper", {})
    if hyper.get("seconds_per_step"):
        sps = ", ".join(f"{k} {v:.2f} s/step" for k, v in hyper["seconds_per_step"].items())
        lines += [f"The HyperLoRA stage: mean trainer step time {sps} (batch {hyper['recipe']['batch']}, "
                  f"{hyper.get('threads')} threads)"
                  + (", from the trainer's logs: this run was interrupted and resumed from its checkpoint, which the "
                     "trainer makes bit-identical to an uninterrupted run" if hyper.get("resumed") else "") + "."]
        if hyper.get("timing_note"):
            lines.append(hyper["timing_note"])
    lines.append("")
    if stats.get("rebuild_check"):
        lines += ["### Rebuild check", "", stats["rebuild_check"], ""]
    if hyper:
        r = hyper.get("recipe", {})
        warm = (yaml.safe_load(hyper.get("config") or "{}") or {}).get("stages", {}).get("base", {})
        warm_how = ", ".join(f"{k} {warm[k]}" for k in ("objective", "text_dropout", "basis_lr") if k in warm)
        lines += ["## HyperLoRA recipe", "",
                  f"- Trainer: `{hyper.get('trainer')}`.",
                  (f"- Stage 0, Base-LoRA warm-up (the Base-LoRA alone, from the face-blurred target photo): "
                   f"{r['steps_base']} steps" + (f" ({warm_how}: `toy/recipe.py` BASE_WARMUP says why)" if warm_how else "")
                   + "; then the Base-LoRA is frozen and added (dropped for half of the samples) "
                   "while the ID-LoRA trains.\n" if r.get("steps_base") else "")
                  + f"- Stage 1 (CLIP analogue only): {r.get('steps_clip')} steps; stage 2 (ArcFace analogue + CLIP analogue): "
                  f"{r.get('steps_id')} steps"
                  + (f", the last {r['decay_id']} with the lr falling to 0 along a cosine" if r.get("decay_id") else "")
                  + ".",
                  f"- Batch {r.get('batch')}: target render j2 of an identity, its LoRA made from another render j1 (flipped "
                  "at random): different background, clothes and pose, so only identity is worth copying.",
                  f"- Loss: the plain diffusion eps-MSE on the frozen base UNet, t >= {r.get('t_min')}; the caption names the "
                  "target's background and shirt (never identity) and is empty for half of the samples"
                  + (f", plus {r.get('w_distill')} x caption distillation" if r.get("w_distill") else "") + ".",
                  f"- AdamW, basis lr {r.get('lr_basis')}, resampler/projector lr {r.get('lr_net')}, warm-up {r.get('warmup')}, clip 1.0.",
                  ""]
    if curve_png:
        lines += ["## Held-out match over training", "", f"![match curve]({FIGURES}/{curve_png.name})", "",
                  "| step | stage | 1 ref | 4 refs | all-6 (1 ref) |", "|---|---|---|---|---|"]
        for row in hyper.get("match_curve", []):
            lines.append(f"| {row['step']} | {row['stage']} | {row['match_1ref']:.3f} | {row['match_4ref']:.3f} | "
                         f"{row['all6_1ref']:.3f} |")
        lines.append("")
    if ev:
        lines += ["## Evaluation on held-out identities", "",
                  "`toy/measure.py`: every identity's LoRAs through the per-sample hooks and the batched Euler sampler, which",
                  "equal `apply_lora` (weight patches) -> `comfy.sample.sample` (euler, karras, 20 steps, CFG 1, empty caption)",
                  "-> toy VAE decode; then the judge. Same noise with and without the LoRA; 95 % intervals over identities.",
                  f"{ev.get('identities')} held-out identities.", "", ev.get("table", ""), ""]
        if ev.get("grid"):
            lines += [f"![held-out grid]({FIGURES}/{Path(ev['grid']).name})", "",
                      "Rows: reference photo (held-out identity) / sample with its 1-photo ID-LoRA / same noise without a LoRA.", ""]
        if ev.get("strength_table"):
            lines += ["### Strength sweep (the same run)", "",
                      ev["strength_table"], ""]
            if ev.get("strength_plot"):
                lines += [f"![strength]({FIGURES}/{Path(ev['strength_plot']).name})", ""]
        lines += [f"Headline: `{ev.get('summary_line', '')}`", ""]
    dit = stats.get("dit_eval")
    if dit:
        lines += ["## The DiT base (`build --base dit`)", "", f"{st.get('dit_base', {}).get('model', 'DiT')}, its own caption "
                  "encoder and HyperLoRA, the shared judges, analogues and VAE; the same held-out measurement:", "",
                  dit.get("table", ""), "", f"Headline: `{dit.get('summary_line', '')}`", ""]
    study = stats.get("study")
    if study:
        lines += ["## The paper's claims, measured", "",
                  f"`python -m hyperlora_core.eval --toy --summary` ({study.get('minutes', '?')} min, "
                  f"{study.get('threads', '?')} thread(s)):", "", study["tables"], "", f"`{study['summary_line']}`", ""]
        if study.get("intervals"):
            lines += [f"With 95 % intervals (bootstrap over the {study.get('identities', '?')} identities; a verdict is "
                      "confirmed or refuted only when the interval of the difference excludes zero):", "",
                      study["intervals"], ""]
    ablation = stats.get("ablation")
    if ablation:
        lines += ["## Ablations", "", ablation.get("note", ""), "", ablation["table"], ""]
        if ablation.get("claims"):
            lines += ["### The paper's claims, one by one", "", ablation["claims"], ""]
    lines += ["## Reproduce", "", "```", "make toy-world                       # everything, writes models/toy",
              "make demo                            # held-out photos -> LoRA -> images through ComfyUI's HTTP API",
              "python -m hyperlora_core.toy.demo    # the same table and grid with ComfyUI as a library",
              "python -m hyperlora_core.eval --toy  # the strength sweep on held-out identities", "```", "",
              "In the graph editor: Workflow -> Browse Templates -> comfyui-hyperlora -> hyperlora_toy_world.", ""]
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
