"""The sample photos the templates open with (`workflows/photos/`), so that no template opens with a missing photo.

The pack places them into ComfyUI's input folder when a ComfyUI server loads it (never over a file of the same
name: `hyperlora_core/comfy_bridge/input_photos.py`, called from `nodes/host.py`), which is where LoadImage lists
and reads photos. Only public-domain pictures, kept small:

- Eileen Collins, NASA astronaut (scikit-image's `astronaut`; NASA, public domain): three photos of one person
  (the photo, a mirrored closer crop, a wider crop);
- Grace Hopper, the official U.S. Navy portrait (matplotlib's `grace_hopper.jpg`; a work of the U.S. federal
  government, public domain): a second person;
- a pose picture in OpenPose's colours, drawn here, for the ControlNet template.

(insightface's sample images, `t1.jpg` and `Tom_Hanks_54745.png`, carry no public-domain statement, so they are
not used.)

    .venv/bin/python -m workflows.build --photos   # redraw workflows/photos/ (needs scikit-image, matplotlib)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

PHOTOS_DIR = Path(__file__).resolve().parent / "photos"
ASTRONAUT = "hyperlora_sample_astronaut.jpg"
ASTRONAUT_2 = "hyperlora_sample_astronaut_2.jpg"
ASTRONAUT_3 = "hyperlora_sample_astronaut_3.jpg"
HOPPER = "hyperlora_sample_hopper.jpg"
POSE = "hyperlora_sample_pose.png"
NAMES = (ASTRONAUT, ASTRONAUT_2, ASTRONAUT_3, HOPPER, POSE)
"""Every sample photo; the `hyperlora_sample_` prefix keeps them apart from the user's own photos."""
SIDE = 448


def astronaut() -> Image.Image:
    """scikit-image's astronaut (Eileen Collins, NASA; public domain), 512 x 512."""
    from skimage import data

    return Image.fromarray(data.astronaut())


def hopper() -> Image.Image:
    """matplotlib's Grace Hopper (official U.S. Navy portrait; public domain), 512 x 600."""
    import matplotlib.cbook

    return Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")


def pose(size: int = SIDE) -> Image.Image:
    """A standing person, arms out, as an OpenPose body skeleton (18 keypoints, OpenPose's limb colours, on black)."""
    points = {"nose": (50, 16), "neck": (50, 28), "r_sh": (39, 29), "r_el": (31, 42), "r_wr": (26, 54),
              "l_sh": (61, 29), "l_el": (70, 40), "l_wr": (78, 30), "r_hip": (44, 58), "r_knee": (43, 76),
              "r_ank": (42, 94), "l_hip": (56, 58), "l_knee": (58, 76), "l_ank": (60, 94), "r_eye": (48, 14),
              "l_eye": (52, 14), "r_ear": (45, 15), "l_ear": (55, 15)}
    limbs = [("neck", "r_sh"), ("neck", "l_sh"), ("r_sh", "r_el"), ("r_el", "r_wr"), ("l_sh", "l_el"),
             ("l_el", "l_wr"), ("neck", "r_hip"), ("r_hip", "r_knee"), ("r_knee", "r_ank"), ("neck", "l_hip"),
             ("l_hip", "l_knee"), ("l_knee", "l_ank"), ("neck", "nose"), ("nose", "r_eye"), ("r_eye", "r_ear"),
             ("nose", "l_eye"), ("l_eye", "l_ear")]
    colours = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
               (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
               (170, 0, 255), (255, 0, 255), (255, 0, 170)]
    img = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(img)
    s = size / 100
    for (a, b), colour in zip(limbs, colours):
        d.line([(points[a][0] * s, points[a][1] * s), (points[b][0] * s, points[b][1] * s)],
               fill=tuple(c * 6 // 10 for c in colour), width=max(3, size // 60))
    for k, (x, y) in enumerate(points.values()):
        r = max(2, size // 110)
        d.ellipse([x * s - r, y * s - r, x * s + r, y * s + r], fill=colours[k % len(colours)])
    return img


def makers() -> dict[str, Callable[[], Image.Image]]:
    """Sample photo name -> how it is made."""
    return {
        ASTRONAUT: lambda: astronaut().resize((SIDE, SIDE), Image.LANCZOS),
        ASTRONAUT_2: lambda: ImageOps.mirror(astronaut().crop((90, 0, 370, 280))).resize((SIDE, SIDE), Image.LANCZOS),
        ASTRONAUT_3: lambda: astronaut().rotate(6, Image.BICUBIC).crop((50, 30, 430, 410)).resize((SIDE, SIDE),
                                                                                                 Image.LANCZOS),
        HOPPER: lambda: hopper().crop((0, 20, 512, 532)).resize((SIDE, SIDE), Image.LANCZOS),
        POSE: pose,
    }


def draw_all() -> list[Path]:
    PHOTOS_DIR.mkdir(exist_ok=True)
    paths = []
    for name, make in makers().items():
        path = PHOTOS_DIR / name
        if name.endswith(".png"):
            make().save(path, optimize=True)
        else:
            make().save(path, quality=85, optimize=True)
        paths.append(path)
    return paths
