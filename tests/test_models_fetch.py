"""`python -m hyperlora_core.models fetch` end to end against a fake Hugging Face hub on loopback.

The command runs as a user runs it (a subprocess, HF_ENDPOINT pointing at the fake hub), through
huggingface_hub, into a fresh ComfyUI folder; the fake hub serves stand-in files and misbehaves on
request (a truncated body, a wrong hash, an HTML login page, a connection that drops mid-file).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.fake_hub import FakeHub
from fixtures.pack import ROOT
from safetensors.torch import save_file

from hyperlora_core import standins
from hyperlora_core.models import check, comfyui_roots, item

FIDELITY = "sdxl_hyper_id_lora_v1_fidelity"
BASIS = f"{FIDELITY}/hyper_lora_modules.safetensors"


@pytest.fixture(scope="module")
def standin_files(tmp_path_factory) -> dict[tuple[str, str], bytes]:
    """The bytes the fake hub serves: a tiny checkpoint in the published layout and a 24 MB CLIP stand-in
    (more than huggingface_hub's 10 MB read size, so a dropped connection has something to resume from)."""
    import torch

    folder = tmp_path_factory.mktemp("standins")
    standins.write_tiny_checkpoint(folder / FIDELITY, seed=3, base_rank=None, published_layout=True)
    clip = folder / "model.safetensors"
    save_file({"vision_model.embeddings.class_embedding": torch.randn(6_000_000)}, str(clip))
    hyper, vit = item("hyperlora-fidelity"), item("clip-vit-large-patch14")
    files = {(hyper.hub.repo, f.path): (folder / f.path).read_bytes() for f in hyper.files}
    files[(vit.hub.repo, "model.safetensors")] = clip.read_bytes()
    return files


def serve(files: dict, modes: dict[str, str] | None = None) -> FakeHub:
    hub = FakeHub()
    for (repo, path), data in files.items():
        hub.add(repo, path, data, (modes or {}).get(path, "ok"))
    return hub


def run_cli(hub: FakeHub, comfyui: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(comfyui.parent / "hf_home"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    env.pop("COMFYUI_PATH", None)
    return subprocess.run([sys.executable, "-m", "hyperlora_core.models", *args, "--comfyui", str(comfyui)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def leftovers(models: Path) -> list[str]:
    """Anything under models/ that is not a finished file: staging folders, partial downloads."""
    return sorted(str(p.relative_to(models)) for p in models.rglob("*")
                  if ".hyperlora-download" in p.parts or p.name.endswith((".incomplete", ".lock")))


def test_fetch_puts_each_file_where_the_loader_finds_it(tmp_path, standin_files, monkeypatch):
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models").mkdir(parents=True)
    with serve(standin_files) as hub:
        done = run_cli(hub, comfyui, "fetch")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "fetched 5 file(s)" in done.stdout
        assert "antelopev2: not downloaded for you" in done.stdout and "antelopev2.zip" in done.stdout
        gets = [r for r in hub.requests if r[0] == "GET"]
        assert len(gets) == 5
        again = run_cli(hub, comfyui, "fetch")
        assert again.returncode == 0 and "already in place" in again.stdout
        assert len([r for r in hub.requests if r[0] == "GET"]) == 5  # nothing downloaded twice
    models = comfyui / "models"
    assert leftovers(models) == []
    for (_repo, path), data in standin_files.items():
        target = models / ("clip_vision/clip_vit_large_patch14.safetensors" if path == "model.safetensors" else f"hyper_lora/{path}")
        assert target.read_bytes() == data
    report = check(comfyui_roots(comfyui), ["hyperlora-fidelity", "clip-vit-large-patch14"])
    assert all(f.ok for f in report.files), report.text()

    # ...and the Loader offers exactly that file, which loads.
    import copy

    import folder_paths
    from fixtures.pack import pack_submodule

    from hyperlora_core.model import HyperLoRA

    monkeypatch.setattr(folder_paths, "folder_names_and_paths", copy.deepcopy(folder_paths.folder_names_and_paths))
    monkeypatch.setattr(folder_paths, "models_dir", str(models))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    folder_paths.folder_names_and_paths["clip_vision"] = ([str(models / "clip_vision")], {".safetensors"})
    host = pack_submodule("nodes.host")
    loaders = pack_submodule("nodes.loaders")
    assert BASIS in host.list_checkpoints()
    assert "clip_vit_large_patch14.safetensors" in loaders.clip_choices()
    assert HyperLoRA.from_pretrained(host.resolve_checkpoint(BASIS)).config.basis_size > 0


@pytest.mark.parametrize("mode,reason", [
    ("truncated", "the download stopped early"),
    ("bad_hash", "the hub declares"),
    ("portal", "does not answer like a Hugging Face hub"),
    ("drop_always", "could not be fetched"),
])
def test_a_failed_download_leaves_nothing_under_a_final_name(tmp_path, standin_files, mode, reason):
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models").mkdir(parents=True)
    with serve(standin_files, {BASIS: mode}) as hub:
        done = run_cli(hub, comfyui, "fetch", "hyperlora-fidelity")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    # the address actually used: the HF_ENDPOINT mirror (here the fake hub), not the default hub
    assert f"{BASIS} could not be fetched from {hub.url}/bytedance-research/HyperLoRA/resolve/" in out
    assert "huggingface.co" not in out
    assert reason in out and "Nothing was written to" in out
    models = comfyui / "models"
    assert not (models / "hyper_lora" / BASIS).exists()
    assert leftovers(models) == []
    assert (models / "hyper_lora" / FIDELITY / "hyper_lora_modules.json").is_file()  # the file before it is complete


def test_a_dropped_connection_is_resumed(tmp_path, standin_files):
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models").mkdir(parents=True)
    with serve(standin_files, {"model.safetensors": "drop_once"}) as hub:
        done = run_cli(hub, comfyui, "fetch", "clip-vit-large-patch14")
        ranged = [r[2] for r in hub.requests if r[0] == "GET" and r[2] and "model.safetensors" in r[1]]
    assert done.returncode == 0, done.stdout + done.stderr
    assert ranged and ranged[0].startswith("bytes=") and int(ranged[0][6:].split("-")[0]) > 0  # resumed, not restarted
    data = standin_files[(item("clip-vit-large-patch14").hub.repo, "model.safetensors")]
    assert (comfyui / "models" / "clip_vision" / "clip_vit_large_patch14.safetensors").read_bytes() == data


# -- every command the pack prints works as printed ---------------------------------------------------------------
def symlinked_install(tmp_path: Path) -> tuple[Path, Path]:
    """A ComfyUI folder (with a space in its path) whose custom_nodes/comfyui-hyperlora is a symlink to this checkout,
    as `git clone` elsewhere + `ln -s` gives; returns (ComfyUI, a working directory outside it)."""
    comfyui = tmp_path / "Comfy UI"
    (comfyui / "models").mkdir(parents=True)
    (comfyui / "custom_nodes").mkdir()
    (comfyui / "custom_nodes" / "comfyui-hyperlora").symlink_to(ROOT, target_is_directory=True)
    elsewhere = tmp_path / "somewhere else"
    elsewhere.mkdir()
    return comfyui, elsewhere


def hub_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    for name in ("COMFYUI_PATH", "PYTHONPATH"):  # nothing but the command itself says where things are
        env.pop(name, None)
    return env


def run_printed(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """A printed command pasted into a shell as is."""
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          executable="/bin/bash")


def fix_commands(text: str) -> dict[str, str]:
    """The `-> <command>` lines of a check report, by the item they fetch."""
    lines = [line.strip()[3:] for line in text.splitlines() if line.strip().startswith("-> ") and " fetch " in line]
    return {line.split(" fetch ")[1].split()[0]: line for line in lines}


def test_every_printed_command_works_as_printed_on_a_symlinked_install(tmp_path, standin_files):
    """README's commands, the check report's and a queue-time message's fetch commands, each pasted verbatim into
    a shell in another folder, on an install whose pack folder is a symlink: check reports, fetch places the files."""
    from hyperlora_core.models.check import missing_message

    comfyui, elsewhere = symlinked_install(tmp_path)
    pack = comfyui / "custom_nodes" / "comfyui-hyperlora"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Installing the pack in ComfyUI")[1].split("\n## ")[0]
    printed = [line.split("#")[0].strip() for line in section.splitlines() if line.startswith("python ")]
    assert [p.split()[2] for p in printed] == ["check", "fetch"], printed
    with serve(standin_files) as hub:
        env = hub_env(hub, tmp_path)

        # README: from the ComfyUI folder, `python` being the Python that runs ComfyUI
        done = run_printed(printed[0].replace("python", f'"{sys.executable}"', 1), comfyui, env)
        assert done.returncode == 1 and f"HyperLoRA model check for {comfyui}" in done.stdout, done.stdout + done.stderr
        report = done.stdout

        # the case: `python -m` inside the symlinked pack folder knows its ComfyUI
        done = run_printed(f'cd "{pack}" && "{sys.executable}" -m hyperlora_core.models check', elsewhere, env)
        assert f"HyperLoRA model check for {comfyui}" in done.stdout, done.stdout + done.stderr

        # the report's command for the checkpoint, verbatim, from elsewhere
        commands = fix_commands(report)
        assert set(commands) == {"hyperlora-fidelity", "hyperlora-edit", "clip-vit-large-patch14", "sdxl-base",
                                 "controlnet-openpose-sdxl"}
        assert all(f'"{pack}/hyperlora_core/models/__main__.py"' in c and f'--comfyui "{comfyui}"' in c
                   for c in commands.values())
        done = run_printed(commands["hyperlora-fidelity"], elsewhere, env)
        assert done.returncode == 0 and "fetched 4 file(s)" in done.stdout, done.stdout + done.stderr

        # a queue-time message's command (the CLIP loader's), verbatim, from elsewhere
        message = missing_message("clip_vision", "clip_vit_large_patch14.safetensors", comfyui_roots(comfyui),
                                  "CLIP vision model", comfyui)
        command = message.split("`")[1]
        done = run_printed(command, elsewhere, env)
        assert done.returncode == 0 and "fetched 1 file(s)" in done.stdout, done.stdout + done.stderr

        # README's fetch: everything required is there now (the face pack's step is printed, not downloaded)
        gets = len([r for r in hub.requests if r[0] == "GET"])
        done = run_printed(printed[1].replace("python", f'"{sys.executable}"', 1), comfyui, env)
        assert done.returncode == 0 and "fetched 0 file(s); 5 were already in place" in done.stdout, done.stdout
        assert "antelopev2.zip" in done.stdout and len([r for r in hub.requests if r[0] == "GET"]) == gets
    report = check(comfyui_roots(comfyui), ["hyperlora-fidelity", "clip-vit-large-patch14"])
    assert all(f.ok for f in report.files), report.text()
    assert not list(ROOT.glob("ComfyUI")) and leftovers(comfyui / "models") == []


# -- the Fetch Models node, on the real server ---------------------------------------------------------------------
def test_the_fetch_node_downloads_only_once_the_licence_is_accepted(tmp_path, standin_files, comfyui_path):
    """A ComfyUI with no weights, HF_ENDPOINT on the fake hub: Run is refused with the fix in its first sentence and a
    command that works verbatim; Fetch Models with the licence refused downloads nothing; accepted, it puts every
    file in place through fetch's checks, with ComfyUI's progress bar, and gives the face pack's step by hand."""
    from fixtures import workflows

    from scripts.comfy_server import PACK_LINK_NAME, ComfyServer, PromptRejected

    base = tmp_path / "ComfyUI"
    models = base / "models"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fetch_node = {"1": {"class_type": "HyperLoRAFetchModels", "inputs": {"models": "required", "accept_licences": False}}}
    with serve(standin_files) as hub:
        env = hub_env(hub, tmp_path)
        server_env = {k: env[k] for k in env if k.startswith("HF_")}
        # only this pack, linked into custom_nodes as users link it (the stand-in pack would import it from the
        # resolved checkout first)
        with ComfyServer(comfyui_path, base, env=server_env, packs={PACK_LINK_NAME: ROOT}) as server:
            refused = server.run(fetch_node)
            assert refused.error is None, refused.error
            text = refused.outputs["1"]["text"][0]
            assert text.startswith("Nothing was downloaded: set accept_licences to true"), text
            assert "CC BY-NC 4.0" in text and "MIT" in text and "antelopev2.zip" in text
            assert not [r for r in hub.requests if r[0] == "GET"] and not [p for p in models.rglob("*") if p.is_file()]

            with pytest.raises(PromptRejected) as err:
                server.queue(workflows.api("hyperlora_t2i_one_photo"))
            details = {e["extra_info"]["input_name"]: e["details"] for node in err.value.body["node_errors"].values()
                       for e in node["errors"] if e["type"] == "custom_validation_failed"}
            first = {name: d.split(". ")[0] for name, d in details.items()}
            assert first["checkpoint"].startswith(f"checkpoint - HyperLoRA checkpoint '{BASIS}' is missing (4 of 4 "
                                                  "files): run the node HyperLoRA Fetch Models (accept the licence) or `")
            assert first["pack"].startswith("pack - Face model pack 'antelopev2/glintr100.onnx' is missing (3 of 3 "
                                            "files) and must be placed by hand: download antelopev2.zip and unzip it")
            command = first["clip_vision"].split("`")[1]
            assert command.startswith(sys.executable) and f"{base}/custom_nodes/comfyui-hyperlora/" in command
            assert command.endswith(f"fetch clip-vit-large-patch14 --comfyui {base}")
            # the Model Check node's report prints the same command
            report = server.run({"1": {"class_type": "HyperLoRAModelCheck", "inputs": {}}}).outputs["1"]["text"][0]
            assert fix_commands(report)["clip-vit-large-patch14"] == command

            # the Fetch node's text, licence not accepted, prints the command for a terminal: verbatim, from elsewhere
            one = {"1": {"class_type": "HyperLoRAFetchModels",
                         "inputs": {"models": "clip-vit-large-patch14", "accept_licences": False}}}
            text = server.run(one).outputs["1"]["text"][0]
            node_command = text.split("(In a terminal: ")[1].rsplit(")", 1)[0]
            assert node_command == command
            done = run_printed(node_command, elsewhere, env)
            assert done.returncode == 0 and "fetched 1 file(s)" in done.stdout, done.stdout + done.stderr
            done = run_printed(command, elsewhere, env)  # the refusal's command, verbatim, from elsewhere
            assert done.returncode == 0 and "fetched 0 file(s); 1 were already in place" in done.stdout, done.stdout

            # accepted, then cancelled in the middle of a file: ComfyUI's cancel stops the whole fetch at once
            fetch_node["1"]["inputs"]["accept_licences"] = True
            hub.modes[(item("hyperlora-fidelity").hub.repo, BASIS)] = "hold"
            prompt_id = server.queue(fetch_node)
            deadline = time.monotonic() + 120
            while not any(r[0] == "GET" and r[1].endswith(BASIS) for r in hub.requests):
                assert time.monotonic() < deadline, hub.requests
                time.sleep(0.05)
            assert server.post_json("/interrupt", {})[0] == 200
            hub.release.set()
            cancelled = server.wait(prompt_id)
            assert cancelled.error is not None and "HyperLoRAError" not in str(cancelled.error), cancelled.error
            hub.modes[(item("hyperlora-fidelity").hub.repo, BASIS)] = "ok"
            assert not (models / "hyper_lora" / BASIS).exists() and leftovers(models) == []
            assert not [r for r in hub.requests if "resampler" in r[1] or "id_projector" in r[1]]  # nothing after it

            accepted = server.run(fetch_node)
            assert accepted.error is None, accepted.error
            text = accepted.outputs["1"]["text"][0]
            assert "fetched 3 file(s); 2 were already in place" in text, text  # the .json came before the cancel
            assert "antelopev2: not downloaded for you" in text and "antelopev2.zip" in text
            steps = accepted.progress.get("1", [])
            assert steps and steps[-1][0] == steps[-1][1] > 0, steps  # ComfyUI's bar for the node, ending full
            gets = len([r for r in hub.requests if r[0] == "GET"])

            again = server.run(fetch_node)
            assert "fetched 0 file(s); 5 were already in place" in again.outputs["1"]["text"][0]
            assert len([r for r in hub.requests if r[0] == "GET"]) == gets  # nothing downloaded twice
            info = server.get_json("/object_info/HyperLoRACheckpointLoader")["HyperLoRACheckpointLoader"]
            spec = info["input"]["required"]["checkpoint"]
            assert BASIS in (spec[1]["options"] if spec[0] == "COMBO" else spec[0])  # the Loader lists it now
    for (_repo, path), data in standin_files.items():
        target = models / ("clip_vision/clip_vit_large_patch14.safetensors" if path == "model.safetensors" else f"hyper_lora/{path}")
        assert target.read_bytes() == data
    assert leftovers(models) == []
