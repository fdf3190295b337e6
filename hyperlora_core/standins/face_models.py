"""Tiny stand-in ONNX models that insightface's `FaceAnalysis` loads like a real model pack.

The real packs (antelopev2, buffalo_l) cannot ship with the code and cannot be downloaded in
tests, so tests, `make demo` and the benchmark write these instead. They follow insightface's
routing rules (the routing is done by input/output shapes, not by file name):

=====================  ===================================  ===============================
file                   input -> outputs                     routed as
=====================  ===================================  ===============================
``tiny_det.onnx``      ``[1,3,H,W]`` -> 15 outputs           ``detection`` (SCRFD, 5 kps)
``tiny_2d106.onnx``    ``[1,3,192,192]`` -> ``[1,212]``      ``landmark_2d_106``
``tiny_rec.onnx``      ``[N,3,112,112]`` -> ``[N,512]``      ``recognition`` (ArcFace)
``tiny_3d68.onnx``     ``[1,3,192,192]`` -> ``[1,3309]``     ``landmark_3d_68`` (extras)
``tiny_genderage.onnx````[1,3,96,96]`` -> ``[1,3]``          ``genderage`` (extras)
=====================  ===================================  ===============================

They are not face models, but their geometry is meaningful so crops can be checked:

- the detector has five levels (strides 8..128, one anchor per cell). Each cell is scored by how
  much brighter a window of 4 strides centred on it is than the ring around it (6 strides); cells
  within a hair of the best score of all levels are kept (if they stand out at all and are not
  dark: a flat or dark image has no face), each with a box equal to its window and
  five keypoints placed like ArcFace's template. So it finds a bright square at the level whose
  window fits it best (box sides 32..512 px at detector resolution), and on a photo it finds the
  region that stands out most (two adjacent cells can tie);
- the 106-point model returns a fixed face-shaped template (jaw arc, brow line, inner points)
  nudged slightly by the crop's mean colour, so the face-outline polygon is a simple polygon;
- the recogniser averages the aligned 112-px crop into 8x8 cells and projects them with a fixed
  random matrix, so different faces give different embeddings.

Detector outputs are 2-D (`[N, k]`) because insightface 0.7.3 cannot decode batched 3-D ones.
Files use opset 13 / IR version 8 so any onnxruntime >= 1.10 loads them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import temporaries
from ..face.packs import STANDIN_MARKER

"""Written next to the models so nobody mistakes the folder for a real pack."""

CORE_FILES = ("tiny_det.onnx", "tiny_2d106.onnx", "tiny_rec.onnx")
EXTRA_FILES = ("tiny_3d68.onnx", "tiny_genderage.onnx")

# Same 106-point outline order the published preprocessing uses (see face/crops.py).
_OUTLINE = (1, 9, 10, 11, 12, 13, 14, 15, 16, 2, 3, 4, 5, 6, 7, 8, 0, 24, 23, 22, 21, 20, 19, 18, 32, 31, 30,
            29, 28, 27, 26, 25, 17, 101, 105, 104, 103, 102, 50, 51, 49, 48, 43)  # fmt: skip
_ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
_STRIDES = (8, 16, 32, 64, 128)  # 15 outputs: five levels, one anchor per cell, with keypoints
_WINDOW = 4  # box / inner window side, in strides (32 .. 512 px at detector resolution)
_RING = 6  # outer window side, in strides
_K_IN = 1.0 + _WINDOW**2 / (_RING**2 - _WINDOW**2)
_K_OUT = _RING**2 / (_RING**2 - _WINDOW**2)


def _helpers():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    return onnx, TensorProto, helper, numpy_helper


def _save(model, path: Path) -> None:
    import onnx

    model.ir_version = 8
    onnx.checker.check_model(model)
    with temporaries.replacing(path) as tmp:
        tmp.write_bytes(model.SerializeToString())


def _const(numpy_helper, name: str, value: np.ndarray):
    return numpy_helper.from_array(np.asarray(value), name=name)


def _detector(path: Path) -> None:
    onnx, TP, helper, nh = _helpers()
    nodes, inits = [], []
    consts = {"zero": 0.0, "sharp": 200.0, "offset": 4.0, "k_in": _K_IN, "k_out": _K_OUT, "min_contrast": 0.05,
              "min_level": -0.5, "steep": 100.0}  # fmt: skip
    for name, value in consts.items():
        inits.append(_const(nh, name, np.array(value, np.float32)))
    inits.append(_const(nh, "shape1", np.array([-1, 1], np.int64)))
    inits.append(_const(nh, "shape4", np.array([-1, 4], np.int64)))
    inits.append(_const(nh, "shape10", np.array([-1, 10], np.int64)))
    # Box (l, t, r, b) and keypoints in stride units around the anchor (top-left of the cell): a
    # square of _WINDOW strides centred on the cell centre; keypoints from ArcFace's 112-px template.
    half = _WINDOW / 2
    box = np.array([half - 0.5, half - 0.5, half + 0.5, half + 0.5], np.float32)
    kps = ((_ARCFACE_TEMPLATE - 56.0) * (_WINDOW / 112.0) + 0.5).astype(np.float32).reshape(-1)
    inits.append(_const(nh, "box_c", box.reshape(1, 4, 1, 1)))
    inits.append(_const(nh, "kps_c", kps.reshape(1, 10, 1, 1)))

    nodes.append(helper.make_node("ReduceMean", ["input.1"], ["gray"], axes=[1], keepdims=1))
    nodes.append(helper.make_node("AveragePool", ["gray"], ["gray4"], kernel_shape=[4, 4], strides=[4, 4]))
    nodes.append(helper.make_node("AveragePool", ["gray4"], ["gray8"], kernel_shape=[2, 2], strides=[2, 2]))
    contrasts = []
    for stride in _STRIDES:
        # windows centred on each cell: inner = _WINDOW strides, outer = 1.5x that, pooled on the
        # 4x4 / 8x8-averaged image (same windows, 16-64x fewer additions)
        src, unit = ("gray4", 4) if stride < 32 else ("gray8", 8)
        k_in, k_out, step = _WINDOW * stride // unit, _RING * stride // unit, stride // unit
        p_in, p_out = (k_in - step) // 2, (k_out - step) // 2
        nodes.append(helper.make_node("AveragePool", [src], [f"in{stride}"], kernel_shape=[k_in, k_in],
                                      strides=[step, step], pads=[p_in] * 4))  # fmt: skip
        nodes.append(helper.make_node("AveragePool", [src], [f"out{stride}"], kernel_shape=[k_out, k_out],
                                      strides=[step, step], pads=[p_out] * 4))  # fmt: skip
        # ring mean = (A_out * outer - A_in * inner) / (A_out - A_in); contrast = inner - ring
        nodes.append(helper.make_node("Mul", [f"in{stride}", "k_in"], [f"ink{stride}"]))
        nodes.append(helper.make_node("Mul", [f"out{stride}", "k_out"], [f"outk{stride}"]))
        nodes.append(helper.make_node("Sub", [f"ink{stride}", f"outk{stride}"], [f"contrast{stride}"]))
        nodes.append(helper.make_node("ReduceMax", [f"contrast{stride}"], [f"best{stride}"], keepdims=0))
        contrasts.append(f"best{stride}")
    for c in contrasts:
        nodes.append(helper.make_node("Unsqueeze", [c, "axis0"], [c + "_1d"]))
    nodes.append(helper.make_node("Concat", [c + "_1d" for c in contrasts], ["bests"], axis=0))
    inits.append(_const(nh, "axis0", np.array([0], np.int64)))
    nodes.append(helper.make_node("ReduceMax", ["bests"], ["best"], keepdims=0))
    outputs = {"score": [], "bbox": [], "kps": []}
    for stride in _STRIDES:
        nodes.append(helper.make_node("Sub", [f"contrast{stride}", "best"], [f"gap{stride}"]))
        nodes.append(helper.make_node("Mul", [f"gap{stride}", "sharp"], [f"gaps{stride}"]))
        nodes.append(helper.make_node("Add", [f"gaps{stride}", "offset"], [f"rel{stride}"]))
        # ... and only where the window clearly stands out at all (a flat photo has no face)
        nodes.append(helper.make_node("Sub", [f"contrast{stride}", "min_contrast"], [f"over{stride}"]))
        nodes.append(helper.make_node("Mul", [f"over{stride}", "steep"], [f"abs{stride}"]))
        nodes.append(helper.make_node("Sub", [f"in{stride}", "min_level"], [f"lit{stride}"]))
        nodes.append(helper.make_node("Mul", [f"lit{stride}", "steep"], [f"bright{stride}"]))
        nodes.append(helper.make_node("Min", [f"rel{stride}", f"abs{stride}", f"bright{stride}"], [f"logit{stride}"]))
        nodes.append(helper.make_node("Sigmoid", [f"logit{stride}"], [f"smap{stride}"]))
        nodes.append(helper.make_node("Mul", [f"smap{stride}", "zero"], [f"z{stride}"]))  # [1,1,h,w] zeros
        # one anchor per cell: [1,k,h,w] -> [h,w,k] -> [N,k]
        for kind, src, shape in (("score", f"smap{stride}", "shape1"), ("bbox", "box_c", "shape4"),
                                 ("kps", "kps_c", "shape10")):  # fmt: skip
            if kind == "score":
                mapped = src
            else:
                mapped = f"{kind}_m{stride}"
                nodes.append(helper.make_node("Add", [f"z{stride}", src], [mapped]))
            nodes.append(helper.make_node("Transpose", [mapped], [f"{kind}_t{stride}"], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Reshape", [f"{kind}_t{stride}", shape], [f"{kind}_{stride}"]))
            outputs[kind].append(f"{kind}_{stride}")
    inp = helper.make_tensor_value_info("input.1", TP.FLOAT, [1, 3, "?", "?"])
    outs = []
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        outs += [helper.make_tensor_value_info(n, TP.FLOAT, [f"N{n}", width]) for n in outputs[kind]]
    graph = helper.make_graph(nodes, "tiny_det", [inp], outs, inits)
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def _landmark_template() -> np.ndarray:
    """106 points in the [-1, 1] frame insightface uses for a 192-px crop of 1.5x the box."""
    pts = np.zeros((106, 2), np.float64)
    jaw = _OUTLINE[:33]
    for k, idx in enumerate(jaw):  # left temple -> chin -> right temple, y pointing down
        theta = np.pi - np.pi * k / 32
        pts[idx] = (0.5 * np.cos(theta), -0.05 + 0.55 * np.sin(theta))
    brows = _OUTLINE[33:]
    for k, idx in enumerate(brows):  # right -> left along a shallow arc above the eyes
        x = 0.45 - 0.9 * k / (len(brows) - 1)
        pts[idx] = (x, -0.32 - 0.08 * (1 - (x / 0.45) ** 2))
    inner = [i for i in range(106) if i not in _OUTLINE]
    for k, idx in enumerate(inner):  # eyes, nose, mouth: an inner ellipse
        theta = 2 * np.pi * k / len(inner)
        pts[idx] = (0.28 * np.cos(theta), 0.05 + 0.25 * np.sin(theta))
    return pts


def _gap_gemm(name: str, size: int, out_dim: int, bias: np.ndarray, scale: float, seed: int, path: Path,
              input_name: str = "data", output_name: str = "fc1") -> None:  # fmt: skip
    onnx, TP, helper, nh = _helpers()
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((3, out_dim)) * scale).astype(np.float32)
    inits = [_const(nh, "w", w), _const(nh, "b", bias.astype(np.float32).reshape(-1))]
    nodes = [
        helper.make_node("GlobalAveragePool", [input_name], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w", "b"], [output_name]),
    ]
    inp = helper.make_tensor_value_info(input_name, TP.FLOAT, [1, 3, size, size])
    out = helper.make_tensor_value_info(output_name, TP.FLOAT, [1, out_dim])
    graph = helper.make_graph(nodes, name, [inp], [out], inits)
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def _recognizer(path: Path, seed: int = 0) -> None:
    onnx, TP, helper, nh = _helpers()
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((3 * 8 * 8, 512)) / np.sqrt(192)).astype(np.float32)
    inits = [_const(nh, "w", w), _const(nh, "shape", np.array([-1, 192], np.int64))]
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["cells"], kernel_shape=[14, 14], strides=[14, 14]),
        helper.make_node("Reshape", ["cells", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["fc"]),
    ]
    inp = helper.make_tensor_value_info("input.1", TP.FLOAT, ["None", 3, 112, 112])
    out = helper.make_tensor_value_info("fc", TP.FLOAT, ["None", 512])
    graph = helper.make_graph(nodes, "tiny_rec", [inp], [out], inits)
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def write_tiny_face_pack(folder: str | os.PathLike, extras: bool = False) -> Path:
    """Write the stand-in pack into `folder` (created if needed) and return its path.

    `extras=True` adds the two models HyperLoRA does not need (3D-68 landmarks, gender/age) so
    the benchmark can run insightface's full published flow. Existing files are overwritten
    atomically; the content is deterministic.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    _detector(out / "tiny_det.onnx")
    _gap_gemm("tiny_2d106", 192, 212, _landmark_template().reshape(-1), 0.01, 1, out / "tiny_2d106.onnx")
    _recognizer(out / "tiny_rec.onnx")
    if extras:
        rng = np.random.default_rng(3)
        _gap_gemm("tiny_3d68", 192, 3309, rng.standard_normal(3309) * 0.3, 0.01, 2, out / "tiny_3d68.onnx")
        _gap_gemm("tiny_genderage", 96, 3, np.array([0.2, 0.8, 0.3]), 0.01, 4, out / "tiny_genderage.onnx")
    (out / STANDIN_MARKER).write_text(
        "Random stand-in face models written by hyperlora_core.standins.face_models for tests and demos.\n"
        "They are NOT face models: replace this folder with the real antelopev2 pack for real use.\n"
    )
    return out
