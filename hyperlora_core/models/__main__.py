"""`python -m hyperlora_core.models check|fetch|list`: the weights HyperLoRA needs, for a ComfyUI install.

    check [ITEM ...]   where every file is or should be, and what is wrong (exit 1 if something required is missing)
    fetch [ITEM ...]   download what is missing or damaged from the official sources (default: the required items;
                       `all` for every item); the only command of this pack that uses the network
    list               the manifest: items, sources, licences

The ComfyUI folder is --comfyui, else $COMFYUI_PATH, else the ComfyUI this pack is installed in
(custom_nodes/<pack>); its extra_model_paths.yaml is honoured. Set HF_ENDPOINT to use a mirror.

Also runnable by path, from any folder: `<python> <pack>/hyperlora_core/models/__main__.py check`
(the form the pack's messages print, see `command.py`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).absolute().parents[2]
"""The pack folder as the user reached it (a symlink in custom_nodes stays one)."""

if not __package__:  # run by path: no package context, and this folder first on sys.path (its check.py, ...)
    import runpy

    sys.path[0] = str(PACK_ROOT)
    runpy.run_module("hyperlora_core.models", run_name="__main__", alter_sys=True)
    raise SystemExit(0)

from .check import check, comfyui_roots  # noqa: E402 - after the by-path start above
from .command import models_command  # noqa: E402
from .fetch import fetch  # noqa: E402
from .manifest import items  # noqa: E402


def _as_reached(path: Path) -> Path:
    """`path` under the working directory as the shell reached it ($PWD keeps a symlinked pack folder that
    `python -m` run inside it resolves away)."""
    pwd, cwd = os.environ.get("PWD"), Path.cwd()
    if pwd and Path(pwd) != cwd and Path(pwd).resolve() == cwd.resolve() and path.is_relative_to(cwd):
        return Path(pwd) / path.relative_to(cwd)
    return path


def find_comfyui(given: str | None) -> Path:
    for candidate in (given, os.environ.get("COMFYUI_PATH")):
        if candidate:
            path = Path(candidate).expanduser().absolute()
            if not (path / "main.py").is_file() and not (path / "models").is_dir():
                raise SystemExit(f"error: {path} is not a ComfyUI folder (no main.py, no models/).")
            return path
    for pack in (PACK_ROOT, _as_reached(PACK_ROOT)):
        if pack.parent.name == "custom_nodes":
            return pack.parent.parent
    raise SystemExit("error: which ComfyUI? Give --comfyui /path/to/ComfyUI (or set COMFYUI_PATH).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hyperlora_core.models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["check", "fetch", "list"])
    parser.add_argument("items", nargs="*", help="manifest item ids (see `list`); fetch: `all` for every item")
    parser.add_argument("--comfyui", help="the ComfyUI folder (holding main.py and models/)")
    args = parser.parse_args(argv)
    known = [it.id for it in items()]
    wanted = known if args.items == ["all"] else args.items
    unknown = [i for i in wanted if i not in known]
    if unknown:
        parser.error(f"unknown item(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if args.command == "list":
        for it in items():
            source = f"{it.hub.repo}@{it.hub.revision}" if it.hub else f"by hand: {it.manual.url}"
            print(f"{it.id:<24} {'required' if it.default else 'optional':<9} models/{it.folder:<12} {source}  ({it.licence})")
        return 0
    comfyui = find_comfyui(args.comfyui)
    roots = comfyui_roots(comfyui)
    if args.command == "check":
        report = check(roots, wanted or None)
        print(f"HyperLoRA model check for {comfyui}\n")
        print(report.text(comfyui))
        return 0 if report.ready or (wanted and all(f.ok for f in report.files)) else 1
    result = fetch(roots, wanted or None)
    print()
    if result.failed:
        print(f"{len(result.failed)} item(s) failed; see the errors above. Fetched {len(result.fetched)} file(s). "
              f"To retry: {models_command('fetch', *args.items, comfyui=comfyui)}")
        return 1
    print(f"fetched {len(result.fetched)} file(s); {len(result.present)} were already in place.")
    if result.manual:
        print(f"still needed by hand: {', '.join(result.manual)} (see above).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
