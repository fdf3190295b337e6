"""Downloading what `check` found missing, from the sources the manifest names, into ComfyUI's folders.

The only code of the pack that touches the network, and only when the user runs `fetch` or the
HyperLoRA Fetch Models node (with its licence accepted). Each file
goes through huggingface_hub (which follows the hub's redirects, retries and resumes a dropped
connection, and checks the size the hub declares) into a staging folder beside its destination;
it is then checked against the hash the hub declares (sha256 for large files, the git blob hash
for small ones) and for its format, and only then renamed into place. A failed or interrupted
download never leaves a file under a final name.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .check import Roots, check_file
from .files import file_problem
from .manifest import Item, ModelFile, items

STAGING = ".hyperlora-download"
"""Hidden folder (same disk as the destination, so the final rename is atomic) for files in flight."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


class FetchError(Exception):
    """One file could not be fetched; the message says which, from where, why, and that nothing was written."""


class Stop(BaseException):  # noqa: N818 - a signal, not an error
    """Raised by a `progress` callback to stop the whole fetch at once (the user cancelled). A BaseException, so
    no retry or per-file error handling swallows it; the file in flight is removed on the way out."""


@dataclass
class FetchResult:
    fetched: list[Path] = field(default_factory=list)
    present: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    manual: list[str] = field(default_factory=list)
    """Items that need a step by hand (the message says which)."""

    @property
    def ok(self) -> bool:
        return not self.failed


def declared_hash_problem(path: Path, etag: str | None) -> str | None:
    """Compare a file with the hash a Hugging Face hub declares for it (its ETag).

    Large (LFS / Xet) files are declared by sha256, small ones by their git blob id
    (sha1 of "blob <size>\\0" + content). Returns a message if they differ, None if they agree or the hub
    declared neither."""
    etag = (etag or "").strip('"').lower()
    if _SHA256.match(etag):
        digest, kind = hashlib.sha256(), "sha256"
    elif _SHA1.match(etag):
        digest, kind = hashlib.sha1(), "git blob sha1"  # noqa: S324 - git's object id, not a security hash
        digest.update(f"blob {path.stat().st_size}\0".encode())
    else:
        return None
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != etag:
        return f"its {kind} is {digest.hexdigest()}, the hub declares {etag}: the file was changed or damaged in transit"
    return None


def _reason(err: Exception) -> str:
    """One line saying why huggingface_hub (or our check) gave up."""
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if status is not None and status >= 400:
        return f"the server answered HTTP {status} ({first})"
    if "X-Repo-Commit" in str(err) or "Hub-compatible" in str(err):
        return "the server does not answer like a Hugging Face hub (a proxy or login page in the way?)"
    if "Consistency check failed" in str(err):
        return f"the download stopped early: {first}"
    return first


Progress = Callable[[int, int], None]
"""`progress(bytes_done, file_size)` for the file in flight (the Fetch node drives ComfyUI's bar with it)."""


def _tqdm_reporting(progress: Progress) -> type:
    """A tqdm class for huggingface_hub's download bar that also reports to `progress`."""
    from tqdm.auto import tqdm

    class Reporting(tqdm):
        def update(self, n=1):
            shown = super().update(n)
            progress(int(self.n), int(self.total or 0))
            return shown

    return Reporting


def download(it: Item, f: ModelFile, target: Path, revision: str, log: Callable[[str], None],
             progress: Progress | None = None) -> str:
    """Fetch one hub file to `target` (atomically); returns the commit it came from."""
    import inspect

    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    assert it.hub is not None and f.path is not None
    staging = target.parent / STAGING / it.id
    url = hf_hub_url(it.hub.repo, f.path, revision=revision)  # on HF_ENDPOINT's mirror when one is set
    shutil.rmtree(staging, ignore_errors=True)
    try:
        meta = get_hf_file_metadata(url)
        commit = meta.commit_hash or revision
        log(f"  downloading {f.path} from {it.hub.repo} (commit {commit[:12]}) -> {target}")
        extra = {}
        if progress is not None:
            progress(0, int(meta.size or 0))
            if "tqdm_class" in inspect.signature(hf_hub_download).parameters:  # huggingface_hub >= 1.0
                extra["tqdm_class"] = _tqdm_reporting(progress)
        local = Path(hf_hub_download(it.hub.repo, f.path, revision=commit, local_dir=staging, **extra))
        mismatch = declared_hash_problem(local, meta.etag)
        if mismatch:
            raise FetchError(mismatch)
        problem = file_problem(local)
        if problem is not None:
            raise FetchError(f"the downloaded file is unusable ({problem.kind})")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, target)
        if progress is not None:
            size = target.stat().st_size
            progress(size, size)
        return commit
    except Exception as err:  # any failure: say what, where from, why; nothing is left under a final name
        raise FetchError(f"{it.id}: {f.target} could not be fetched from {url}: {_reason(err)}. Nothing was "
                         f"written to {target}; run it again to retry.") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.parent.rmdir()
        except OSError:
            pass


def fetch(roots: Roots, only: Sequence[str] | None = None, log: Callable[[str], None] = print,
          progress: Progress | None = None) -> FetchResult:
    """Fetch every missing or damaged file of the chosen items (default: the required ones)."""
    chosen = [it for it in items() if (it.id in only if only else it.default)]
    result = FetchResult()
    for it in chosen:
        statuses = [check_file(it, f, roots) for f in it.files]
        if all(s.ok for s in statuses):
            result.present += [s.where for s in statuses]
            log(f"{it.id}: already in place")
            continue
        if it.manual is not None:
            from .check import pack_folder

            result.manual.append(it.id)
            log(f"{it.id}: not downloaded for you. {it.manual.why}\n  By hand: {it.manual_steps(str(pack_folder(it, roots)))}")
            continue
        log(f"{it.id}: {it.title} (licence: {it.licence})")
        revision = it.hub.revision
        for s in statuses:
            if s.ok:
                result.present.append(s.where)
                continue
            target = s.where if s.status not in ("missing", "misplaced") else Path(roots[it.folder][0]) / s.file.target
            try:
                revision = download(it, s.file, target, revision, log, progress)
            except FetchError as err:
                result.failed.append(str(err))
                log(f"  error: {err}")
                break
            result.fetched.append(target)
    return result
