"""Each node is declared once, in a neutral form, and built for whichever node API the host has.

ComfyUI >= 0.3.4x offers the V3 schema (`comfy_api.latest.io`); older hosts only know classic
classes (`INPUT_TYPES`, `RETURN_TYPES`, ...). A `NodeDef` holds what both need -- inputs in widget
order, outputs, the function to run, an optional validator -- and `build_v3` / `build_classic`
turn it into one or the other. Node files never touch either API directly.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hyperlora_core.errors import HyperLoRAError

from .cache import file_fingerprint

CATEGORY = "HyperLoRA"

WIDGET_TYPES = ("INT", "FLOAT", "BOOLEAN", "STRING", "COMBO")


@dataclass(frozen=True)
class In:
    """One input. `type` is a ComfyUI type name; "COMBO" takes `options` (a list or a function
    called each time the node list is built, so new files show up without a restart)."""

    name: str
    type: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    options: Sequence[str] | Callable[[], Sequence[str]] | None = None
    optional: bool = False
    multiline: bool = False
    tooltip: str | None = None
    check: Callable[[Any], str | None] | None = None
    """Checks this widget's value when a prompt is queued: None = fine, else the message, which names the
    input and echoes the value as given. For COMBOs of model files (what is missing or damaged, where it
    goes, how to get it) and free-text widgets (e.g. `weights`). A COMBO without `check` is checked
    against its list by ComfyUI itself (see `_v3_combo`), under that input alone."""
    identity: Callable[[Any], Any] | None = None
    """COMBO naming a file or folder: the path a value names. ComfyUI caches a node's outputs by its inputs
    (the name); with this, the file's identity (path, size, mtime, inode: `nodes.cache.file_fingerprint`) is
    part of that key too, so a file replaced under the same name is loaded again."""

    def option_list(self) -> list[str]:
        opts = self.options() if callable(self.options) else self.options
        return list(opts or [])

    def problem(self, value: Any) -> str | None:
        """Why a value is refused (its check, or for a COMBO its list), or None; `NodeDef.call` asks it
        again for COMBOs, for callers that skip the host's queue check."""
        if self.check is not None:
            return self.check(value)
        options = self.option_list()
        if value in options:
            return None
        shown = ", ".join(map(str, options[:12])) + (", ..." if len(options) > 12 else "")
        return f"{self.name}: '{value}' is not one of the choices ({shown})."


@dataclass(frozen=True)
class Out:
    type: str
    name: str
    tooltip: str | None = None


@dataclass(frozen=True)
class Result:
    """What a node returns when it also shows something in the UI (output nodes)."""

    values: tuple = ()
    ui: dict | None = None


@dataclass(frozen=True)
class NodeDef:
    """A node, independent of the node API. `run(**inputs)` returns a tuple or a `Result`.

    `validate(**some_inputs)` returns True or an error message; ComfyUI calls it before running
    the prompt with only the inputs named in its signature (so its own range and list checks
    still run for the others), and rejects the prompt with that message.
    """

    node_id: str
    display_name: str
    description: str
    inputs: tuple[In, ...]
    outputs: tuple[Out, ...]
    run: Callable[..., tuple | Result]
    validate: Callable[..., bool | str] | None = None
    output_node: bool = False
    category: str = CATEGORY
    deprecated: bool = False
    always_run: bool = False
    """Run on every queue even if the inputs did not change (e.g. it reports on files on disk)."""
    wants_prompt: bool = False
    """`run` also gets `prompt=`, the whole API prompt (ComfyUI's hidden PROMPT input), e.g. for
    `%NodeName.widget%` in a filename_prefix."""

    def call(self, kwargs: dict) -> Result:
        if self.wants_prompt:
            kwargs.setdefault("prompt", None)
        for i in self.inputs:
            if i.optional and i.name not in kwargs:
                kwargs[i.name] = None
            elif i.type == "COMBO" and i.check is None and kwargs.get(i.name) is not None:
                message = i.problem(kwargs[i.name])
                if message:
                    raise HyperLoRAError(f"{self.display_name}: {message}")
        check_numbers(self, kwargs)
        out = self.run(**kwargs)
        if isinstance(out, Result):
            return out
        if not isinstance(out, tuple):
            raise TypeError(f"{self.node_id}: run() must return a tuple or a Result, got {type(out).__name__}")
        return Result(values=out)


