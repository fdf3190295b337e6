"""The synthetic identity world: cartoon faces whose identity is six discrete attributes.

Identity (what a HyperLoRA must transfer) is skin tone, eye colour, eye spacing, hair colour,
hair shape and mouth: 4*4*3*4*3*3 = 1728 identities. Everything else is "base" (what it must NOT
copy from the reference): background colour and pattern, clothing colour, and a small pose shift.
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
PATTERNS = ("plain", "stripes", "dots")
MAX_SHIFT = 2


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


def sample_base(rng: np.random.Generator) -> Base:
    return Base(
        background=tuple(int(v) for v in rng.integers(0, 256, size=3)),
        pattern=int(rng.integers(len(PATTERNS))),
        clothing=int(rng.integers(len(_CLOTHES))),
        dx=int(rng.integers(-MAX_SHIFT, MAX_SHIFT + 1)),
        dy=int(rng.integers(-MAX_SHIFT, MAX_SHIFT + 1)),
    )


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
    base: np.ndarray  # [N, 7]: background r, g, b, pattern, clothing, dx, dy

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
    base = np.empty((len(ident), 7), dtype=np.int64)
    for n, (i, j) in enumerate(zip(ident, index)):
        b = sample_base(np.random.default_rng((seed, int(i), int(j))))
        images[n] = render(int(i), b)
        base[n] = (*b.background, b.pattern, b.clothing, b.dx, b.dy)
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


def caption(attributes, keep=None) -> str:
    """The caption of an attribute tuple; `keep[i] False` leaves attribute i unsaid."""
    phrases = ["a face"]
    for i, (_, values) in enumerate(ATTRIBUTES):
        if attributes[i] is None or (keep is not None and not keep[i]):
            continue
        phrases.append(values[int(attributes[i])])
    return ", ".join(phrases)


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
