"""The model manifest (`manifest.json` next to this file): what HyperLoRA needs, from where, to where.

One place names every repository, revision and file; the `check` and `fetch` commands, the Model
Check node and the shipped workflows' download entries all read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MANIFEST = Path(__file__).with_name("manifest.json")
HUB_URL = "https://huggingface.co"


@dataclass(frozen=True)
class HubSource:
    repo: str
    revision: str


@dataclass(frozen=True)
class ManualSource:
    """A file set that is not fetched for the user (licence or no hub copy): the exact step instead."""

    url: str
    why: str
    steps: str


@dataclass(frozen=True)
class ModelFile:
    target: str
    """Path inside the ComfyUI model folder, with '/' separators."""
    path: str | None = None
    """Path inside the source repository (None for manual items)."""
    main: bool = False
    """The file a loader's drop-down names for this item."""


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    folder: str
    """ComfyUI model folder name (models/<folder>, or its extra_model_paths.yaml entries)."""
    files: tuple[ModelFile, ...]
    licence: str
    default: bool
    """Whether `fetch` without names gets it and `check` counts it as required."""
    hub: HubSource | None = None
    manual: ManualSource | None = None

    @property
    def main(self) -> ModelFile:
        return next((f for f in self.files if f.main), self.files[0])

    @property
    def one_download(self) -> bool:
        """Whether a frontend's download button can put this item in place: one file on a hub. A published
        checkpoint (four files, one of them .json) or the face pack (a zip placed by hand) is not."""
        return self.hub is not None and len(self.files) == 1

    def url(self, f: ModelFile) -> str:
        """The download address of a hub file (what the workflows' model entries carry)."""
        if self.hub is None or f.path is None:
            raise ValueError(f"{self.id}: {f.target} is not on a hub")
        return f"{HUB_URL}/{self.hub.repo}/resolve/{self.hub.revision}/{f.path}"

    def manual_steps(self, folder: str) -> str:
        assert self.manual is not None
        return self.manual.steps.format(url=self.manual.url, folder=folder)


def _item(raw: dict) -> Item:
    files = tuple(ModelFile(target=f.get("target", f.get("path")), path=f.get("path"), main=bool(f.get("main")))
                  for f in raw["files"])
    hub = HubSource(**raw["hub"]) if "hub" in raw else None
    manual = ManualSource(**raw["manual"]) if "manual" in raw else None
    if (hub is None) == (manual is None):
        raise ValueError(f"manifest item {raw['id']}: give exactly one of 'hub' or 'manual'")
    return Item(id=raw["id"], title=raw["title"], folder=raw["folder"], files=files, licence=raw["licence"],
                default=bool(raw["default"]), hub=hub, manual=manual)


@lru_cache(maxsize=1)
def items() -> tuple[Item, ...]:
    return tuple(_item(raw) for raw in json.loads(MANIFEST.read_text(encoding="utf-8"))["items"])


def item(item_id: str) -> Item:
    for it in items():
        if it.id == item_id:
            return it
    raise KeyError(f"no model '{item_id}' in the manifest (known: {', '.join(i.id for i in items())})")


def download_entry(it: Item) -> dict:
    """A ComfyUI workflow `models` entry (the frontends offer a download button for it), for an item a button can
    put in place; for any other a button would leave a broken install, so the Run refusal and the Fetch Models
    node handle it instead."""
    if not it.one_download:
        raise ValueError(f"{it.id}: {len(it.files)} file(s){'' if it.hub else ', not on a hub'}: a download button "
                         "cannot put it in place; the Fetch Models node does")
    return {"name": it.main.target, "url": it.url(it.main), "directory": it.folder}