def _queue_check(defn: NodeDef) -> Callable[..., bool | str] | None:
    """The inputs' own checks and the node's validator, as one function of the inputs they read.

    ComfyUI (v0.3.75 and later) calls one validator per node and files its message under every input
    that validator takes; so it takes only the inputs that have a check, and the other widgets keep
    ComfyUI's own per-input checks (ranges, choice lists). A node with two checked widgets (Encode
    Base's `weights` and `crop_scale_LRTB`) cannot be told apart by the host: each message names its
    widget and echoes its value, so the one that is wrong is clear."""
    checked = [i for i in defn.inputs if i.check is not None]
    own = list(inspect.signature(defn.validate).parameters) if defn.validate else []
    if not checked and defn.validate is None:
        return None

    def validate(**kwargs):
        for i in checked:
            if kwargs.get(i.name) is not None:
                message = i.check(kwargs[i.name])
                if message:
                    return message
        if defn.validate is not None:
            return defn.validate(**{k: kwargs[k] for k in own if k in kwargs})
        return True

    params = list(inspect.signature(defn.validate).parameters.values()) if defn.validate else []
    params += [inspect.Parameter(i.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
               for i in checked if i.name not in own]
    validate.__signature__ = inspect.Signature(params)
    return validate


def check_numbers(defn: NodeDef, kwargs: dict) -> None:
    """Every INT and FLOAT input is a finite number inside its declared range, or an error naming it.

    ComfyUI's own range check lets NaN through (every comparison with NaN is false) and the API
    accepts any JSON value, so a NaN strength would otherwise run and give black images.
    """
    for i in defn.inputs:
        if i.type not in ("INT", "FLOAT") or (i.optional and kwargs.get(i.name) is None):
            continue
        value = kwargs.get(i.name)
        bounds = f" between {i.min:g} and {i.max:g}" if i.min is not None and i.max is not None else ""
        where = f"{defn.display_name}: '{i.name}'"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise HyperLoRAError(f"{where} must be a number{bounds}; got {value!r}. Set the widget or the API value.")
        if not math.isfinite(value):
            raise HyperLoRAError(f"{where} is {value}; it must be a finite number{bounds}. Set the widget or the API value.")
        if (i.min is not None and value < i.min) or (i.max is not None and value > i.max):
            raise HyperLoRAError(f"{where} is {value:g}; it must be{bounds or ' in range'}. Set the widget or the API value.")


def _validator_with_signature(check: Callable, as_classmethod_of: str) -> Callable:
    """A `(cls, <input names>)` function: ComfyUI inspects the signature to pick what it passes."""
    params = [inspect.Parameter("cls", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for name, p in inspect.signature(check).parameters.items():
        params.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default))

    def validator(cls, **kwargs):
        return check(**kwargs)

    validator.__signature__ = inspect.Signature(params)
    validator.__name__ = as_classmethod_of
    return classmethod(validator)


def _always_changed(cls, **kwargs) -> float:
    return float("nan")  # never equal to itself: ComfyUI runs the node on every queue


def _changed(defn: NodeDef) -> classmethod | None:
    """ComfyUI's IS_CHANGED / fingerprint_inputs: NaN for `always_run`, else the identity of the files the
    inputs name (so a replaced file re-runs the node), else None (inputs alone decide)."""
    if defn.always_run:
        return classmethod(_always_changed)
    named = [i for i in defn.inputs if i.identity is not None]
    if not named:
        return None

    def fingerprint(cls, **kwargs) -> str:
        return file_fingerprint([(i.identity, kwargs.get(i.name)) for i in named])

    return classmethod(fingerprint)


# -- classic (V1) -----------------------------------------------------------------------------------
def _classic_input(i: In) -> tuple:
    if i.type == "COMBO":
        extra = {"default": i.default} if i.default is not None else {}
        return (i.option_list(), {**extra, **({"tooltip": i.tooltip} if i.tooltip else {})})
    opts: dict[str, Any] = {}
    if i.type in WIDGET_TYPES:
        for key in ("default", "min", "max", "step"):
            value = getattr(i, key)
            if value is not None:
                opts[key] = value
        if i.type == "FLOAT" and i.step is not None:
            opts["round"] = i.step
        if i.type == "STRING":
            opts["multiline"] = i.multiline
    if i.tooltip:
        opts["tooltip"] = i.tooltip
    return (i.type, opts) if opts else (i.type,)


def build_classic(defn: NodeDef) -> type:
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI's name
        spec: dict[str, dict] = {"required": {}, "optional": {}}
        for i in defn.inputs:
            spec["optional" if i.optional else "required"][i.name] = _classic_input(i)
        if defn.wants_prompt:
            spec["hidden"] = {"prompt": "PROMPT"}
        return spec

    def run(self, **kwargs):
        result = defn.call(kwargs)
        if result.ui is not None:
            return {"ui": result.ui, "result": result.values}
        return result.values

    attrs = {
        "INPUT_TYPES": classmethod(INPUT_TYPES),
        "RETURN_TYPES": tuple(o.type for o in defn.outputs),
        "RETURN_NAMES": tuple(o.name for o in defn.outputs),
        "OUTPUT_TOOLTIPS": tuple(o.tooltip or "" for o in defn.outputs),
        "FUNCTION": "run",
        "CATEGORY": defn.category,
        "DESCRIPTION": defn.description,
        "OUTPUT_NODE": defn.output_node,
        "DEPRECATED": defn.deprecated,
        "run": run,
        "NODE_DEF": defn,
    }
    check = _queue_check(defn)
    if check is not None:
        attrs["VALIDATE_INPUTS"] = _validator_with_signature(check, "VALIDATE_INPUTS")
    changed = _changed(defn)
    if changed is not None:
        attrs["IS_CHANGED"] = changed
    return type(_class_name(defn), (), attrs)


# -- V3 ---------------------------------------------------------------------------------------------
def _v3_type(io, type_name: str):
    builtin = {
        "INT": io.Int,
        "FLOAT": io.Float,
        "BOOLEAN": io.Boolean,
        "STRING": io.String,
        "COMBO": io.Combo,
        "IMAGE": io.Image,
        "MASK": io.Mask,
        "MODEL": io.Model,
        "CLIP": io.Clip,
        "VAE": io.Vae,
        "CLIP_VISION": io.ClipVision,
        "CONDITIONING": io.Conditioning,
        "LATENT": io.Latent,
    }
    return builtin.get(type_name) or io.Custom(type_name)


@functools.cache
def _v3_combo(io) -> type:
    """`io.Combo.Input` whose type is its option list, as a classic combo's is. ComfyUI v0.3.75 checks a
    value against the list only in that form (it lets a V3 "COMBO" value through to the node), and then
    names the node, the input, the value and the choices, under that input alone; frontends read both
    forms as a drop-down."""

    class ListedCombo(io.Combo.Input):
        def get_io_type(self):
            return list(self.options)

    return ListedCombo


def _v3_input(io, i: In):
    kind = _v3_type(io, i.type)
    common = {"optional": i.optional, "tooltip": i.tooltip}
    if i.type == "COMBO":
        return _v3_combo(io)(i.name, options=i.option_list(), default=i.default, **common)
    if i.type in ("INT", "FLOAT"):
        extra = {"round": i.step} if i.type == "FLOAT" and i.step is not None else {}
        return kind.Input(i.name, default=i.default, min=i.min, max=i.max, step=i.step, **extra, **common)
    if i.type == "BOOLEAN":
        return io.Boolean.Input(i.name, default=i.default, **common)
    if i.type == "STRING":
        return io.String.Input(i.name, default=i.default, multiline=i.multiline, **common)
    return kind.Input(i.name, **common)


def build_v3(defn: NodeDef, io) -> type:
    """An `io.ComfyNode` subclass; `io` is `comfy_api.latest.io` (passed in so this module imports
    nothing from the host)."""

    def define_schema(cls):
        return io.Schema(
            node_id=defn.node_id,
            display_name=defn.display_name,
            category=defn.category,
            description=defn.description,
            inputs=[_v3_input(io, i) for i in defn.inputs],
            outputs=[
                _v3_type(io, o.type).Output(id=f"out_{k}_{o.name}", display_name=o.name, tooltip=o.tooltip)
                for k, o in enumerate(defn.outputs)
            ],
            is_output_node=defn.output_node,
            is_deprecated=defn.deprecated,
            hidden=[io.Hidden.prompt] if defn.wants_prompt else None,
        )

    def execute(cls, **kwargs):
        if defn.wants_prompt:
            kwargs["prompt"] = cls.hidden.prompt if cls.hidden is not None else None
        result = defn.call(kwargs)
        return io.NodeOutput(*result.values, ui=result.ui)

    attrs = {
        "define_schema": classmethod(define_schema),
        "execute": classmethod(execute),
        "NODE_DEF": defn,
    }
    check = _queue_check(defn)
    if check is not None:
        attrs["validate_inputs"] = _validator_with_signature(check, "validate_inputs")
    changed = _changed(defn)
    if changed is not None:
        attrs["fingerprint_inputs"] = changed
    return type(_class_name(defn), (io.ComfyNode,), attrs)


def _class_name(defn: NodeDef) -> str:
    return "".join(ch for ch in defn.node_id if ch.isalnum()) + "Node"
