"""Pack what `bench/gpu.py` needs on a GPU machine that has no network (Python 3.12, x86-64, CUDA torch).

Such a machine (e.g. the lent H100/H200 machines) has torch, torchvision, transformers, onnxruntime
(CPU), opencv, einops and safetensors, but not ComfyUI or the few packages ComfyUI and the pack add.
This writes, into git-ignored folders of the repository:

* `.whl/`: wheels for CPython 3.12 on manylinux x86-64 of `NEEDED` (at the versions this checkout's
  `.venv` runs, so both machines run the same code), and `onnxruntime-gpu` with `--onnxruntime-gpu`
  when it fits (its wheel is about 250 MB, so usually it does not: face analysis then runs on
  onnxruntime's CPU provider there, and the check says so);
* `.gpu/ComfyUI`: the host's ComfyUI source without its tests, API nodes, models and caches (the
  frontend is a separate package and is not needed);

and checks that the repository plus both stay under the 64 MiB a device call carries. It prints the
command to run there. Only this command touches the network (PyPI), and only when you run it.

Run: .venv/bin/python scripts/pack_gpu.py [--onnxruntime-gpu]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.comfy_env import comfyui_path  # noqa: E402

WHEELS = ROOT / ".whl"
COMFY_COPY = ROOT / ".gpu" / "ComfyUI"
LIMIT = 64 * 2**20
NEEDED = ("torchsde", "trampoline", "insightface")
"""What bench/gpu.py imports that the lent machines' image lacks (ComfyUI's samplers need torchsde)."""
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
SKIP_DIRS = {"tests", "tests-unit", "comfy_api_nodes", "models", "input", "output", "user", "custom_nodes",
             "temp", ".git", ".github", "__pycache__", ".ci", "script_examples"}
"""Parts of a ComfyUI checkout that importing `comfy` as a library never reads."""

GPU_PARTS = "flux,generate,photo,train"
"""What one lent-machine call of at most ~8 minutes runs (README, "Speed on a GPU"): FLUX first (never
measured), then the generation gap and the SDXL training step; `mm` and `sample` were measured on 2026-11-26."""
RUN_THERE = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && "
    "PYTHONPATH=/tmp/site COMFYUI_PATH=$PWD/.gpu/ComfyUI PYTHONUNBUFFERED=1 timeout 470 python3 bench/gpu.py "
    f"--parts {GPU_PARTS} --budget-s 330 --json $OUT/gpu.json 2>&1 | tee $OUT/gpu.log | grep -v -i warn | tail -c 11000"
)


def pinned(names: tuple[str, ...]) -> list[str]:
    """`name==version` as installed here, so the GPU machine runs what CI tests."""
    out = []
    for name in names:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


def download(requirements: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "-d", str(dest), "-q"]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run(cmd + requirements, check=True)


def copy_comfy(source: Path, dest: Path) -> int:
    """Copy ComfyUI's importable source; returns its size in bytes."""
    if not (source / "comfy").is_dir():
        raise SystemExit(f"error: {source} is not a ComfyUI checkout (no comfy/); run `make setup` or set COMFYUI_PATH.")
    if dest.exists():
        shutil.rmtree(dest)

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == source
        return {n for n in names if (n in SKIP_DIRS and (top or n in {"__pycache__", ".git"})) or n.endswith(".pyc")}

    shutil.copytree(source, dest, ignore=ignore, symlinks=False)
    return tree_size(dest)


def tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def repository_size() -> int:
    """Bytes of what a device call sends of the repository: tracked and untracked, not ignored, files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.split(b"\0")
    return sum((ROOT / p.decode()).stat().st_size for p in listed if p and (ROOT / p.decode()).is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnxruntime-gpu", action="store_true",
                        help="also pack onnxruntime-gpu (only if everything still fits in 64 MiB)")
    args = parser.parse_args()
    if WHEELS.exists():
        shutil.rmtree(WHEELS)
    WHEELS.mkdir()
    download(pinned(NEEDED), WHEELS)
    comfy = copy_comfy(comfyui_path(), COMFY_COPY)
    repo = repository_size()
    wheels = tree_size(WHEELS)
    if args.onnxruntime_gpu:
        extra = WHEELS / "extra"
        extra.mkdir()
        download(["onnxruntime-gpu"], extra)
        size = tree_size(extra)
        if repo + comfy + wheels + size <= LIMIT:
            for f in extra.iterdir():
                f.rename(WHEELS / f.name)
            wheels += size
            print("packed onnxruntime-gpu: face analysis can use the CUDA provider there")
        else:
            print(f"onnxruntime-gpu is {size / 2**20:.0f} MiB and does not fit; face analysis will run on the CPU provider")
        shutil.rmtree(extra)
    total = repo + comfy + wheels
    print(f"repository {repo / 2**20:.1f} MiB + ComfyUI source {comfy / 2**20:.1f} MiB + wheels {wheels / 2**20:.1f} MiB "
          f"= {total / 2**20:.1f} MiB (limit {LIMIT / 2**20:.0f} MiB)")
    for wheel in sorted(WHEELS.glob("*.whl")):
        print(f"  {wheel.name}")
    if total > LIMIT:
        raise SystemExit("error: more than a device call carries; remove untracked files or large artifacts first.")
    print("carry: .whl .gpu (device call: timeout_s 500)")
    print(f"run there (in the repository root): {RUN_THERE}")


if __name__ == "__main__":
    main()
