"""Architecture settings of a HyperLoRA checkpoint, inferred from tensor shapes.

Nothing here asks the user: every number comes from the weights (as spandrel does for upscalers),
except the split of the attention width into heads, which shapes cannot tell (only their
product); it defaults to 64-dim heads, the published value, and can be overridden.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from .errors import HyperLoRAError

PROJECTIONS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out")
"""The four projections of an attention module (`ModuleSpec.attention`), in the order their tokens come;
these are also their names in the published basis keys."""

_ATTENTION_SUFFIX: dict[str, str] = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out_0"}
"""How each attention projection is named in kohya LoRA keys (`to_out.0` of diffusers)."""

TOKENS_PER_LAYER = 2
"""Coefficient tokens per LoRA'd linear: one for its down and one for its up factor."""
TOKENS_PER_MODULE = TOKENS_PER_LAYER * len(PROJECTIONS)
"""Coefficient tokens of an attention module (the published checkpoints' 8)."""
LORA_SCALE = 0.5
"""alpha / rank of every LoRA HyperLoRA makes (alpha = rank / 2, as published): exported files carry it as
`.alpha`, and training and the per-sample hooks apply the same scale, so users get what was trained."""
DEFAULT_DIM_HEAD = 64
TRIGGER_WORDS = "fcsks fxhks fhyks, "


@dataclass(frozen=True)
class LayerSpec:
    """One LoRA'd linear layer of a module: its kohya name suffix and its widths.

    `basis_name` is the layer's name in the published basis keys when it differs from `suffix`
    (attention's `to_out` vs kohya's `to_out_0`); a fused projection (FLUX's `qkv`, `linear1`) is one
    layer of its full width, as ComfyUI's LoRA key map addresses it."""

    suffix: str
    in_features: int
    out_features: int
    basis_name: str = ""

    @property
    def key(self) -> str:
        """The name in basis keys: `<module index>.<key>.<id|base>_<down|up>_basis`."""
        return self.basis_name or self.suffix


@dataclass(frozen=True)
class ModuleSpec:
    """One LoRA'd module: its kohya key prefix and the linear layers under it, in token order."""

    name: str
    layers: tuple[LayerSpec, ...]

    @classmethod
    def attention(cls, name: str, hidden: int, cross: int | None) -> ModuleSpec:
        """An attention module: to_q, to_k, to_v, to_out_0; to_k/to_v read the `cross` width when given."""
        def width(projection: str) -> int:
            return cross if projection in ("to_k", "to_v") and cross else hidden

        return cls(name, tuple(
            LayerSpec(_ATTENTION_SUFFIX[p], width(p), hidden, "" if _ATTENTION_SUFFIX[p] == p else p) for p in PROJECTIONS
        ))

    @property
    def attention_widths(self) -> tuple[int, int | None] | None:
        """(hidden, cross or None) when this is exactly an attention module, else None."""
        if len(self.layers) != len(PROJECTIONS):
            return None
        hidden = self.layers[0].out_features
        k_in = self.layers[1].in_features
        candidate = ModuleSpec.attention(self.name, hidden, None if k_in == hidden else k_in)
        return (hidden, None if k_in == hidden else k_in) if candidate == self else None

    def layer_names(self) -> list[str]:
        """Kohya LoRA module names of this module's layers (`<module>_<suffix>`), in token order."""
        return [f"{self.name}_{layer.suffix}" for layer in self.layers]

    def keeping(self, patterns: list[re.Pattern]) -> ModuleSpec | None:
        """This module with only the layers whose kohya name one of `patterns` finds (a training config's
        `lora.targets`, as the profile compiles them); None when it keeps none."""
        layers = tuple(x for x, n in zip(self.layers, self.layer_names()) if any(p.search(n) for p in patterns))
        return ModuleSpec(self.name, layers) if layers else None

    def table_entry(self) -> dict:
        """This module in the JSON module table: the published `{hidden_size, cross_attention_dim}` for an
        attention module, else `{"layers": [[suffix, in, out], ...]}`."""
        widths = self.attention_widths
        if widths is not None:
            return {"hidden_size": widths[0], "cross_attention_dim": widths[1]}
        return {"layers": [[x.suffix, x.in_features, x.out_features] for x in self.layers]}


@dataclass(frozen=True)
class ResamplerConfig:
    """Perceiver resampler shape: learned queries attend to one or two condition streams."""

    dim: int
    depth: int
    num_queries: int
    output_dim: int
    ff_mult: int
    heads: int
    dim_head: int
    input_dims: tuple[int, ...]

    @property
    def num_conditions(self) -> int:
        return len(self.input_dims)


