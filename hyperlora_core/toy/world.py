"""The synthetic identity world: cartoon faces whose identity is six discrete attributes.

Identity (what a HyperLoRA must transfer) is skin tone, eye colour, eye spacing, hair colour,
hair shape and mouth: 4*4*3*4*3*3 = 1728 identities. Everything else is "base" (what the ID-LoRA
must NOT copy from the reference, and what the Base-LoRA carries): background colour (8 named
colours, jittered) and pattern, clothing colour (8), and a small pose shift. The three named base
factors can be said in a caption ("red shirt, blue striped background") and judged in an image.
A fixed 20 % of identities is held out of every training stage, so evaluation measures transfer
to people the hypernetwork has never seen. Rendering is deterministic given the factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

NAME = "toy-world"
"""The toy world's name wherever one is recorded: its face pack / embedding space (what its HyperLoRA
and IDConditions carry), its trainer backbone and its prepared dataset."""

IMAGE_SIZE = 32
_CANVAS = 96
_S = _CANVAS / IMAGE_SIZE

ATTRIBUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("skin", ("pale skin", "tan skin", "brown skin", "dark skin")),
    ("eye_colour", ("blue eyes", "green eyes", "amber eyes", "violet eyes")),
    ("eye_spacing", ("close-set eyes", "average-set eyes", "wide-set eyes")),
    ("hair_colour", ("black hair", "chestnut hair", "blond hair", "red hair")),
    ("hair_shape", ("short hair", "spiky hair", "long hair")),
    ("mouth", ("smiling", "neutral mouth", "open mouth")),
)
"""Attribute name and the caption phrase of each value (the phrases the caption encoder reads)."""

ATTRIBUTE_NAMES = tuple(name for name, _ in ATTRIBUTES)
ATTRIBUTE_SIZES = tuple(len(values) for _, values in ATTRIBUTES)
NUM_ATTRIBUTES = len(ATTRIBUTES)
NUM_IDENTITIES = int(np.prod(ATTRIBUTE_SIZES))
CHANCE_MATCH = float(np.mean([1.0 / n for n in ATTRIBUTE_SIZES]))
"""Mean per-attribute accuracy of a uniform guess (0.292)."""

HELDOUT_FRACTION = 0.2
SPLIT_SEED = 20251124

_SKIN = ((244, 214, 190), (214, 165, 120), (150, 98, 62), (88, 56, 38))
_IRIS = ((40, 90, 235), (30, 175, 60), (215, 150, 20), (160, 40, 200))
_EYE_GAP = (8, 12, 16)
_HAIR = ((25, 22, 22), (110, 60, 25), (240, 210, 90), (205, 55, 25))
_CLOTHES = ((200, 30, 30), (30, 160, 40), (30, 60, 200), (230, 200, 30), (120, 40, 160), (240, 240, 240),
            (30, 30, 30), (240, 120, 20))
_BACKGROUNDS = ((215, 75, 75), (235, 150, 55), (220, 210, 80), (85, 175, 85), (60, 170, 170), (80, 110, 215),
                (155, 85, 195), (150, 150, 150))
BACKGROUND_JITTER = 14
"""Each render's background is its named colour +- this much per channel (renders stay varied)."""
PATTERNS = ("plain", "stripes", "dots")
MAX_SHIFT = 2

BASE_FACTORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("background", ("red", "orange", "yellow", "green", "teal", "blue", "purple", "grey")),
    ("pattern", ("plain", "striped", "dotted")),
    ("clothing", ("red", "green", "blue", "yellow", "purple", "white", "black", "orange")),
)
"""The named non-identity factors (caption words, judged by `base_judge.BaseJudge`)."""
BASE_FACTOR_NAMES = tuple(name for name, _ in BASE_FACTORS)
BASE_FACTOR_SIZES = tuple(len(values) for _, values in BASE_FACTORS)
NUM_BASE_FACTORS = len(BASE_FACTORS)


