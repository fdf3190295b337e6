"""A tiny synthetic world in which HyperLoRA visibly transfers identity, trained on a CPU.

Without the published weights nobody can see HyperLoRA work, and nothing proves our trainer
learns. This world fixes both: cartoon faces whose identity is six attributes, a 32-px /2 VAE and
a tiny SDXL-architecture UNet built from ComfyUI's own classes, frozen ArcFace / CLIP analogues,
and an attribute classifier that only judges. The hypernetwork is the core `HyperLoRA`, trained
by `python -m hyperlora_core.train` like a real one.

Modules: `world` (generator, held-out split), `encoders` (judge, ToyArcFace, ToyCLIP), `caption`
(text encoder), `bridge` (ComfyUI VAE / UNet / CLIP objects, sampling, model folders), `stages`
(training the frozen parts), `hyper` (HyperLoRA config, hooks, held-out evaluation, a reference
loop), `trainer` (the trainer's backbone and dataset), `build` (`make toy-world`), `evaluate` and
`demo` (ComfyUI-path table and grid), `install` / `workflow` (ComfyUI folders, API graph),
`conditions` (photos -> IDCondition), `card` (MODEL_CARD.md). Weights: models/toy/.
"""
