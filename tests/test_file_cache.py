"""The one cache of ours (`hyperlora_core.file_cache`): one invalidation rule, one entry per kind."""

from __future__ import annotations

import gc
import os
import weakref

from hyperlora_core.file_cache import FileCache


class Loaded:
    def __init__(self, path):
        self.path = path


def test_reused_while_the_files_are_unchanged_reloaded_when_they_change(tmp_path):
    cache, loads = FileCache(), []

    def load(p):
        loads.append(p)
        return Loaded(p)

    f = tmp_path / "model.safetensors"
    f.write_bytes(b"one")
    a = cache.get("model", f, load)
    assert cache.get("model", f, load) is a and len(loads) == 1
    os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 10**9))  # same size, new time: replaced file
    b = cache.get("model", f, load)
    assert b is not a and len(loads) == 2
    f.write_bytes(b"longer")  # new size
    assert cache.get("model", f, load) is not b
    assert cache.get("model", f, load, "fp16") is not cache.get("model", f, load, "fp32")  # the extra key counts


def test_a_folder_changes_with_any_of_its_files(tmp_path):
    cache = FileCache()
    (tmp_path / "a.onnx").write_bytes(b"a")
    first = cache.get("pack", tmp_path, Loaded)
    assert cache.get("pack", tmp_path, Loaded) is first
    (tmp_path / "b.onnx").write_bytes(b"b")
    assert cache.get("pack", tmp_path, Loaded) is not first


def test_one_entry_per_kind_and_the_old_one_is_freed(tmp_path):
    cache = FileCache()
    for name in ("x", "y"):
        (tmp_path / name).write_bytes(name.encode())
    old = cache.get("model", tmp_path / "x", Loaded)
    ref = weakref.ref(old)
    del old
    cache.get("model", tmp_path / "y", Loaded)
    cache.get("face", tmp_path / "x", Loaded)
    gc.collect()
    assert ref() is None and len(cache) == 2  # switching models freed the first; kinds do not evict each other