@dataclass(frozen=True)
class IDProjectorConfig:
    """Linear map of one face embedding to `num_tokens` tokens of width `token_dim`."""

    embed_dim: int
    num_tokens: int
    token_dim: int


@dataclass(frozen=True)
class HyperLoRAConfig:
    """Everything needed to build the modules; derived from a checkpoint, never typed in."""

    modules: tuple[ModuleSpec, ...]
    basis_size: int
    rank: int
    resampler: ResamplerConfig
    id_projector: IDProjectorConfig | None
    base_rank: int | None = None
    base_resampler: ResamplerConfig | None = None
    face_pack: str = "antelopev2"
    trigger_words: str = TRIGGER_WORDS
    base: str = ""
    """The base-model profile this checkpoint's LoRAs are for (`comfy_bridge.bases`); "" = not recorded
    (the published checkpoints and our files written before profiles: all SDXL, see `base_name`)."""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def has_base(self) -> bool:
        return self.base_rank is not None

    @property
    def base_name(self) -> str:
        """The recorded base, or "sdxl" for checkpoints that record none: every one written before base
        profiles existed (the published ones, our older files, the toy world's) is for an SDXL-class UNet."""
        return self.base or LEGACY_BASE

    @property
    def num_layers(self) -> int:
        return sum(len(m.layers) for m in self.modules)

    @property
    def num_tokens(self) -> int:
        """Coefficient tokens (resampler queries) this module table needs: two per layer."""
        return TOKENS_PER_LAYER * self.num_layers

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(in_features, out_features) of every LoRA'd linear, module-major, layer-minor."""
        return [(x.in_features, x.out_features) for m in self.modules for x in m.layers]

    def layer_names(self) -> list[str]:
        """Kohya LoRA module name of every LoRA'd linear, in basis layer order (the one place they are built)."""
        return module_layer_names(self.modules)

    def to_json(self) -> str:
        raw = asdict(self)
        raw["modules"] = {m.name: m.table_entry() for m in self.modules}
        return json.dumps(raw, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> HyperLoRAConfig:
        raw = json.loads(text)
        mods = raw["modules"]
        if isinstance(mods, list):  # written before module tables: [{name, hidden_size, cross_attention_dim}]
            mods = {m["name"]: {k: v for k, v in m.items() if k != "name"} for m in mods}
        raw["modules"] = parse_module_list(mods, "config")
        raw["resampler"] = _resampler_from_dict(raw["resampler"])
        if raw.get("base_resampler"):
            raw["base_resampler"] = _resampler_from_dict(raw["base_resampler"])
        if raw.get("id_projector"):
            raw["id_projector"] = IDProjectorConfig(**raw["id_projector"])
        return cls(**raw)


LEGACY_BASE = "sdxl"
"""The base of a checkpoint that records none (see `HyperLoRAConfig.base_name`)."""


def module_layer_names(modules: tuple[ModuleSpec, ...] | list[ModuleSpec]) -> list[str]:
    """Kohya LoRA module names of every layer of a module table, in basis layer order."""
    return [name for m in modules for name in m.layer_names()]


def _resampler_from_dict(raw: dict) -> ResamplerConfig:
    raw = dict(raw)
    raw["input_dims"] = tuple(raw["input_dims"])
    return ResamplerConfig(**raw)


def parse_module_list(raw: object, source: str) -> tuple[ModuleSpec, ...]:
    """Validate the ordered module table of the JSON file: `name -> {hidden_size, cross_attention_dim}`
    (an attention module, the published form) or `name -> {"layers": [[suffix, in, out], ...]}`."""
    if not isinstance(raw, dict) or not raw:
        raise HyperLoRAError(
            f"{source}: expected a JSON object mapping module names to "
            '{"hidden_size": int, "cross_attention_dim": int or null}; found '
            f"{type(raw).__name__}{' (empty)' if not raw else ''}."
        )
    specs = []
    for name, info in raw.items():
        if isinstance(info, dict) and "layers" in info and "hidden_size" not in info:
            specs.append(ModuleSpec(str(name), _parse_layers(name, info["layers"], source)))
            continue
        if not isinstance(info, dict) or not _is_int(info.get("hidden_size")):
            raise HyperLoRAError(f'{source}: entry "{name}" needs an integer "hidden_size"; found {info!r}. '
                                 + _FROM_DOWNLOAD)
        cross = info.get("cross_attention_dim")
        if cross is not None and not _is_int(cross):
            raise HyperLoRAError(f'{source}: entry "{name}" has a non-integer "cross_attention_dim": {cross!r}. '
                                 + _FROM_DOWNLOAD)
        for key, value in (("hidden_size", info["hidden_size"]), ("cross_attention_dim", cross)):
            if value is not None and value < 1:
                raise HyperLoRAError(f'{source}: entry "{name}" has "{key}" {value}; a layer width must be a '
                                     "positive integer. " + _FROM_DOWNLOAD)
        specs.append(ModuleSpec.attention(str(name), info["hidden_size"], cross))
    return tuple(specs)


def _parse_layers(name: object, raw: object, source: str) -> tuple[LayerSpec, ...]:
    """`[[suffix, in_features, out_features], ...]` of one generic module entry."""
    layers = []
    for item in raw if isinstance(raw, list) and raw else [None]:
        ok = (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and item[0]
              and all(_is_int(v) and v >= 1 for v in item[1:]))
        if not ok:
            raise HyperLoRAError(f'{source}: entry "{name}" has layer {item!r}; each layer is [suffix, in_features, '
                                 "out_features] with positive integer widths. " + _FROM_DOWNLOAD)
        layers.append(LayerSpec(item[0], item[1], item[2]))
    return tuple(layers)


_FROM_DOWNLOAD = "The file is damaged or edited: use the one that came with this checkpoint."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a width


def _need(shapes: dict[str, tuple[int, ...]], key: str, source: str, ndim: int) -> tuple[int, ...]:
    if key not in shapes:
        raise HyperLoRAError(f"{source}: key '{key}' is missing; this file is not a HyperLoRA checkpoint part.")
    shape = shapes[key]
    if len(shape) != ndim:
        raise HyperLoRAError(f"{source}: '{key}' has shape {list(shape)}, expected {ndim} dimensions.")
    if not all(n >= 1 for n in shape):
        raise HyperLoRAError(f"{source}: '{key}' has shape {list(shape)}, with a zero-size dimension; the file is "
                             "damaged or not a HyperLoRA checkpoint part. Download it again.")
    return shape


def infer_resampler(
    shapes: dict[str, tuple[int, ...]], source: str, dim_head: int = DEFAULT_DIM_HEAD
) -> ResamplerConfig:
    """Read a resampler's shape from its tensor shapes (the keys of resampler.safetensors)."""
    _, num_queries, dim = _need(shapes, "latents", source, 3)
    output_dim = _need(shapes, "proj_out.weight", source, 2)[0]
    input_dims = [_need(shapes, "proj_in.weight", source, 2)[1]]
    if "proj_in_2.weight" in shapes:
        input_dims.append(_need(shapes, "proj_in_2.weight", source, 2)[1])
    layer_ids = {int(m.group(1)) for k in shapes if (m := re.match(r"layers\.(\d+)\.", k))}
    depth = len(layer_ids)
    if depth == 0 or layer_ids != set(range(depth)):
        raise HyperLoRAError(f"{source}: resampler layers must be numbered 0..n-1; found {sorted(layer_ids)}.")
    inner = _need(shapes, "layers.0.attn1.to_q.weight", source, 2)[0]
    ff_hidden = _need(shapes, "layers.0.ff.net.0.proj.weight", source, 2)[0]
    if ff_hidden % dim:
        raise HyperLoRAError(f"{source}: feed-forward width {ff_hidden} is not a multiple of the width {dim}.")
    if inner % dim_head:
        raise HyperLoRAError(
            f"{source}: attention width {inner} is not divisible by the head size {dim_head}; "
            "pass dim_head= with the value the checkpoint was trained with."
        )
    return ResamplerConfig(
        dim=dim,
        depth=depth,
        num_queries=num_queries,
        output_dim=output_dim,
        ff_mult=ff_hidden // dim,
        heads=inner // dim_head,
        dim_head=dim_head,
        input_dims=tuple(input_dims),
    )


def infer_id_projector(shapes: dict[str, tuple[int, ...]], source: str) -> IDProjectorConfig:
    """Read the ID projector's shape: Linear(E -> T*D), LayerNorm(D)."""
    total, embed_dim = _need(shapes, "0.weight", source, 2)
    (token_dim,) = _need(shapes, "2.weight", source, 1)
    if total % token_dim:
        raise HyperLoRAError(
            f"{source}: '0.weight' has {total} outputs, not a multiple of the token width {token_dim}."
        )
    return IDProjectorConfig(embed_dim=embed_dim, num_tokens=total // token_dim, token_dim=token_dim)


_BASIS_KEY = re.compile(r"^(\d+)\.([A-Za-z0-9_]+)\.(id|base)_(down|up)_basis$")


def basis_key(module: int, layer: str, kind: str, part: str) -> str:
    """The published basis tensor name: `<module index>.<layer key>.<id|base>_<down|up>_basis`."""
    return f"{module}.{layer}.{kind}_{part}_basis"


def basis_layer_keys(modules: tuple[ModuleSpec, ...]) -> list[tuple[int, str]]:
    """(module index, layer key) of every basis layer, in layer order: what `basis_key` is called with."""
    return [(i, layer.key) for i, m in enumerate(modules) for layer in m.layers]


def infer_basis(
    shapes: dict[str, tuple[int, ...]], modules: tuple[ModuleSpec, ...], source: str
) -> tuple[int, int, int | None]:
    """Check every basis tensor against the module table; return (K, rank, base rank or None)."""
    unknown = [k for k in shapes if not _BASIS_KEY.match(k)]
    if unknown:
        raise HyperLoRAError(
            f"{source}: unexpected keys {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; a basis file holds "
            "only '<module index>.<layer>.<id|base>_<down|up>_basis' tensors (attention layers: to_q, to_k, to_v, "
            "to_out)."
        )
    indices = {int(_BASIS_KEY.match(k).group(1)) for k in shapes}
    if indices != set(range(len(modules))):
        extra = sorted(indices - set(range(len(modules))))
        missing = sorted(set(range(len(modules))) - indices)
        raise HyperLoRAError(
            f"{source}: the basis has modules {len(indices)} but the JSON lists {len(modules)} "
            f"(missing indices {missing[:5]}, extra indices {extra[:5]}). The JSON and the .safetensors must "
            "come from the same checkpoint folder."
        )
    first_layer = modules[0].layers[0].key
    first = _need(shapes, basis_key(0, first_layer, "id", "down"), source, 3)
    basis_size, rank = first[0], first[2]
    base_first = basis_key(0, first_layer, "base", "down")
    has_base = base_first in shapes
    base_rank = _need(shapes, base_first, source, 3)[2] if has_base else None
    known = set()
    for i, spec in enumerate(modules):
        for layer in spec.layers:
            n_in, n_out = layer.in_features, layer.out_features
            kinds = [("id", rank)] + ([("base", base_rank)] if has_base else [])
            for kind, r in kinds:
                for part, expected in (("down", (basis_size, n_in, r)), ("up", (basis_size, r, n_out))):
                    key = basis_key(i, layer.key, kind, part)
                    known.add(key)
                    found = shapes.get(key)
                    if found is None:
                        raise HyperLoRAError(f"{source}: key '{key}' is missing.")
                    if tuple(found) != expected:
                        raise HyperLoRAError(
                            f"{source}: '{key}' has shape {list(found)} but module '{spec.name}' "
                            f"({_widths(spec)}) needs {list(expected)}. The JSON and the .safetensors do not match; use the "
                            "hyper_lora_modules.json that came with this basis."
                        )
    stray = sorted(set(shapes) - known)
    if stray:
        raise HyperLoRAError(
            f"{source}: unexpected keys {stray[:5]}{' ...' if len(stray) > 5 else ''}: layers the module table does "
            "not list. The JSON and the .safetensors must come from the same checkpoint folder."
        )
    return basis_size, rank, base_rank


def _widths(spec: ModuleSpec) -> str:
    widths = spec.attention_widths
    if widths is not None:
        return f"hidden_size {widths[0]}, cross_attention_dim {widths[1]}"
    return ", ".join(f"{x.suffix} {x.in_features}->{x.out_features}" for x in spec.layers)


def check_consistency(config: HyperLoRAConfig, source: str) -> None:
    """Cross-part checks: queries vs modules, coefficient width vs basis, stream widths."""
    expected_q = config.num_tokens
    for label, rs in (("resampler", config.resampler), ("base_resampler", config.base_resampler)):
        if rs is None:
            continue
        if rs.num_queries != expected_q:
            raise HyperLoRAError(
                f"{source}: {label} has {rs.num_queries} queries but {len(config.modules)} modules need "
                f"{expected_q} (2 per LoRA'd layer, 8 per attention module). The resampler and hyper_lora_modules.json are from different "
                "checkpoints."
            )
        if rs.output_dim != config.basis_size:
            raise HyperLoRAError(
                f"{source}: {label} emits {rs.output_dim} coefficients per token but the basis has "
                f"{config.basis_size} elements."
            )
    if config.base_resampler is not None and not config.has_base:
        raise HyperLoRAError(f"{source}: base_resampler.safetensors is present but the basis has no base part.")
    if config.has_base and config.base_resampler is None:
        raise HyperLoRAError(
            f"{source}: the basis has a Base-LoRA part but base_resampler.safetensors is missing."
        )
    proj = config.id_projector
    if proj is not None and config.resampler.input_dims[0] != proj.token_dim:
        raise HyperLoRAError(
            f"{source}: the ID projector makes {proj.token_dim}-wide tokens but the resampler's first "
            f"input expects {config.resampler.input_dims[0]}."
        )