def identity_attributes(identity: int) -> tuple[int, ...]:
    """Identity index (0..1727) -> its six attribute values (mixed radix, first attribute slowest)."""
    if not 0 <= identity < NUM_IDENTITIES:
        raise ValueError(f"identity {identity} is outside 0..{NUM_IDENTITIES - 1}")
    values = []
    for size in reversed(ATTRIBUTE_SIZES):
        values.append(identity % size)
        identity //= size
    return tuple(reversed(values))


def identity_index(attributes) -> int:
    index = 0
    for value, size in zip(attributes, ATTRIBUTE_SIZES):
        index = index * size + int(value)
    return index


def all_attributes() -> np.ndarray:
    """`[1728, 6]` attribute table, row i = identity i."""
    return np.array([identity_attributes(i) for i in range(NUM_IDENTITIES)], dtype=np.int64)


def heldout_identities() -> np.ndarray:
    """The fixed held-out identities (sorted), never used by any training stage."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(NUM_IDENTITIES)
    return np.sort(perm[: int(round(HELDOUT_FRACTION * NUM_IDENTITIES))])


def spread_heldout_identities(count: int) -> np.ndarray:
    """`count` held-out identities spread evenly over the sorted list: the same set wherever the
    evaluation, the tests, the demo photos and the metric harness ask for that many."""
    held = heldout_identities()
    return held[:: max(1, len(held) // count)][:count]


def train_identities() -> np.ndarray:
    return np.setdiff1d(np.arange(NUM_IDENTITIES), heldout_identities())


@dataclass(frozen=True)
class Base:
    """The non-identity factors of one render."""

    background: tuple[int, int, int]
    pattern: int
    clothing: int
    dx: int
    dy: int
    background_name: int = 0
    """Index into `BASE_FACTORS[0]` of the named colour `background` was jittered from."""

    @property
    def factors(self) -> tuple[int, int, int]:
        """(background colour, pattern, clothing colour): the named base factors."""
        return self.background_name, self.pattern, self.clothing


def sample_base(rng: np.random.Generator, factors: tuple[int, int, int] | None = None) -> Base:
    """Random base factors; `factors` fixes the named ones (background, pattern, clothing)."""
    name = int(rng.integers(len(_BACKGROUNDS)))
    jitter = rng.integers(-BACKGROUND_JITTER, BACKGROUND_JITTER + 1, size=3)
    pattern, clothing = int(rng.integers(len(PATTERNS))), int(rng.integers(len(_CLOTHES)))
    dx, dy = (int(v) for v in rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=2))
    if factors is not None:
        name, pattern, clothing = (int(v) for v in factors)
    colour = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(_BACKGROUNDS[name], jitter))
    return Base(background=colour, pattern=pattern, clothing=clothing, dx=dx, dy=dy, background_name=name)


def _shade(rgb, f: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, c * f))) for c in rgb)


def render(identity: int, base: Base) -> np.ndarray:
    """One `[32, 32, 3]` uint8 image: drawn at 96 px, downsampled with LANCZOS."""
    skin, eye, gap, hair_c, hair_s, mouth = identity_attributes(identity)
    img = Image.new("RGB", (_CANVAS, _CANVAS), base.background)
    d = ImageDraw.Draw(img)
    dark = _shade(base.background, 0.6)
    if PATTERNS[base.pattern] == "stripes":
        for x in range(-_CANVAS, _CANVAS, 16):
            d.line([(x, _CANVAS), (x + _CANVAS, 0)], fill=dark, width=5)
    elif PATTERNS[base.pattern] == "dots":
        for y in range(6, _CANVAS, 16):
            for x in range(6 + (y // 16 % 2) * 8, _CANVAS, 16):
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=dark)
    cx, cy = 48 + base.dx * _S, 44 + base.dy * _S
    hair = _HAIR[hair_c]
    if hair_s == 2:  # long: falls behind the shoulders
        d.rectangle([cx - 27, cy - 10, cx + 27, cy + 34], fill=hair)
    d.chord([cx - 34, cy + 28, cx + 34, cy + 80], 180, 360, fill=_CLOTHES[base.clothing])
    d.rectangle([cx - 34, cy + 54, cx + 34, _CANVAS + 20], fill=_CLOTHES[base.clothing])
    d.rectangle([cx - 7, cy + 18, cx + 7, cy + 32], fill=_shade(_SKIN[skin], 0.9))
    d.ellipse([cx - 21, cy - 25, cx + 21, cy + 27], fill=_SKIN[skin])
    if hair_s == 0:  # short cap
        d.chord([cx - 23, cy - 29, cx + 23, cy + 5], 180, 360, fill=hair)
    elif hair_s == 1:  # spiky
        d.chord([cx - 22, cy - 25, cx + 22, cy + 1], 180, 360, fill=hair)
        for i in range(5):
            x0 = cx - 22 + i * 9
            d.polygon([(x0, cy - 14), (x0 + 9, cy - 14), (x0 + 4.5, cy - 36)], fill=hair)
    else:
        d.chord([cx - 24, cy - 29, cx + 24, cy + 9], 180, 360, fill=hair)
    ey = cy - 2
    for sx in (-1, 1):
        ex = cx + sx * _EYE_GAP[gap]
        d.ellipse([ex - 6, ey - 5, ex + 6, ey + 5], fill=(250, 250, 250))
        d.ellipse([ex - 4.5, ey - 4.5, ex + 4.5, ey + 4.5], fill=_IRIS[eye])
        d.ellipse([ex - 1.5, ey - 1.5, ex + 1.5, ey + 1.5], fill=(10, 10, 10))
    my = cy + 14
    lips = (150, 20, 40)
    if mouth == 0:
        d.arc([cx - 10, my - 9, cx + 10, my + 5], 20, 160, fill=lips, width=4)
    elif mouth == 1:
        d.line([(cx - 9, my), (cx + 9, my)], fill=lips, width=4)
    else:
        d.ellipse([cx - 6, my - 6, cx + 6, my + 6], fill=lips)
        d.ellipse([cx - 3, my - 3, cx + 3, my + 3], fill=(60, 0, 10))
    return np.asarray(img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS), dtype=np.uint8)


@dataclass
class Renders:
    """A batch of renders with their labels (numpy, uint8 images)."""

    images: np.ndarray  # [N, 32, 32, 3] uint8
    identity: np.ndarray  # [N]
    attributes: np.ndarray  # [N, 6]
    render_index: np.ndarray  # [N]: which render of its identity (0 = the reference in evaluation)
    base: np.ndarray  # [N, 8]: background r, g, b, pattern, clothing, dx, dy, background colour name

    @property
    def base_factors(self) -> np.ndarray:
        """`[N, 3]` named base factors: background colour, pattern, clothing colour."""
        return self.base[:, [7, 3, 4]]

    def __len__(self) -> int:
        return len(self.identity)

    def subset(self, mask) -> Renders:
        return Renders(self.images[mask], self.identity[mask], self.attributes[mask], self.render_index[mask],
                       self.base[mask])


def render_set(identities, renders_per_identity: int, seed: int) -> Renders:
    """`renders_per_identity` renders of each identity, with random base factors (reproducible).

    Render j of identity i uses a generator seeded by (seed, i, j), so the same picture comes back
    whatever subset of identities is asked for.
    """
    identities = np.asarray(identities, dtype=np.int64)
    images = np.empty((len(identities) * renders_per_identity, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    ident = np.repeat(identities, renders_per_identity)
    index = np.tile(np.arange(renders_per_identity), len(identities))
    base = np.empty((len(ident), 8), dtype=np.int64)
    for n, (i, j) in enumerate(zip(ident, index)):
        b = sample_base(np.random.default_rng((seed, int(i), int(j))))
        images[n] = render(int(i), b)
        base[n] = (*b.background, b.pattern, b.clothing, b.dx, b.dy, b.background_name)
    table = all_attributes()
    return Renders(images=images, identity=ident, attributes=table[ident], render_index=index, base=base)



def face_mask(size: int = IMAGE_SIZE) -> np.ndarray:
    """`[size, size]` float mask of the central face disc (covers every pose shift).

    The toy analogue of the published `remove_background`: the CLIP-analogue input keeps the face
    and greys the rest, so background and clothes cannot leak into the ID-LoRA.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    cx, cy, r = size * 0.5, size * 0.45, size * 0.34
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    return np.clip((r - dist) / 1.5 + 0.5, 0.0, 1.0)


