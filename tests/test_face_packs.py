"""Face pack folders are checked before insightface sees them: every mistake gets a message."""

from __future__ import annotations

import shutil

import pytest

from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.face import FaceAnalyzer, find_pack, list_packs
from hyperlora_core.face.packs import STANDIN_MARKER, check_embedding_space, embedding_space
from hyperlora_core.standins import write_tiny_face_pack


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_face_pack(tmp_path_factory.mktemp("tiny") / "pack")


@pytest.fixture(autouse=True)
def never_download(monkeypatch):
    """insightface must never be asked to fetch a pack in these tests."""
    import insightface.utils.storage as storage

    def refuse(*args, **kwargs):
        raise AssertionError("insightface tried to download a model pack")

    monkeypatch.setattr(storage, "download", refuse)


def _pack(root, tiny, name="antelopev2", files=("tiny_det.onnx", "tiny_2d106.onnx", "tiny_rec.onnx")):
    folder = root / "models" / name
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(tiny / f, folder / f)
    return folder


def test_missing_pack_says_where_to_put_it(tmp_path):
    with pytest.raises(HyperLoRAError) as err:
        find_pack("antelopev2", [tmp_path])
    msg = str(err.value)
    assert f"{tmp_path}/models/antelopev2" in msg and "antelopev2.zip" in msg and "glintr100.onnx" in msg


def test_pack_one_level_too_high(tmp_path, tiny):
    (tmp_path / "antelopev2").mkdir()
    with pytest.raises(HyperLoRAError, match="one level too high. Move it to .*models/antelopev2"):
        find_pack("antelopev2", [tmp_path])


def test_empty_nested_and_subfolder_layouts(tmp_path, tiny):
    folder = tmp_path / "models" / "antelopev2"
    folder.mkdir(parents=True)
    with pytest.raises(HyperLoRAError, match=r"holds no .onnx files \(it is empty\)"):
        find_pack("antelopev2", [tmp_path])
    (folder / "readme.txt").write_text("x")
    with pytest.raises(HyperLoRAError, match=r"holds no .onnx files \(found: readme.txt\)"):
        find_pack("antelopev2", [tmp_path])
    _pack(folder, tiny)  # -> antelopev2/models/antelopev2/*.onnx: a sub-folder
    with pytest.raises(HyperLoRAError, match="are in the sub-folder"):
        find_pack("antelopev2", [tmp_path])
    shutil.rmtree(folder / "models")
    nested = folder / "antelopev2"
    nested.mkdir()
    shutil.copy(tiny / "tiny_det.onnx", nested / "tiny_det.onnx")
    with pytest.raises(HyperLoRAError, match="is nested.*Move them one level up"):
        FaceAnalyzer.load("antelopev2", roots=[tmp_path], providers="cpu")


@pytest.mark.parametrize(
    "present, missing",
    [
        (("tiny_2d106.onnx", "tiny_rec.onnx"), "no face detector \\(SCRFD\\) \\(e.g. scrfd_10g_bnkps.onnx\\)"),
        (("tiny_det.onnx", "tiny_rec.onnx"), "no 106-point 2D landmark model \\(e.g. 2d106det.onnx\\)"),
        (("tiny_det.onnx", "tiny_2d106.onnx"), "no ArcFace recognition model \\(e.g. glintr100.onnx\\)"),
    ],
)
def test_missing_model_is_named(tmp_path, tiny, present, missing):
    _pack(tmp_path, tiny, files=present)
    with pytest.raises(HyperLoRAError, match=f"is incomplete: {missing} among its files") as err:
        FaceAnalyzer.load("antelopev2", roots=[tmp_path], providers="cpu")
    assert " and no " not in str(err.value)  # only the missing one is named


def test_damaged_file(tmp_path, tiny):
    folder = _pack(tmp_path, tiny)
    (folder / "tiny_rec.onnx").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 1\n")
    with pytest.raises(HyperLoRAError, match="could not load the face models in .*download the pack again"):
        FaceAnalyzer.load("antelopev2", roots=[tmp_path], providers="cpu")


def test_folder_path_and_listing(tmp_path, tiny):
    folder = _pack(tmp_path, tiny, name="my_pack")
    _pack(tmp_path, tiny, name="antelopev2")
    assert list_packs([tmp_path, tmp_path / "nowhere"]) == ["antelopev2", "my_pack"]
    assert find_pack(str(folder), []) == folder  # an explicit folder works without roots
    assert FaceAnalyzer.load(folder, providers="cpu").pack_name == "my_pack"


def test_other_embedding_space_is_refused(tmp_path, tiny):
    assert embedding_space(tmp_path / "anything", "/x/glintr100.onnx") == "antelopev2"
    assert embedding_space(tmp_path / "antelopev2", "/x/w600k_r50.onnx") == "buffalo_l"  # renamed folder
    assert embedding_space(tmp_path / "my_pack", "/x/custom.onnx") == "my_pack"
    folder = _pack(tmp_path, tiny, name="buffalo_l", files=("tiny_det.onnx", "tiny_2d106.onnx"))
    shutil.copy(tiny / "tiny_rec.onnx", folder / "w600k_r50.onnx")
    an = FaceAnalyzer.load("buffalo_l", roots=[tmp_path], providers="cpu")
    assert an.embedding_space == "buffalo_l"
    with pytest.raises(HyperLoRAError, match='trained on "antelopev2" face embeddings.*"buffalo_l".*wrong, not merely worse'):
        check_embedding_space(an.embedding_space, "antelopev2")
    check_embedding_space(an.embedding_space, "antelopev2", allow_mismatch=True)  # the user's override
    check_embedding_space(an.embedding_space, "buffalo_l")
    (folder / STANDIN_MARKER).write_text("stand-in")
    assert embedding_space(folder, "/x/w600k_r50.onnx") == "standin:buffalo_l"
    check_embedding_space("standin:buffalo_l", "antelopev2")  # stand-ins are never refused
