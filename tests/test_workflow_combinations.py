"""The combinations the authors recommend, as shipped: HyperLoRA + ControlNet (pose) and HyperLoRA + a style
LoRA, on the real host with stand-ins (a random ControlNet built from ComfyUI's own classes and a random
kohya LoRA, saved to disk and read back by ComfyUI's ControlNet and LoRA loaders).

Each part must change the picture, and they must not get in each other's way: a probe node records the
UNet weight the sampler really uses, which holds the same HyperLoRA delta with and without the
ControlNet, and the sum of both deltas with the style LoRA.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from fixtures import comfy_session, workflows
from PIL import Image
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def server(comfyui_path):
    return comfy_session.get(comfyui_path)


def set_input(prompt: dict, kind: str, field: str, value) -> None:
    prompt[workflows.nodes_of(prompt, kind)[0]]["inputs"][field] = value


def run(server, base: dict, tag: str, changes: dict) -> tuple[np.ndarray, dict]:
    """Run a variant ({(node type, input): value}); returns the saved picture and the UNet weight the sampler used."""
    prompt = copy.deepcopy(base)
    for (kind, field), value in changes.items():
        set_input(prompt, kind, field, value)
    sampler = workflows.nodes_of(prompt, "KSampler")[0]
    prompt["900"] = {"class_type": "HyperLoRATestWeightProbe", "inputs": {"model": prompt[sampler]["inputs"]["model"],
                                                                           "name": tag}}
    prompt[sampler]["inputs"]["model"] = ["900", 0]
    set_input(prompt, "SaveImage", "filename_prefix", f"combinations/{tag}")
    result = server.run(prompt)
    assert result.error is None, result.error
    image = result.outputs[workflows.nodes_of(prompt, "SaveImage")[0]]["images"][0]
    picture = np.asarray(Image.open(server.output_dir / image["subfolder"] / image["filename"]), dtype=np.float64)
    return picture, load_file(str(server.output_dir / "probe" / f"{tag}.safetensors"))


def differ(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in 8-bit levels. Two runs with the same inputs give 0 exactly (one process);
    a part that acts moves the tiny random models' 64 px picture by a few tenths of a level or more."""
    return float(np.abs(a - b).mean())


CHANGED = 0.05


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.allclose(a[k].numpy(), b[k].numpy(), rtol=0, atol=1e-6) for k in a)


def test_hyperlora_and_controlnet_each_act_and_leave_each_other_alone(server):
    base = workflows.for_tiny_models(workflows.api("hyperlora_controlnet_pose"), comfy_session.TINY_CHECKPOINT,
                                     comfy_session.TINY_CHECKPOINT)
    lora, cn = ("HyperLoRAApply", "strength"), ("ControlNetApplyAdvanced", "strength")
    photo = workflows.nodes_of(base, "LoadImage")
    assert [base[n]["inputs"]["image"] for n in photo] == ["face_1.png", "pose.png"]

    def variant(tag, lora_strength, cn_strength, pose_name):
        prompt = copy.deepcopy(base)
        prompt[photo[1]]["inputs"]["image"] = pose_name
        return run(server, prompt, tag, {lora: lora_strength, cn: cn_strength})

    both, w_both = variant("cn_both", 1.5, 0.8, "pose.png")
    no_lora, w_no_lora = variant("cn_no_lora", 0.0, 0.8, "pose.png")
    no_cn, w_no_cn = variant("cn_no_cn", 1.5, 0.0, "pose.png")
    other_pose, _ = variant("cn_other_pose", 1.5, 0.8, "pose_1.png")
    no_cn_other_pose, _ = variant("cn_no_cn_other_pose", 1.5, 0.0, "pose_1.png")

    assert differ(both, no_lora) > CHANGED  # the LoRA changes the picture
    assert differ(both, no_cn) > CHANGED  # so does the ControlNet
    assert differ(both, other_pose) > CHANGED  # the picture follows the pose given to the ControlNet, LoRA on
    assert differ(no_cn, no_cn_other_pose) == 0.0  # without the ControlNet the pose picture plays no part
    # The weights the sampler used: the HyperLoRA's delta, whether or not the ControlNet runs beside it.
    assert same_weights(w_both, w_no_cn) and not same_weights(w_both, w_no_lora)


def test_hyperlora_and_a_style_lora_add_up(server):
    base = workflows.for_tiny_models(workflows.api("hyperlora_style_lora"), comfy_session.TINY_CHECKPOINT,
                                     comfy_session.TINY_CHECKPOINT)
    hyper, style = ("HyperLoRAApply", "strength"), ("LoraLoaderModelOnly", "strength_model")
    both, w_both = run(server, base, "style_both", {hyper: 1.5, style: 0.8})
    only_hyper, w_hyper = run(server, base, "style_only_hyper", {hyper: 1.5, style: 0.0})
    only_style, w_style = run(server, base, "style_only_style", {hyper: 0.0, style: 0.8})
    _, w_none = run(server, base, "style_none", {hyper: 0.0, style: 0.0})

    assert differ(both, only_hyper) > CHANGED and differ(both, only_style) > CHANGED  # each LoRA changes the picture
    (key,) = w_none
    w0 = w_none[key].double()
    d_hyper, d_style, d_both = (w[key].double() - w0 for w in (w_hyper, w_style, w_both))
    assert d_hyper.abs().max() > 1e-3 and d_style.abs().max() > 1e-3
    # Both are weight patches on the same layers and add up exactly as ComfyUI applies them.
    assert (d_both - (d_hyper + d_style)).abs().max() <= 1e-5 * float(d_both.abs().max())