def face_blurred(images: np.ndarray | None = None, *, tensor=None, sigma: float = 3.0):
    """The Base-LoRA's input: the face disc replaced by a heavily blurred copy (soft edge).

    The toy analogue of the published Base condition (face polygon x 1.4 blurred with radius 45 at
    512 px): background, clothing and pose stay, facial detail goes. Colour survives a blur, so skin
    and hair tone are still faintly there, as in the published crop. Takes uint8 `[N, H, W, 3]`
    (returns the same) or, with `tensor=`, float `[N, 3, H, W]` in 0..1.
    """
    import torch
    import torch.nn.functional as F

    from ..pixels import uint8_pixels

    x = tensor if tensor is not None else torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    radius = int(3 * sigma)
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    blurred = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(blurred, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    blurred = F.conv2d(blurred, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    yy, xx = np.mgrid[0 : x.shape[-2], 0 : x.shape[-1]].astype(np.float32) + 0.5
    size = x.shape[-1]
    dist = np.sqrt((xx - size * 0.5) ** 2 + (yy - size * 0.45) ** 2)
    mask = torch.from_numpy(np.clip((size * 0.36 - dist) / 2.0 + 0.5, 0.0, 1.0)).to(x)
    out = x * (1 - mask) + blurred * mask
    if tensor is not None:
        return out
    return uint8_pixels(out.permute(0, 2, 3, 1))


def caption(attributes, keep=None, base=None) -> str:
    """The caption of an attribute tuple; `keep[i] False` leaves attribute i unsaid. `base`
    (background colour, pattern, clothing colour; None entries unsaid) adds the base phrases."""
    phrases = ["a face"]
    for i, (_, values) in enumerate(ATTRIBUTES):
        if attributes is None or attributes[i] is None or (keep is not None and not keep[i]):
            continue
        phrases.append(values[int(attributes[i])])
    return ", ".join(phrases + base_phrases(base))


def base_phrases(base) -> list[str]:
    """("blue shirt", "red striped background")-style phrases for named base factors."""
    if base is None:
        return []
    colour, pattern, clothing = (None if v is None else int(v) for v in base)
    out = []
    if clothing is not None:
        out.append(f"{BASE_FACTORS[2][1][clothing]} shirt")
    words = [BASE_FACTORS[0][1][colour]] if colour is not None else []
    if pattern is not None:
        words.append(BASE_FACTORS[1][1][pattern])
    if words:
        out.append(" ".join(words) + " background")
    return out


def grid(images: np.ndarray, rows: int, scale: int = 3, pad: int = 2) -> Image.Image:
    """Tile `[N, H, W, 3]` uint8 images into rows (N must be a multiple of rows)."""
    n, h, w, _ = images.shape
    cols = (n + rows - 1) // rows
    out = Image.new("RGB", (cols * (w * scale + pad) + pad, rows * (h * scale + pad) + pad), (255, 255, 255))
    for k in range(n):
        r, c = divmod(k, cols)
        tile = Image.fromarray(images[k]).resize((w * scale, h * scale), Image.NEAREST)
        out.paste(tile, (pad + c * (w * scale + pad), pad + r * (h * scale + pad)))
    return out
