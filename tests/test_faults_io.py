"""File and IO faults of the campaign (issue 19, item 7): no writer leaves a temporary behind, the
output cache sees a replaced file, header values are checked, unreadable folders are named,
`filename_prefix` is formatted like ComfyUI's, saved files get ComfyUI's mode, an interrupted
trainer checkpoint or a full disk gives our message.

In-process where the core function is the whole story; a real subprocess where a signal is; the
real ComfyUI server where the host's cache or prompt handling is part of it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hyperlora_core import safetensors_io, temporaries
from hyperlora_core.errors import HyperLoRAError

ROOT = Path(__file__).resolve().parents[1]


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Every file or folder under `folder` (hidden ones too) that is not a finished output."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name not in keep)


# -- no temporary of any writer left behind ------------------------------------------------------------------
_BIG_SAVE = """
import sys, threading, time
from pathlib import Path
import torch
from hyperlora_core import safetensors_io, temporaries
temporaries.install_signal_cleanup()
n = int(sys.argv[2])
tensors = {f"w{i}": torch.ones(n) for i in range(8)}
# ComfyUI saves in its prompt worker thread; the main thread (which handles signals) waits
t = threading.Thread(target=safetensors_io.save_tensors_atomic, args=(tensors, Path(sys.argv[1])), daemon=True)
print("START", flush=True)
t.start()
while t.is_alive():
    time.sleep(0.01)
