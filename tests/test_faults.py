"""Faults and bad inputs: each gives our error (HyperLoRAError) with a message that names the file,
photo or field and the fix, and nothing is lost or half-written (issue 10).

In-process where the node or core function is the whole story; through the real ComfyUI server
(scripts/comfy_server.py) where the host is part of it: API values the host passes on, a model
folder the host lists, a photo the host loads. The property-based test over every node's API
inputs is in test_faults_fuzz.py.
"""

from __future__ import annotations

import copy
import errno
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import comfy_session, workflows
from fixtures.nodes_env import model_folder, output_folder, run_node, validate_node
from fixtures.pack import load_pack, pack_submodule
from fixtures.training import TINY_TRAIN_CONFIG as TINY
from PIL import Image
from safetensors.torch import load_file, save_file

from hyperlora_core import safetensors_io, standins, temporaries
from hyperlora_core.checkpoint import load_hyperlora
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.lora import interpolate_loras, mix_loras, save_lora, slider_lora

ROOT = Path(__file__).resolve().parents[1]
TINY_CKPT = comfy_session.TINY_CHECKPOINT


def _lora(n_in: int = 8, n_out: int = 8, rank: int = 2, seed: int = 0, prefix: str = "lora_unet_x_to_q") -> dict:
    g = torch.Generator().manual_seed(seed)
    return {f"{prefix}.lora_down.weight": torch.randn(rank, n_in, generator=g),
            f"{prefix}.lora_up.weight": torch.randn(n_out, rank, generator=g), f"{prefix}.alpha": torch.tensor(1.0)}


@pytest.fixture(scope="module")
def pack():
    return load_pack("auto")[1]


# -- 1. non-finite numbers stop where they enter -------------------------------------------------------------
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_or_inf_in_the_basis_is_refused_naming_file_and_key(tmp_path, value):
    path = standins.write_tiny_checkpoint(tmp_path / "bad.safetensors", seed=1)
    tensors = load_file(path)
    key = next(k for k in tensors if "basis" in k and "up" in k)
    tensors[key][0, 0] = value
    save_file(tensors, path, metadata=safetensors_io.read_metadata(path))
    with pytest.raises(HyperLoRAError, match=rf"bad\.safetensors: '{key}' contains NaN or infinite .*damaged"):
        load_hyperlora(path)


