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
"""The four attention projections of one module, in the order their tokens come."""

LORA_KEY_SUFFIX: dict[str, str] = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out_0"}
"""How each projection is named in the exported kohya LoRA keys."""

TOKENS_PER_MODULE = 2 * len(PROJECTIONS)
"""Coefficient tokens per attention module: one for the down and one for the up factor of each projection."""
LORA_SCALE = 0.5
"""alpha / rank of every LoRA HyperLoRA makes (alpha = rank / 2, as published): exported files carry it as
`.alpha`, and training and the per-sample hooks apply the same scale, so users get what was trained."""
DEFAULT_DIM_HEAD = 64
TRIGGER_WORDS = "fcsks fxhks fhyks, "


@dataclass(frozen=True)
class ModuleSpec:
    """One LoRA'd attention module: its LoRA key prefix and its widths."""

    name: str
    hidden_size: int
    cross_attention_dim: int | None

    def in_features(self, projection: str) -> int:
        if projection in ("to_k", "to_v") and self.cross_attention_dim:
            return self.cross_attention_dim
        return self.hidden_size

    def out_features(self, projection: str) -> int:  # noqa: ARG002 - same for all four
        return self.hidden_size


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
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def has_base(self) -> bool:
        return self.base_rank is not None

    @property
    def num_layers(self) -> int:
        return len(self.modules) * len(PROJECTIONS)

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(in_features, out_features) of every LoRA'd linear, module-major, projection-minor."""
        return [(m.in_features(p), m.out_features(p)) for m in self.modules for p in PROJECTIONS]

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> HyperLoRAConfig:
        raw = json.loads(text)
        raw["modules"] = tuple(ModuleSpec(**m) for m in raw["modules"])
        raw["resampler"] = _resampler_from_dict(raw["resampler"])
        if raw.get("base_resampler"):
            raw["base_resampler"] = _resampler_from_dict(raw["base_resampler"])
        if raw.get("id_projector"):
            raw["id_projector"] = IDProjectorConfig(**raw["id_projector"])
        return cls(**raw)


def _resampler_from_dict(raw: dict) -> ResamplerConfig:
    raw = dict(raw)
    raw["input_dims"] = tuple(raw["input_dims"])
    return ResamplerConfig(**raw)


def parse_module_list(raw: object, source: str) -> tuple[ModuleSpec, ...]:
    """Validate the ordered `name -> {hidden_size, cross_attention_dim}` table of the JSON file."""
    if not isinstance(raw, dict) or not raw:
        raise HyperLoRAError(
            f"{source}: expected a JSON object mapping module names to "
            '{"hidden_size": int, "cross_attention_dim": int or null}; found '
            f"{type(raw).__name__}{' (empty)' if not raw else ''}."
        )
    specs = []
    for name, info in raw.items():
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
        specs.append(ModuleSpec(name=str(name), hidden_size=info["hidden_size"], cross_attention_dim=cross))
    return tuple(specs)


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


_BASIS_KEY = re.compile(r"^(\d+)\.(to_q|to_k|to_v|to_out)\.(id|base)_(down|up)_basis$")


def basis_key(module: int, projection: str, kind: str, part: str) -> str:
    """The published basis tensor name: `<module index>.<projection>.<id|base>_<down|up>_basis`."""
    return f"{module}.{projection}.{kind}_{part}_basis"


def infer_basis(
    shapes: dict[str, tuple[int, ...]], modules: tuple[ModuleSpec, ...], source: str
) -> tuple[int, int, int | None]:
    """Check every basis tensor against the module table; return (K, rank, base rank or None)."""
    unknown = [k for k in shapes if not _BASIS_KEY.match(k)]
    if unknown:
        raise HyperLoRAError(
            f"{source}: unexpected keys {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; a basis file holds "
            "only '<module index>.<to_q|to_k|to_v|to_out>.<id|base>_<down|up>_basis' tensors."
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
    first = _need(shapes, basis_key(0, PROJECTIONS[0], "id", "down"), source, 3)
    basis_size, rank = first[0], first[2]
    base_first = basis_key(0, PROJECTIONS[0], "base", "down")
    has_base = base_first in shapes
    base_rank = _need(shapes, base_first, source, 3)[2] if has_base else None
    for i, spec in enumerate(modules):
        for proj in PROJECTIONS:
            n_in, n_out = spec.in_features(proj), spec.out_features(proj)
            kinds = [("id", rank)] + ([("base", base_rank)] if has_base else [])
            for kind, r in kinds:
                for part, expected in (("down", (basis_size, n_in, r)), ("up", (basis_size, r, n_out))):
                    key = basis_key(i, proj, kind, part)
                    found = shapes.get(key)
                    if found is None:
                        raise HyperLoRAError(f"{source}: key '{key}' is missing.")
                    if tuple(found) != expected:
                        raise HyperLoRAError(
                            f"{source}: '{key}' has shape {list(found)} but module '{spec.name}' "
                            f"(hidden_size {spec.hidden_size}, cross_attention_dim {spec.cross_attention_dim}) "
                            f"needs {list(expected)}. The JSON and the .safetensors do not match; use the "
                            "hyper_lora_modules.json that came with this basis."
                        )
    return basis_size, rank, base_rank


def check_consistency(config: HyperLoRAConfig, source: str) -> None:
    """Cross-part checks: queries vs modules, coefficient width vs basis, stream widths."""
    expected_q = TOKENS_PER_MODULE * len(config.modules)
    for label, rs in (("resampler", config.resampler), ("base_resampler", config.base_resampler)):
        if rs is None:
            continue
        if rs.num_queries != expected_q:
            raise HyperLoRAError(
                f"{source}: {label} has {rs.num_queries} queries but {len(config.modules)} modules need "
                f"{expected_q} (8 per module). The resampler and hyper_lora_modules.json are from different "
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