print("DONE", flush=True)
"""


def _writer_temporary(folder: Path) -> bool:
    """Whether a temporary of any writer (ours or safetensors' own `.tmpXXXXXX`) is there now."""
    try:
        return any(p.name.startswith(".") for p in folder.rglob("*"))
    except OSError:  # a folder vanished while walking: look again
        return False


def test_sigterm_during_a_large_save_leaves_no_temporary_of_any_writer(tmp_path):
    """safetensors' save_file writes `.tmpXXXXXX` beside its target; SIGTERM in the middle must not
    leave it behind. The signal is sent when a temporary appears; a save that finishes before it is
    seen is retried with 4x the size."""
    for n in (8_000_000, 32_000_000, 128_000_000):  # 8 tensors of n fp32: 256 MB, 1 GB, 4 GB
        target = tmp_path / "big.safetensors"
        proc = subprocess.Popen([sys.executable, "-c", _BIG_SAVE, str(target), str(n)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout.readline().strip() == "START"
        while proc.poll() is None and not _writer_temporary(tmp_path):
            time.sleep(0.0005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == -signal.SIGTERM
            proc.stdout.close()
            assert _leftovers(tmp_path, set()) == []
            return
        proc.stdout.close()
        assert proc.returncode == 0
        target.unlink()
    pytest.skip("every save finished before a temporary could be seen")



def test_a_sigkilled_save_is_swept_by_the_next_save(tmp_path):
    """SIGKILL cannot be handled: the temporary (with safetensors' own file inside) stays until the
    next save into that folder, which removes it because its process is gone."""
    for n in (8_000_000, 32_000_000, 128_000_000):
        proc = subprocess.Popen([sys.executable, "-c", _BIG_SAVE, str(tmp_path / "big.safetensors"), str(n)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout.readline().strip() == "START"
        while proc.poll() is None and not any(p.name.startswith(".tmp") for p in tmp_path.rglob("*")):
            time.sleep(0.0005)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
            proc.stdout.close()
            assert _leftovers(tmp_path, set()) != []  # what a killed writer leaves
            safetensors_io.save_tensors_atomic({"a": torch.ones(2)}, tmp_path / "next.safetensors")
            assert _leftovers(tmp_path, {"next.safetensors"}) == []
            return
        proc.stdout.close()
        (tmp_path / "big.safetensors").unlink()
    pytest.skip("every save finished before a temporary could be seen")


# -- saved files get ComfyUI's mode; a full disk is named --------------------------------------------------
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_saved_files_get_the_mode_a_plain_open_gives(tmp_path, umask, mode):
    """ComfyUI's saves use open(): 0666 less the umask. Our temporaries are 0600 while written."""
    old = os.umask(umask)
    try:
        lora = safetensors_io.save_tensors_atomic({"a": torch.ones(2)}, tmp_path / "a.safetensors")
        first = safetensors_io.save_tensors_first_free({"a": torch.ones(2)}, [tmp_path / "a.safetensors",
                                                                              tmp_path / "b.safetensors"])
        with temporaries.replacing(tmp_path / "c.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(old)
    assert first == tmp_path / "b.safetensors"
    for path in (lora, first, tmp_path / "c.json"):
        assert path.stat().st_mode & 0o777 == mode, path


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: a real full disk (needs the right to mount, as root in a container)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)  # lazy: a test may hold a file open


def test_disk_full_saving_a_lora_is_named_not_in_serializer_wording(tiny_disk):
    target = tiny_disk / "loras" / "big.safetensors"
    with pytest.raises(HyperLoRAError) as err:
        safetensors_io.save_tensors_atomic({"a": torch.ones(1_000_000)}, target)
    text = str(err.value)
    assert text.startswith(f"disk full writing {target}: ") and "Free space" in text
    assert "serializ" not in text.lower() and "os error" not in text
    assert _leftovers(tiny_disk, {"loras"}) == []


def test_disk_full_writing_a_json_of_ours_is_named(tiny_disk):
    target = tiny_disk / "stats.json"
    with pytest.raises(HyperLoRAError, match=rf"^disk full writing {target}: .*Free space"):
        with temporaries.replacing(target) as tmp:
            tmp.write_text("x" * 1_000_000)
    assert _leftovers(tiny_disk, set()) == []


# -- through the real server ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(comfyui_path):
    from fixtures import comfy_session

    return comfy_session.get(comfyui_path)


def _save_prompt(checkpoint: str, prefix: str) -> dict:
    from fixtures import comfy_session, workflows

    prompt = workflows.for_tiny_models(workflows.api("hyperlora_save_lora"), comfy_session.TINY_CHECKPOINT,
                                       f"hyper_lora/{comfy_session.VITL_CHECKPOINT}")
    prompt[workflows.nodes_of(prompt, "HyperLoRACheckpointLoader")[0]]["inputs"]["checkpoint"] = checkpoint
    prompt[workflows.nodes_of(prompt, "HyperLoRASave")[0]]["inputs"]["filename_prefix"] = prefix
    return prompt


def _run_and_saved(server, prompt: dict) -> tuple[object, list[Path]]:
    before = set(server.output_dir.rglob("*.safetensors"))
    result = server.run(prompt)
    assert result.error is None, result.error
    return result, sorted(set(server.output_dir.rglob("*.safetensors")) - before)


def test_a_checkpoint_replaced_under_the_same_name_is_loaded_again(server):
    """ComfyUI caches a node by its inputs (the file's name); the file's identity is part of the key,
    so the same prompt after the file was replaced runs the Loader again and saves the new weights."""
    from fixtures import workflows
    from safetensors.torch import load_file

    from hyperlora_core import standins

    path = server.models / "hyper_lora" / "iofaults_swapped.safetensors"
    standins.write_tiny_checkpoint(path, seed=3)
    prompt = _save_prompt(path.name, "iofaults/swapped")
    loader = workflows.nodes_of(prompt, "HyperLoRACheckpointLoader")[0]
    try:
        _, first = _run_and_saved(server, prompt)
        again, none = _run_and_saved(server, prompt)
        assert none == [] and loader in again.cached  # unchanged file: the cache still works
        new = path.with_name(".new.safetensors")
        standins.write_tiny_checkpoint(new, seed=4)  # same shapes, same size: only the content differs
        os.replace(new, path)
        result, second = _run_and_saved(server, prompt)
    finally:
        path.unlink(missing_ok=True)
    assert loader in result.executed and len(first) == len(second) == 1
    a, b = load_file(first[0]), load_file(second[0])
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)


# -- trainer: an interrupted checkpoint -----------------------------------------------------------------------
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("content", ["", "{}", '{"rng": {"torch": 5}}'], ids=["empty", "no-rng", "wrong-type"])
def test_resume_with_an_incomplete_rank_file_names_it_and_the_fix(tmp_path, content):
    """After a crash a rank-0.json may be empty or half-written: named with the fix, never KeyError: 'rng'."""
    from fixtures.training import TINY_TRAIN_CONFIG

    from hyperlora_core.comfy_bridge.backbone import tiny_backbone
    from hyperlora_core.train.config import load_config
    from hyperlora_core.train.fit import fit
    from hyperlora_core.train.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", tiny_backbone(0), identities=4, photos=2)
    cfg = load_config(TINY_TRAIN_CONFIG, [
        f"run_dir={tmp_path / 'run'}", f"data.shards={tmp_path / 'data'}", "train.samples.every=-1",
        "train.log.progress_bar=false", "train.log.tensorboard=false", "train.checkpoint.every=1",
        "train.checkpoint.keep_last=3", "stages={base: {steps: 3}}"])
    fit(cfg)
    (tmp_path / "run" / "base" / "final.safetensors").unlink()  # as if stopped after step 2's checkpoint
    ckpts = tmp_path / "run" / "base" / "checkpoints"
    (ckpts / "step-00000002" / "rank-0.json").write_text(content)
    with pytest.raises(HyperLoRAError) as err:
        fit(cfg)
    text = str(err.value)
    assert "step-00000002" in text and "rank-0.json is empty or incomplete" in text
    assert "rename step-00000002 to damaged-step-00000002" in text
    (ckpts / "step-00000002").rename(ckpts / "damaged-step-00000002")  # the advice works
    fit(cfg)
    assert (tmp_path / "run" / "base" / "final.safetensors").is_file()


def test_disk_full_writing_training_shards_is_named(tiny_disk):
    from hyperlora_core.comfy_bridge.backbone import tiny_backbone
    from hyperlora_core.train.synthetic import write_synthetic_dataset

    with pytest.raises(HyperLoRAError, match=rf"^disk full writing {tiny_disk / 'data'}/shard-\d+\.tar: .*Free space"):
        write_synthetic_dataset(tiny_disk / "data", tiny_backbone(0), identities=64, photos=4)
    assert not [p for p in (tiny_disk / "data").iterdir() if p.name.startswith(".")]  # no temporary left


# -- every value read from a checkpoint's header is checked ------------------------------------------------
def _with_metadata(path: Path, **changes: str) -> Path:
    from safetensors.torch import load_file, save_file

    meta = safetensors_io.read_metadata(path)
    meta.update({k.replace("__", "."): v for k, v in changes.items()})
    save_file(load_file(path), path, metadata=meta)
    return path


def _with_tensor(path: Path, key: str, tensor: torch.Tensor) -> Path:
    from safetensors.torch import load_file, save_file

    meta = safetensors_io.read_metadata(path)
    tensors = load_file(path)
    tensors[key] = tensor
    save_file(tensors, path, metadata=meta)
    return path


def _with_module_entry(folder: Path, **entry) -> Path:
    import json

    table_path = folder / "hyper_lora_modules.json"
    table = json.loads(table_path.read_text())
    first = next(iter(table))
    table[first].update(entry)
    table_path.write_text(json.dumps(table))
    return folder


@pytest.mark.parametrize("value,case", [("0", "zero"), ("-64", "negative"), ("1.5", "non-integer"),
                                        ("sixty-four", "wrong type")])
def test_dim_head_in_the_metadata_is_a_positive_integer(tmp_path, value, case):
    from hyperlora_core import standins
    from hyperlora_core.checkpoint import load_hyperlora

    path = _with_metadata(standins.write_tiny_checkpoint(tmp_path / "ours.safetensors", seed=1),
                          hyperlora__dim_head=value)
    with pytest.raises(HyperLoRAError, match=rf"ours\.safetensors: metadata 'hyperlora\.dim_head' is '{value}'; "
                                             r"it must be a positive integer .*export your trained one again"):
        load_hyperlora(path)


@pytest.mark.parametrize("entry,message", [
    ({"hidden_size": 0}, r'"hidden_size" 0; a layer width must be a positive integer'),
    ({"hidden_size": -64}, r'"hidden_size" -64; a layer width must be a positive integer'),
    ({"cross_attention_dim": -1}, r'"cross_attention_dim" -1; a layer width must be a positive integer'),
    ({"hidden_size": 64.5}, r'needs an integer "hidden_size"'),
    ({"hidden_size": True}, r'needs an integer "hidden_size"'),
    ({"cross_attention_dim": "64"}, r'non-integer "cross_attention_dim"'),
], ids=["zero", "negative", "negative-cross", "non-integer", "bool", "string"])
def test_module_table_widths_are_positive_integers(tmp_path, entry, message):
    from hyperlora_core import standins
    from hyperlora_core.checkpoint import load_hyperlora

    folder = _with_module_entry(standins.write_tiny_checkpoint(tmp_path / "pub", seed=1, published_layout=True), **entry)
    with pytest.raises(HyperLoRAError, match=rf"hyper_lora_modules\.json: entry \"lora_unet_\w+\" .*{message}.*came with"):
        load_hyperlora(folder)


@pytest.mark.parametrize("part,key,tensor,message", [
    ("id_projector.safetensors", "2.weight", torch.ones(0), r"'2\.weight' has shape \[0\], with a zero-size dimension"),
    ("resampler.safetensors", "latents", torch.ones(1, 176, 0), r"'latents' has shape \[1, 176, 0\], with a zero-size"),
    ("hyper_lora_modules.safetensors", "0.to_q.base_down_basis", torch.ones(4, 64),
     r"'0\.to_q\.base_down_basis' has shape \[4, 64\], expected 3 dimensions"),
], ids=["zero-size-projector", "zero-size-resampler", "base-basis-wrong-rank"])
def test_tensor_shapes_read_from_the_header_are_checked(tmp_path, part, key, tensor, message):
    from hyperlora_core import standins
    from hyperlora_core.checkpoint import load_hyperlora

    folder = standins.write_tiny_checkpoint(tmp_path / "pub", seed=1, published_layout=True)
    _with_tensor(folder / part, key, tensor)
    with pytest.raises(HyperLoRAError, match=rf"{part.replace('.', '[.]')}.*{message}"):
        load_hyperlora(folder)


@pytest.mark.parametrize("value", ["", "../../etc", "."])
def test_face_pack_in_the_metadata_is_a_folder_name(tmp_path, value):
    from hyperlora_core import standins
    from hyperlora_core.checkpoint import load_hyperlora

    path = _with_metadata(standins.write_tiny_checkpoint(tmp_path / "ours.safetensors", seed=1),
                          hyperlora__face_pack=value)
    with pytest.raises(HyperLoRAError, match=r"ours\.safetensors: metadata 'hyperlora\.face_pack' is .*not a face pack"):
        load_hyperlora(path)


# -- unreadable folders and dangling links in the model folders -----------------------------------------------
_LIST_AS_ANOTHER_USER = """
import json, logging, sys
from pathlib import Path
sys.path[:0] = [sys.argv[2], sys.argv[2] + "/tests"]
from hyperlora_core.comfy_bridge.boot import boot_comfy
boot_comfy(cpu=True)
import folder_paths
from fixtures.pack import pack_submodule
base = Path(sys.argv[1])
records = []
handler = logging.Handler()
handler.emit = lambda record: records.append(record.getMessage())
logging.getLogger().addHandler(handler)
for name, sub in (("hyper_lora", "models/hyper_lora"), ("hyper_lora", "sealed/hyper_lora"),
                  ("insightface", "models/insightface"), ("clip_vision", "models/clip_vision")):
    folder_paths.add_model_folder_path(name, str(base / sub))
try:
    host = pack_submodule("nodes.host")
except RuntimeError:
    sys.exit("\\n".join(records))
from hyperlora_core.comfy_bridge import folders
out = {"checkpoints": host.list_checkpoints(), "faces": folders.face_pack_choices(),
       "clip": folders.clip_vision_choices(), "problem": host.checkpoint_problem("locked/x.safetensors"),
       "face_problem": pack_submodule("nodes.loaders").face_pack_problem("antelopev2/glintr100.onnx"),
       "log": [r for r in records if "HyperLoRA" in r]}
print("RESULT " + json.dumps(out))
"""


def test_unreadable_folders_are_named_with_the_fix_and_dangling_links_are_not_choices(tmp_path):
    """Root reads any folder, so the listing runs as the unprivileged user `nobody` (uid 65534): the
    permission errors are real ones, not simulated."""
    import shutil
    import tempfile


    base = Path(tempfile.mkdtemp(prefix="hyperlora-unreadable-", dir="/tmp"))  # pytest's tmp_path is root-only
    try:
        _list_as_another_user(base)
    finally:
        shutil.rmtree(base)


def _searchable_for_others(paths: list[Path]) -> list[tuple[Path, int]]:
    """Let `nobody` import from the checkout, its venv and the host: a clone made inside a root-only folder (e.g.
    `mktemp -d`, mode 0700) hides them. Each of `paths` gets the others' read and search bits (Python lists a
    sys.path folder to import from it), the folders above them only the search bit, where missing; nothing
    becomes writable. Returns (folder, old mode) to restore."""
    import stat

    opened: list[tuple[Path, int]] = []
    for path in paths:
        for folder, bits in [(path.resolve(), stat.S_IROTH | stat.S_IXOTH),
                             *((parent, stat.S_IXOTH) for parent in path.resolve().parents)]:
            mode = stat.S_IMODE(folder.stat().st_mode)
            if mode & bits != bits and all(folder != f for f, _ in opened):
                folder.chmod(mode | bits)
                opened.append((folder, mode))
    return opened


def _list_as_another_user(base: Path) -> None:
    from hyperlora_core import standins

    hl = base / "models" / "hyper_lora"
    standins.write_tiny_checkpoint(hl / "ok.safetensors", seed=1)
    standins.write_tiny_checkpoint(hl / "locked" / "x.safetensors", seed=1)
    (hl / "dangling.safetensors").symlink_to(base / "gone.safetensors")
    (hl / "clip_vit").mkdir()
    (base / "models" / "insightface" / "models").mkdir(parents=True)
    (base / "models" / "clip_vision").mkdir(parents=True)
    (base / "models" / "clip_vision" / "dangling.safetensors").symlink_to(base / "gone.safetensors")
    (base / "sealed" / "hyper_lora").mkdir(parents=True)
    for p in [base, *base.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    for closed in (hl / "locked", hl / "clip_vit", base / "models" / "insightface" / "models", base / "sealed"):
        closed.chmod(0)
    from hyperlora_core.comfy_bridge.boot import comfyui_path

    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    opened: list[tuple[Path, int]] = []
    try:
        opened = _searchable_for_others([ROOT, comfyui_path()]) if as_user else []
        proc = subprocess.run([*as_user, sys.executable, "-c", _LIST_AS_ANOTHER_USER, str(base), str(ROOT)],
                              capture_output=True, text=True, timeout=300, cwd="/", env={**os.environ, "HOME": "/tmp"})
    finally:
        for closed in (hl / "locked", hl / "clip_vit", base / "models" / "insightface" / "models", base / "sealed"):
            closed.chmod(0o755)
        for folder, mode in reversed(opened):
            folder.chmod(mode)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-6000:]
    import json

    out = json.loads(lines[0][len("RESULT "):])
    assert out["checkpoints"] == ["ok.safetensors"]  # not the dangling link, nothing from the closed folders
    assert out["faces"] == [] and "dangling.safetensors" not in out["clip"]
    assert out["problem"].startswith(f"{hl / 'locked'}: permission denied") and f"chmod a+rx '{hl / 'locked'}'" in out["problem"]
    faces = base / "models" / "insightface" / "models"
    assert out["face_problem"].startswith(f"{faces}: permission denied") and f"chmod a+rx '{faces}'" in out["face_problem"]
    for closed in (hl / "locked", hl / "clip_vit", base / "models" / "insightface" / "models"):
        assert any(f"{closed}: permission denied" in line and "chmod a+rx" in line for line in out["log"]), out["log"]


# -- filename_prefix formatted like ComfyUI's Save Image; files get ComfyUI's mode -----------------------------
def test_filename_prefix_formats_dates_and_widgets_like_the_frontend():
    """The frontend's rules (applyTextReplacements + formatDate of frontend 1.58.1), done on the server."""
    import datetime

    from fixtures.pack import pack_submodule

    host = pack_submodule("nodes.host")
    now = datetime.datetime(2026, 3, 4, 5, 6, 7)
    prompt = {"1": {"class_type": "HyperLoRACheckpointLoader", "inputs": {"checkpoint": "a/b.safetensors", "dtype": "auto"},
                    "_meta": {"title": "Weights"}},
              "2": {"class_type": "KSampler", "inputs": {"seed": 42, "cfg": 7.0, "denoise": 0.5, "model": ["1", 0]},
                    "_meta": {"title": "My sampler"}}}
    cases = {
        "x/%date:yyyy-MM-dd%": "x/2026-03-04", "%date:yy-M-d h-mm-ss%": "26-3-4 5-06-07", "%date:yyy%": "yyy",
        # the frontend splits at '.' first: two parts name a node's widget, three keep only 'date:yy'
        "%date:yy.MM%": "%date:yy.MM%", "%date:yy.M.d%": "26",

        "%KSampler.seed%_%My sampler.cfg%": "42_7", "%Weights.checkpoint%": "a_b.safetensors",
        "%KSampler.model%": "%KSampler.model%", "%Nobody.seed%": "%Nobody.seed%", "%year%-%width%": "%year%-%width%",
        "%KSampler.denoise%": "0.5",
    }
    for given, expected in cases.items():
        assert host.format_filename_prefix(given, prompt, now) == expected, given


def test_save_lora_over_the_api_formats_the_prefix_and_writes_mode_0644(server):
    """Over the HTTP API (no frontend in between) the prefix gets the frontend's %date:...% and
    %NodeName.widget% too, and the file is written with 0666 less the umask, as ComfyUI's files are."""
    import datetime

    from fixtures import workflows

    prompt = _save_prompt("tiny.safetensors", "iofaults/%date:yyyy-MM-dd%/%HyperLoRASave.dtype%_%Photo 1.image%")
    days = {datetime.date.today().isoformat()}
    _, saved = _run_and_saved(server, prompt)
    days.add(datetime.date.today().isoformat())  # a run across midnight
    assert len(saved) == 1 and saved[0].parent.parent == server.output_dir / "iofaults"
    assert saved[0].parent.name in days and saved[0].name == "fp16_face_1.png_00001_.safetensors"
    photo = workflows.nodes_of(prompt, "LoadImage")[0]
    assert prompt[photo]["_meta"]["title"] == "Photo 1"
    umask = os.umask(0)
    os.umask(umask)
    assert saved[0].stat().st_mode & 0o777 == 0o666 & ~umask


_SLOW_CHECKPOINT = """
import sys, time
from pathlib import Path
sys.path[:0] = [sys.argv[2], sys.argv[2] + "/tests"]
from hyperlora_core.comfy_bridge.boot import boot_comfy
boot_comfy(cpu=True)
import torch.distributed.checkpoint.filesystem as dcp_fs
from test_train_checkpointing import _tiny_step
from hyperlora_core import temporaries
from hyperlora_core.train import checkpointing
from hyperlora_core.train.distributed import init_distributed
real, calls = dcp_fs._write_item, [0]
def slow(*args):
    calls[0] += 1
    if calls[0] == 2:  # some tensors are on disk: the process is stopped mid-checkpoint
        print("WRITING", flush=True)
        time.sleep(120)
    return real(*args)
dcp_fs._write_item = slow
temporaries.install_signal_cleanup()
step, opt, sched = _tiny_step()
checkpointing.save_checkpoint(Path(sys.argv[1]), 1, step, opt, sched, init_distributed(), {}, keep_last=2)
"""


def test_sigterm_during_a_trainer_checkpoint_leaves_no_temporary_folder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_CHECKPOINT, str(tmp_path / "ckpts"), str(ROOT)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "WRITING"
    assert [p.name for p in (tmp_path / "ckpts").iterdir()] == [".tmp-step-00000001"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM
    proc.stdout.close()
    assert list((tmp_path / "ckpts").iterdir()) == []
