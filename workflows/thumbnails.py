"""The template browser's pictures (`workflows/<title>.jpg`, 512 x 512).

The card shows the title under the picture, and newer frontends draw a "Node graph" badge over the
picture's top-left corner, so the top band (`TOP_BAND`) stays empty and the one-line description is
drawn at the bottom (custom-node templates get no description field of their own in either frontend).

The toy-world template shows a real render: held-out identities' reference photos, samples with their
ID-LoRA and the same noise without it, from the shipped toy world through ComfyUI's sampler (the
same evaluation the model card reports). The SDXL templates cannot be rendered without the
published weights, so they show a diagram of what the graph does, with a real photo (scikit-image's
astronaut, public domain) as the input face.

    .venv/bin/python -m workflows.build --thumbnails
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from .library import TEMPLATES

HERE = Path(__file__).resolve().parent
SIZE = 512
BACKGROUND = (24, 26, 32)
BOX = (48, 52, 64)
ACCENT = (120, 170, 255)
TEXT = (235, 235, 240)
MUTED = (160, 165, 180)
TOP_BAND = 64
"""Pixels at the top left free of content (under the newer frontend's badge)."""


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def astronaut_face() -> Image.Image:
    """The face of scikit-image's astronaut photo (Eileen Collins, NASA; public domain)."""
    from skimage import data

    return Image.fromarray(data.astronaut()).crop((150, 40, 300, 190))


def silhouette(size: int, mouth: str = "flat", tint: tuple = MUTED) -> Image.Image:
    """A generic head and shoulders: a person the graph produces or another person, not a real face."""
    img = Image.new("RGB", (size, size), BOX)
    d = ImageDraw.Draw(img)
    s = size / 100
    d.ellipse([30 * s, 12 * s, 70 * s, 58 * s], fill=tint)
    d.pieslice([12 * s, 60 * s, 88 * s, 140 * s], 180, 360, fill=tint)
    d.ellipse([40 * s, 30 * s, 45 * s, 35 * s], fill=BOX)
    d.ellipse([55 * s, 30 * s, 60 * s, 35 * s], fill=BOX)
    if mouth == "smile":
        d.arc([40 * s, 36 * s, 60 * s, 50 * s], 20, 160, fill=BOX, width=max(1, int(2 * s)))
    else:
        d.line([42 * s, 46 * s, 58 * s, 46 * s], fill=BOX, width=max(1, int(2 * s)))
    return img


def stick_figure(size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), (0, 0, 0))
    d = ImageDraw.Draw(img)
    s, w = size / 100, max(2, size // 30)
    d.ellipse([42 * s, 10 * s, 58 * s, 26 * s], outline=(255, 80, 80), width=w)
    d.line([50 * s, 26 * s, 50 * s, 62 * s], fill=(80, 255, 80), width=w)
    d.line([50 * s, 36 * s, 24 * s, 22 * s], fill=(80, 120, 255), width=w)
    d.line([50 * s, 36 * s, 78 * s, 50 * s], fill=(255, 220, 60), width=w)
    d.line([50 * s, 62 * s, 36 * s, 92 * s], fill=(60, 230, 230), width=w)
    d.line([50 * s, 62 * s, 66 * s, 92 * s], fill=(230, 80, 230), width=w)
    return img


def box(canvas: Image.Image, xy: tuple[int, int, int, int], label: str, picture: Image.Image | None = None,
        accent: bool = False) -> None:
    d = ImageDraw.Draw(canvas)
    d.rounded_rectangle(xy, radius=14, fill=BOX, outline=ACCENT if accent else BOX, width=3)
    x0, y0, x1, y1 = xy
    if picture is not None:
        side = min(x1 - x0 - 16, y1 - y0 - 44)
        canvas.paste(ImageOps.fit(picture, (side, side)), (x0 + (x1 - x0 - side) // 2, y0 + 8))
        d.text(((x0 + x1) // 2, y1 - 20), label, font=font(18), fill=TEXT, anchor="mm")
    else:
        d.multiline_text(((x0 + x1) // 2, (y0 + y1) // 2), label, font=font(20), fill=TEXT, anchor="mm", align="center")


def wrapped(text: str, size: int, width: int = SIZE - 96) -> str:
    """`text` broken into lines no wider than `width` pixels (the card crops the picture's edges)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font(size).getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return "\n".join(lines)


def arrow(canvas: Image.Image, a: tuple[int, int], b: tuple[int, int]) -> None:
    d = ImageDraw.Draw(canvas)
    d.line([a, b], fill=ACCENT, width=4)
    ux, uy = np.subtract(b, a) / max(1e-6, float(np.hypot(*np.subtract(b, a))))
    tip = [b, (b[0] - 14 * ux + 8 * uy, b[1] - 14 * uy - 8 * ux), (b[0] - 14 * ux - 8 * uy, b[1] - 14 * uy + 8 * ux)]
    d.polygon(tip, fill=ACCENT)


def diagram(title: str, inputs: list[tuple[str, Image.Image]], middle: str, output: tuple[str, Image.Image],
            caption: str) -> Image.Image:
    """Inputs (left column) -> HyperLoRA step (middle) -> result (right), the caption below. (`title` names the
    picture in code only: the card shows the template's title.)"""
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    d = ImageDraw.Draw(img)
    n = len(inputs)
    h = min(150, (360 - 12 * (n - 1)) // n)
    top = 80 + (360 - n * h - 12 * (n - 1)) // 2
    for k, (label, pic) in enumerate(inputs):
        y = top + k * (h + 12)
        box(img, (20, y, 20 + h - 10 if n > 2 else 170, y + h), label, pic)
        arrow(img, (180 if n <= 2 else 20 + h, y + h // 2), (195, 260))
    box(img, (198, 200, 338, 320), middle, accent=True)
    arrow(img, (338, 260), (352, 260))
    box(img, (356, 170, 496, 350), output[0], output[1])
    d.multiline_text((SIZE // 2, 468), wrapped(caption, 22), font=font(22), fill=TEXT, anchor="mm", align="center")
    return img


def toy_picture(identities: int = 4, base: str | None = None) -> Image.Image:
    """Reference / with the ID-LoRA / without, for held-out identities, from the shipped toy world (its base `base`;
    a base the shipped world does not have yet is drawn as a diagram)."""
    from hyperlora_core.toy import files
    from hyperlora_core.toy.measure import ID, Condition, Heldout, Judges, measure
    from hyperlora_core.toy.models import toy_base
    from hyperlora_core.toy.world_loader import ToyWorld

    parts = toy_base(base).parts
    if not all(files.part_path(parts[p]).is_file() for p in ("model", "hyperlora")):
        return diagram("Toy world", [("photo", silhouette(140))], "toy\nDiT", ("sample", silhouette(140, tint=ACCENT)),
                       f"toy world, {toy_base(base).description}")
    toy = ToyWorld.load(base=base)
    held = Heldout.make(toy.conditioner, identities, refs=1)
    result = measure(toy, held, [Condition("ID-LoRA x1", (ID(1),)), Condition("no LoRA")], Judges(toy.judge),
                     keep_images=True)
    rows = [held.photos[:, 0], result.images["ID-LoRA x1"], result.images["no LoRA"]]
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    d = ImageDraw.Draw(img)
    cell, left, top = 104, 96, TOP_BAND + 8
    for r, (label, row) in enumerate(zip(["photo", "with", "without"], rows)):
        y = top + r * (cell + 30)
        d.text((left - 10, y + cell // 2), label, font=font(18), fill=MUTED, anchor="rm")
        for c in range(identities):
            tile = Image.fromarray(row[c]).resize((cell - 8, cell - 8), Image.NEAREST)
            img.paste(tile, (left + c * cell, y))
    d.multiline_text((SIZE // 2, 478), "never-seen people: photo -> ID-LoRA\n-> samples with it / same noise without",
                     font=font(19), fill=TEXT, anchor="mm", align="center")
    return img


def toy_edit_picture(identities: int = 4) -> Image.Image:
    """Photo / ID + Base (empty caption) / ID-LoRA with the edit template's caption / that caption without a
    LoRA, for held-out identities, from the shipped toy world (the study's batched sampler, same noise)."""

    from hyperlora_core.toy.measure import BASE, ID, Condition, Heldout, Judges, measure
    from hyperlora_core.toy.world_loader import ToyWorld

    from .library import TOY_EDIT_CAPTION

    toy = ToyWorld.load()
    held = Heldout.make(toy.conditioner, identities, refs=1)
    conditions = [Condition("ID + Base", (ID(1), BASE())), Condition("ID + caption", (ID(1),), TOY_EDIT_CAPTION),
                  Condition("caption only", caption=TOY_EDIT_CAPTION)]
    result = measure(toy, held, conditions, Judges(toy.judge), keep_images=True)
    rows = [held.photos[:, 0], *(result.images[c.name] for c in conditions)]
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    d = ImageDraw.Draw(img)
    cell, left, top = 84, 150, TOP_BAND
    for r, (label, row) in enumerate(zip(["photo", "ID + Base", "ID + caption", "caption only"], rows)):
        y = top + r * (cell + 12)
        d.text((left - 10, y + cell // 2), label, font=font(18), fill=MUTED, anchor="rm")
        for c in range(identities):
            img.paste(Image.fromarray(row[c]).resize((cell - 6, cell - 6), Image.NEAREST), (left + c * cell, y))
    d.multiline_text((SIZE // 2, 478), f"caption: '{TOY_EDIT_CAPTION}'\nthe person stays, the caption edits",
                     font=font(19), fill=TEXT, anchor="mm", align="center")
    return img


def pictures() -> dict[str, Callable[[], Image.Image]]:
    """Template slug -> how its picture is made."""
    face = astronaut_face()
    person = silhouette(140)
    lora = "ID-\nLoRA"
    return {
        "hyperlora_toy_world": toy_picture,
        "hyperlora_toy_world_edit": toy_edit_picture,
        "hyperlora_t2i_one_photo": lambda: diagram("One photo", [("photo", face)], lora, ("portrait", person),
                                                   "one photo -> a LoRA -> that person, any prompt"),
        "hyperlora_t2i_several_photos": lambda: diagram(
            "Several photos", [("1", face), ("2", ImageOps.mirror(face)), ("3", face.rotate(8))], lora,
            ("portrait", person), "photos of one person, averaged"),
        "hyperlora_interpolate_two_people": lambda: diagram(
            "Two people", [("A", face), ("B", silhouette(140, tint=(200, 170, 140)))], "A <-> B",
            ("halfway", silhouette(140, tint=(180, 168, 160))), "a face between two people"),
        "hyperlora_concept_slider": lambda: diagram(
            "Concept slider", [("neutral", silhouette(140)), ("smiling", silhouette(140, "smile"))], "B - A",
            ("+ smile", silhouette(140, "smile", ACCENT)), "the change between two photos, as a slider"),
        "hyperlora_save_lora": lambda: diagram("Save the LoRA", [("photo", face)], lora,
                                               (".safetensors", _file_icon()), "a kohya LoRA file for any loader"),
        "hyperlora_one_click": lambda: diagram("One-click", [("photo", face)], "one\nnode", ("portrait", person),
                                               "the whole chain in one node"),
        "hyperlora_controlnet_pose": lambda: diagram(
            "With ControlNet", [("face", face), ("pose", stick_figure(140))], "LoRA +\nControlNet",
            ("posed", person), "the face from HyperLoRA, the pose from OpenPose"),
        "hyperlora_style_lora": lambda: diagram(
            "With a style LoRA", [("face", face), ("style", _palette_icon())], "ID-LoRA +\nstyle",
            ("styled", silhouette(140, tint=(230, 150, 90))), "two LoRAs add up"),
        "hyperlora_model_check": _check_picture,
    }


def _file_icon(size: int = 140) -> Image.Image:
    img = Image.new("RGB", (size, size), BOX)
    d = ImageDraw.Draw(img)
    d.polygon([(35, 15), (85, 15), (110, 40), (110, 125), (35, 125)], fill=MUTED)
    d.polygon([(85, 15), (85, 40), (110, 40)], fill=(120, 125, 140))
    for k in range(4):
        d.line([(48, 60 + 15 * k), (98, 60 + 15 * k)], fill=BOX, width=4)
    return img


def _palette_icon(size: int = 140) -> Image.Image:
    img = Image.new("RGB", (size, size), BOX)
    d = ImageDraw.Draw(img)
    for k, color in enumerate([(230, 90, 80), (240, 200, 80), (90, 190, 120), (90, 140, 230), (180, 110, 220)]):
        x, y = 25 + (k % 3) * 35, 35 + (k // 3) * 45
        d.ellipse([x, y, x + 30, y + 30], fill=color)
    return img


def _check_picture() -> Image.Image:
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    d = ImageDraw.Draw(img)
    rows = [("HyperLoRA checkpoint", True), ("CLIP ViT-L/14", True), ("antelopev2 face pack", False),
            ("SDXL checkpoint", True)]
    for k, (label, ok) in enumerate(rows):
        y = 100 + 84 * k
        d.rounded_rectangle((40, y, 472, y + 60), radius=12, fill=BOX)
        d.text((70, y + 30), "OK" if ok else "!!", font=font(26), fill=(110, 220, 130) if ok else (255, 120, 100),
               anchor="mm")
        d.text((110, y + 30), label, font=font(24), fill=TEXT, anchor="lm")
    d.text((SIZE // 2, 472), "what is missing, where it goes, how to get it", font=font(22), fill=TEXT, anchor="mm")
    return img


def draw_all() -> list[Path]:
    made = pictures()
    paths = [HERE.parent / "icon.png"]
    icon().save(paths[0])
    for t in TEMPLATES:
        path = HERE / f"{t.title}.jpg"
        made[t.slug]().convert("RGB").save(path, quality=90)
        paths.append(path)
    return paths


def icon(size: int = 400) -> Image.Image:
    """The pack's icon for the Comfy Registry (pyproject's `Icon`): a face becoming the two thin factors of a LoRA."""
    img = Image.new("RGB", (size, size), BACKGROUND)
    d = ImageDraw.Draw(img)
    s = size / 100
    d.rounded_rectangle((4 * s, 4 * s, 96 * s, 96 * s), radius=18 * s, fill=(34, 40, 58))
    d.ellipse((18 * s, 20 * s, 44 * s, 50 * s), fill=TEXT)
    d.pieslice((10 * s, 54 * s, 52 * s, 104 * s), 180, 360, fill=TEXT)
    arrow(img, (52 * s, 40 * s), (64 * s, 40 * s))
    d.rectangle((68 * s, 16 * s, 74 * s, 64 * s), fill=ACCENT)  # B: tall and thin
    d.rectangle((78 * s, 16 * s, 92 * s, 22 * s), fill=(255, 170, 90))  # A: short and wide
    d.text((80 * s, 78 * s), "LoRA", font=font(int(13 * s)), fill=TEXT, anchor="mm")
    return img