def test_a_nan_lora_is_never_saved_or_applied(tmp_path):
    from hyperlora_core.comfy_bridge import apply_lora
    from hyperlora_core.comfy_bridge.backbone import tiny_backbone

    lora = _lora()
    lora["lora_unet_x_to_q.lora_up.weight"][0, 0] = math.nan
    with pytest.raises(HyperLoRAError, match=r"lora_up.weight' holds NaN .*black.*Nothing was written"):
        save_lora(lora, tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(HyperLoRAError, match=r"ID-LoRA: .* holds NaN or infinite values"):
        apply_lora(tiny_backbone(0).unet, lora, 0.8)


@pytest.mark.parametrize("node,field,value", [
    ("HyperLoRAApply", "strength", math.nan), ("HyperLoRAApply", "base_strength", -math.inf),
    ("HyperLoRAInterpolate", "t", math.nan), ("HyperLoRAConceptSlider", "scale", math.inf),
    ("HyperLoRAMix", "weight_1", math.nan), ("HyperLoRAMix", "weight_2", 1e300), ("HyperLoRAApply", "strength", "0.5"),
])
def test_number_inputs_are_finite_in_range_numbers_or_a_named_error(pack, node, field, value):
    a, b = _lora(seed=1), _lora(seed=2)
    inputs = {"HyperLoRAApply": {"model": None, "lora": a, "strength": 0.8, "base_strength": 0.0},
              "HyperLoRAInterpolate": {"lora_a": a, "lora_b": b, "t": 0.5, "mode": "factors"},
              "HyperLoRAConceptSlider": {"lora_a": a, "lora_b": b, "scale": 1.0},
              "HyperLoRAMix": {"mode": "delta", "normalize": False, "lora_1": a, "weight_1": 1.0, "lora_2": b,
                               "weight_2": 1.0, "weight_3": 1.0, "weight_4": 1.0}}[node]
    inputs[field] = value
    with pytest.raises(HyperLoRAError, match=rf"'{field}' (is|must be).*(finite|between).*Set the widget or the API value"):
        run_node(pack[node], **inputs)


@pytest.mark.parametrize("override,message", [
    ("train.optimizer.lr=-1e-3", r"train.optimizer.lr and basis_lr must be > 0; found -0.001"),
    ("train.optimizer.lr=0", r"lr and basis_lr must be > 0"),
    ("train.optimizer.lr=.nan", r"'train.optimizer.lr' must be a finite number"),
    ("train.optimizer.basis_lr=-1", r"basis_lr must be > 0"),
    ("stages.base.lr=-0.1", r"stages.base.lr must be > 0"),
    ("stages.base.steps=0", r"stages.base.steps must be >= 1"),
    ("train.optimizer.weight_decay=-1", r"weight_decay must be >= 0"),
    ("train.optimizer.betas=[1.0, 0.999]", r"betas and momentum must be in \[0, 1\)"),
    ("train.optimizer.grad_clip=0", r"grad_clip must be > 0"),
    ("train.loss.min_snr_gamma=-5", r"min_snr_gamma must be > 0"),
    ("train.dropout.text=1.5", r"dropout.text must be in \[0, 1\]"),
])
def test_trainer_config_values_are_checked_before_any_work(override, message):
    from hyperlora_core.train.config import load_config

    with pytest.raises(HyperLoRAError, match=message):
        load_config(TINY, [override])


def test_negative_learning_rate_stops_the_cli_with_rc_2(tmp_path, capsys):
    from hyperlora_core.train.__main__ import main

    rc = main(["fit", "--config", str(TINY), "--set", f"run_dir={tmp_path / 'run'}", "--set", "train.optimizer.lr=-1e-3"])
    assert rc == 2 and "lr and basis_lr must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing trained, nothing exported


# -- 2. model folders are walked safely ------------------------------------------------------------------
def test_symlink_loops_are_listed_once_and_logged_once(tmp_path, caplog):
    host = pack_submodule("nodes.host")
    root = tmp_path / "hyper_lora"
    standins.write_tiny_checkpoint(root / "a" / "tiny.safetensors", seed=1)
    os.symlink(".", root / "loop")
    os.symlink("..", root / "a" / "up")
    os.symlink(root / "a", root / "alias")  # a second link to a real folder: listed once
    with model_folder("hyper_lora", root), caplog.at_level("WARNING"):
        start = time.monotonic()
        names = host.list_checkpoints()
        host.list_checkpoints()
    assert time.monotonic() - start < 10
    assert names == ["a/tiny.safetensors"]
    warnings = [r.getMessage() for r in caplog.records if "listed once" in r.getMessage()]
    assert len(warnings) == 3 and any("symlink loop" in w for w in warnings)  # each link reported once, not per listing


def test_a_folder_missing_a_part_is_listed_with_what_is_missing(tmp_path, pack):
    host = pack_submodule("nodes.host")
    root = tmp_path / "hyper_lora"
    standins.write_tiny_checkpoint(root / "partial", seed=1, published_layout=True)
    (root / "partial" / "hyper_lora_modules.json").unlink()
    with model_folder("hyper_lora", root):
        names = host.list_checkpoints()
        assert names == ["partial (incomplete: no hyper_lora_modules.json)"]
        with pytest.raises(HyperLoRAError, match=r"partial: hyper_lora_modules.json is missing.*copy it into this folder"):
            run_node(pack["HyperLoRACheckpointLoader"], checkpoint=names[0], dtype="auto")


# -- 3. nothing lost under concurrency and faults ------------------------------------------------------------
def _save_many(out: str, count: int, queue) -> None:
    import folder_paths

    folder_paths.set_output_directory(out)
    save = pack_submodule("nodes.save")
    names = [save.save_to_output(_lora(seed=os.getpid()), "shared/lora", "fp32")["filename"] for _ in range(count)]
    queue.put(names)


def test_two_processes_saving_into_one_folder_lose_nothing(tmp_path):
    """Two ComfyUI servers sharing an output folder: every save gets its own file."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_save_many, args=(str(tmp_path), 15, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    names = [n for _ in procs for n in queue.get(timeout=300)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    files = sorted((tmp_path / "shared").iterdir())
    assert len(names) == len(set(names)) == len(files) == 30
    assert all(not f.name.startswith(".") for f in files)  # no temporaries left
    assert all(load_file(f)["lora_unet_x_to_q.lora_down.weight"].shape == (2, 8) for f in files)  # each reads back


_SLOW_SAVE = """
import sys, time
from pathlib import Path
import torch
from hyperlora_core import safetensors_io, standins, temporaries
temporaries.install_signal_cleanup()
real = safetensors_io.save_file
def slow(tensors, path, metadata=None):
    real(tensors, path, metadata=metadata)
    print("WRITING", flush=True)
    time.sleep(60)
safetensors_io.save_file = slow
safetensors_io.save_tensors_atomic({"a": torch.zeros(1000)}, Path(sys.argv[1]))
"""


def test_sigterm_during_a_save_leaves_no_temporary_and_the_old_file(tmp_path):
    target = tmp_path / "x.safetensors"
    safetensors_io.save_tensors_atomic({"a": torch.ones(3)}, target)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, str(target)], cwd=ROOT, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    assert proc.stdout.readline().strip() == "WRITING"
    assert any(p.name.endswith(temporaries.SUFFIX) for p in tmp_path.iterdir())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM
    proc.stdout.close()
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]
    assert torch.equal(load_file(target)["a"], torch.ones(3))


def test_a_killed_save_is_swept_by_the_next_one(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".x.safetensors.{temporaries._host()}.{dead.pid}.abcd{temporaries.SUFFIX}"
    stale.write_bytes(b"half")
    foreign = tmp_path / f".y.safetensors.otherhost.1.abcd{temporaries.SUFFIX}"  # another host's, fresh: kept
    foreign.write_bytes(b"half")
    safetensors_io.save_tensors_atomic({"a": torch.ones(1)}, tmp_path / "z.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([foreign.name, "z.safetensors"])


@pytest.mark.parametrize("code,message", [
    (errno.ENOSPC, "disk full writing {kept}/lora_.*: .*Free space"), (errno.EROFS, "the folder is on a read-only file system.*writable folder"),
    (errno.EACCES, "permission denied.*permissions"),
])
def test_disk_full_and_read_only_output_name_the_folder_and_keep_older_files(tmp_path, pack, monkeypatch, code, message):
    with output_folder(tmp_path):
        run_node(pack["HyperLoRASave"], lora=_lora(), filename_prefix="kept/lora", dtype="fp16")
        before = {p: p.read_bytes() for p in (tmp_path / "kept").iterdir()}

        def fail(*args, **kwargs):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(safetensors_io, "save_file", fail)
        where = "" if code == errno.ENOSPC else f"{tmp_path / 'kept'}/lora_.*: "
        with pytest.raises(HyperLoRAError, match=where + message.format(kept=tmp_path / "kept")):
            run_node(pack["HyperLoRASave"], lora=_lora(), filename_prefix="kept/lora", dtype="fp16")
    assert {p: p.read_bytes() for p in (tmp_path / "kept").iterdir()} == before


# -- 4. the weak messages ------------------------------------------------------------------------------------
def test_unreadable_checkpoint_says_permission_not_download(tmp_path, monkeypatch):
    path = standins.write_tiny_checkpoint(tmp_path / "t.safetensors", seed=1)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(safetensors_io, "open", denied, raising=False)  # root can read anything: simulate
    with pytest.raises(HyperLoRAError, match="t.safetensors: permission denied.*chmod") as err:
        load_hyperlora(path)
    assert "download" not in str(err.value)


def test_unreadable_face_model_says_permission_not_download(tmp_path, monkeypatch):
    from hyperlora_core.face import analyzer
    from hyperlora_core.standins import write_tiny_face_pack

    folder = write_tiny_face_pack(tmp_path / "models" / "antelopev2")
    real_open = open

    def denied(path, *args, **kwargs):
        if str(path).endswith(".onnx"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(analyzer, "open", denied, raising=False)
    with pytest.raises(HyperLoRAError, match=r"face model .*\.onnx: permission denied") as err:
        analyzer.FaceAnalyzer.load(folder)
    assert "download" not in str(err.value)


@pytest.mark.parametrize("prefix,message", [
    ("x" * 230, r"is 230 bytes long; each folder or file name may have at most 200"),
    ("a_file/lora", r"a part of this path is a file, not a folder; choose another sub-folder name"),
])
def test_output_prefix_too_long_or_through_a_file(tmp_path, pack, prefix, message):
    (tmp_path / "a_file").write_text("I am a file")
    with output_folder(tmp_path), pytest.raises(HyperLoRAError, match=message):
        run_node(pack["HyperLoRASave"], lora=_lora(), filename_prefix=prefix, dtype="fp16")
    if len(prefix) > 200:
        assert message.split(";")[0].split(" ")[0] in validate_node(pack["HyperLoRASave"], filename_prefix=prefix)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.parametrize("combine", [
    lambda a, b: mix_loras([a, b], [0.5, 0.5], "delta"), lambda a, b: mix_loras([a, b], [0.5, 0.5], "factors"),
    lambda a, b: interpolate_loras(a, b, 0.3, "factors"), lambda a, b: interpolate_loras(a, b, 0.3, "delta"),
    lambda a, b: slider_lora(a, b, 1.0),
], ids=["mix-delta", "mix-factors", "interpolate-factors", "interpolate-delta", "slider"])
def test_loras_for_different_models_are_refused_in_every_mix_mode(combine):
    with pytest.raises(HyperLoRAError, match=r"\[8, 8\] weight in LoRA 1 but a \[8, 16\] weight in LoRA 2.*different models"):
        combine(_lora(8, 8), _lora(16, 8))


def test_a_damaged_lora_is_named(pack):
    bad = _lora()
    bad["lora_unet_x_to_q.lora_up.weight"] = torch.zeros(8, 3)
    with pytest.raises(HyperLoRAError, match=r"'lora_unet_x_to_q': lora_down \[2, 8\] and lora_up \[8, 3\] do not fit"):
        mix_loras([bad, _lora()], [1, 1])


def _damaged_run(tmp_path, corrupt) -> tuple[Path, object]:
    from hyperlora_core.comfy_bridge.backbone import tiny_backbone
    from hyperlora_core.train.config import load_config
    from hyperlora_core.train.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", tiny_backbone(0), identities=4, photos=2)
    sets = [f"run_dir={tmp_path / 'run'}", f"data.shards={tmp_path / 'data'}", "train.samples.every=-1",
            "train.log.progress_bar=false", "train.log.tensorboard=false", "train.checkpoint.every=1",
            "train.checkpoint.keep_last=3", "stages={base: {steps: 3}}"]
    cfg = load_config(TINY, sets)
    ckpts = tmp_path / "run" / "base" / "checkpoints"
    from hyperlora_core.train.fit import fit

    fit(cfg)
    (tmp_path / "run" / "base" / "final.safetensors").unlink()  # as if stopped after step 2's checkpoint
    corrupt(ckpts / "step-00000002")
    return ckpts, cfg


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("part", ["trainer.json", "shard"])
def test_resume_from_a_damaged_checkpoint_names_it_and_the_previous_one(tmp_path, part):
    from hyperlora_core.train.fit import fit

    def corrupt(folder: Path) -> None:
        target = folder / "trainer.json" if part == "trainer.json" else sorted(folder.glob("*.distcp"))[0]
        target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 3])

    ckpts, cfg = _damaged_run(tmp_path, corrupt)
    with pytest.raises(HyperLoRAError) as err:
        fit(cfg)
    text = str(err.value)
    assert "step-00000002" in text and ("trainer.json" in text if part == "trainer.json" else ".distcp" in text)
    assert "The previous checkpoint step-00000001 can be used: rename step-00000002 to damaged-step-00000002" in text
    assert "delete" not in text.lower()
    (ckpts / "step-00000002").rename(ckpts / "damaged-step-00000002")  # the advice works
    fit(cfg)
    assert (tmp_path / "run" / "base" / "final.safetensors").is_file()


def test_face_models_option_accepts_the_folder_that_holds_antelopev2(tmp_path):
    from hyperlora_core.standins import write_tiny_face_pack
    from hyperlora_core.train.prepare import _load_analyzer

    write_tiny_face_pack(tmp_path / "insightface" / "models" / "antelopev2")
    for given in (tmp_path / "insightface", tmp_path / "insightface" / "models",
                  tmp_path / "insightface" / "models" / "antelopev2"):
        assert _load_analyzer(str(given)).folder == tmp_path / "insightface" / "models" / "antelopev2"


# -- 5. through the real server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(comfyui_path):
    return comfy_session.get(comfyui_path)


def _alive(server) -> None:
    assert "system" in server.get_json("/system_stats", timeout=10)


def _our_error(result, *patterns: str) -> str:
    assert result.error is not None, "the prompt succeeded"
    assert result.error["exception_type"].endswith("HyperLoRAError"), result.error
    message = result.error["exception_message"]
    for pattern in patterns:
        assert pattern in message, message
    return message


def _tiny(server, name: str) -> dict:
    prompt = workflows.api(name)
    return workflows.for_tiny_models(prompt, TINY_CKPT, f"hyper_lora/{comfy_session.VITL_CHECKPOINT}")


@pytest.mark.parametrize("node,field", [("HyperLoRAApply", "strength"), ("HyperLoRAInterpolate", "t"),
                                        ("HyperLoRAConceptSlider", "scale")])
def test_nan_widgets_sent_through_the_api_are_named_errors_not_black_images(server, node, field):
    name = {"HyperLoRAApply": "hyperlora_t2i_one_photo", "HyperLoRAInterpolate": "hyperlora_interpolate_two_people",
            "HyperLoRAConceptSlider": "hyperlora_concept_slider"}[node]
    prompt = _tiny(server, name)
    prompt[workflows.nodes_of(prompt, node)[0]]["inputs"][field] = math.nan
    before = set(server.output_dir.rglob("*.png"))
    _our_error(server.run(prompt), f"'{field}' is nan")
    assert set(server.output_dir.rglob("*.png")) == before  # no image was written
    _alive(server)


def test_symlink_loops_do_not_hang_the_server(server):
    root = server.models / "hyper_lora"
    links = [root / "loop", root / "loop2"]
    for link in links:
        os.symlink(".", link)
    try:
        start = time.monotonic()
        options = server.get_json("/object_info/HyperLoRACheckpointLoader", timeout=30)[
            "HyperLoRACheckpointLoader"]["input"]["required"]["checkpoint"][1]["options"]
        assert time.monotonic() - start < 30
        assert TINY_CKPT in options and not [o for o in options if o.startswith("loop")]
        _alive(server)
    finally:
        for link in links:
            link.unlink()
    assert server.log().count("(a symlink loop)") >= 1


def test_nan_basis_checkpoint_through_the_loader_node(server):
    bad = server.models / "hyper_lora" / "nan_basis.safetensors"
    path = standins.write_tiny_checkpoint(bad, seed=2)
    tensors = load_file(path)
    key = next(k for k in tensors if "basis" in k)
    tensors[key].fill_(math.nan)
    save_file(tensors, path, metadata=safetensors_io.read_metadata(path))
    try:
        prompt = _tiny(server, "hyperlora_save_lora")
        prompt[workflows.nodes_of(prompt, "HyperLoRACheckpointLoader")[0]]["inputs"]["checkpoint"] = bad.name
        saved = set(server.output_dir.rglob("*.safetensors"))
        _our_error(server.run(prompt), "nan_basis.safetensors", "NaN or infinite", "damaged")
        assert set(server.output_dir.rglob("*.safetensors")) == saved
    finally:
        bad.unlink()
    _alive(server)


def test_a_16_bit_png_is_named_not_called_faceless(server):
    photo = np.asarray(standins.face_photo(3).convert("L"), np.uint16) * 257
    Image.fromarray(photo).save(server.base / "input" / "sixteen_bit.png")
    prompt = _tiny(server, "hyperlora_save_lora")
    prompt[workflows.nodes_of(prompt, "LoadImage")[0]]["inputs"]["image"] = "sixteen_bit.png"
    message = _our_error(server.run(prompt), "pure white", "16-bit PNG", "8-bit PNG or JPEG")
    assert "no face found" not in message
    _alive(server)


def test_save_through_a_file_named_like_a_folder_via_the_api(server):
    (server.output_dir / "not_a_folder").write_text("x")
    prompt = _tiny(server, "hyperlora_save_lora")
    prompt[workflows.nodes_of(prompt, "HyperLoRASave")[0]]["inputs"]["filename_prefix"] = "not_a_folder/lora"
    _our_error(server.run(copy.deepcopy(prompt)), "a part of this path is a file, not a folder")
    _alive(server)
