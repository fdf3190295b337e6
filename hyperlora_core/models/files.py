"""Is a model file usable? The checks `check`, `fetch` and the loaders' queue-time validation share.

Reads headers only (never a whole multi-GB file): what users of the published pack actually hit
is a missing file, a Git-LFS pointer, an HTML error page saved under the model's name, or a
download that stopped early.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DamagedFileError
from ..safetensors_io import check_safetensors, looks_like_web_page

_LFS = b"version https://git-lfs"


def file_problem(path: Path) -> DamagedFileError | None:
    """None if `path` looks complete, else the problem (its `.kind` and a message naming the file)."""
    if not path.is_file():
        return DamagedFileError("missing", f"{path}: not there.")
    size = path.stat().st_size
    if size == 0:
        return DamagedFileError("empty", f"{path}: the file is empty; download it again.")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(_LFS):
        return DamagedFileError("lfs_pointer", f"{path}: a Git-LFS pointer ({size} bytes), not the file itself; "
                                "download the real file (git lfs pull, or the file's download link).")
    if looks_like_web_page(head):
        return DamagedFileError("web_page", f"{path}: a web page ({size} bytes of HTML), not the file; "
                                "the download got an error or login page. Download it again.")
    try:
        if path.suffix == ".safetensors":
            check_safetensors(path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except DamagedFileError as err:
        return err
    except (ValueError, UnicodeDecodeError) as exc:
        return DamagedFileError("invalid", f"{path}: not valid JSON ({exc}); download it again.")
    return None
