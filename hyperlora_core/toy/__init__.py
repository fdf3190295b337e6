"""A tiny synthetic world in which HyperLoRA visibly transfers identity, trained on a CPU.

Without the published weights nobody can see HyperLoRA work, and nothing proves our trainer
learns. This world fixes both: cartoon faces whose identity is six attributes, a 32-px /2 VAE and
a tiny SDXL-architecture UNet built from ComfyUI's own classes, frozen ArcFace / CLIP analogues,
and an attribute classifier that only judges. It adds no second stack: the hypernetwork is the
core `HyperLoRA`, trained by `python -m hyperlora_core.train` (backbone `toy`), applied by
`comfy_bridge.apply_lora` and sampled by ComfyUI's KSampler, like a real one.

Modules: `world` (generator, held-out split, its name), `encoders` (judge, ToyArcFace, ToyCLIP,
`Conditioner`), `caption` (text encoder), `models` (VAE / UNet / caption encoder as ComfyUI
objects, through `comfy_bridge.wrappers`; the world's bases, `ToyBase`: the UNet and a FLUX-class DiT), `files` (where the weights are), `world_loader` (`ToyWorld`:
every part loaded as ComfyUI's loaders hand it out, and its KSampler path), `stages` (training
the frozen parts), `backbone` (the trainer's `toy` backbone, dataset and config), `build`
(`make toy-world`, a table of stages), `measure` (every measurement: held-out identities,
conditions, judges, the batched sampler and its KSampler-path proof, `Judgements` with intervals),
`study` / `ablation` (the paper's claims, the ablation rows), `demo` (the held-out table and grid
through the KSampler path), `install` / `workflow` (ComfyUI folders, API graph), `conditions` (photos ->
IDCondition), `card` (MODEL_CARD.md). Weights: models/toy/.
"""
