"""The exact `check` / `fetch` command line for one ComfyUI install, as every message of the pack prints it.

A message is only useful if its command works when pasted as printed: from any working directory,
with the Python that runs ComfyUI, on an install where the pack folder is a symlink in
custom_nodes. So the command names that Python (`sys.executable`), the pack's entry point by its
absolute path (runnable without package context, see `__main__.py`) and `--comfyui <this ComfyUI>`.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

ENTRY = Path(__file__).absolute().with_name("__main__.py")
"""The entry point run by path; `absolute()`, not `resolve()`: a symlinked pack keeps the path the user sees."""
_PLAIN = re.compile(r"^[\w@%+=:,./-]+$")
_DOUBLE_QUOTE_SAFE = re.compile(r'^[^"$`\\!]*$')


def quote(word: str) -> str:
    """A word as a shell reads it back: bare when plain, in double quotes when it has spaces (what a
    Windows console also accepts), else in POSIX single quotes."""
    if _PLAIN.match(word):
        return word
    if _DOUBLE_QUOTE_SAFE.match(word):
        return f'"{word}"'
    return shlex.quote(word)


def models_command(action: str, *item_ids: str, comfyui: Path | str | None = None) -> str:
    """`<python> <pack>/hyperlora_core/models/__main__.py <action> [items] --comfyui <ComfyUI>`."""
    words = [sys.executable, str(ENTRY), action, *item_ids]
    if comfyui is not None:
        words += ["--comfyui", str(comfyui)]
    return " ".join(quote(w) for w in words)
