"""Node help pages for the frontends' help panel (node library -> a node's "?", or the Info tab of a
selected node): `web/docs/<NodeId>.md` in English and `web/docs/<NodeId>/zh.md` in Chinese, served by
ComfyUI under `/extensions/<pack folder>/docs/` because the pack's `WEB_DIRECTORY` is `web`.

    .venv/bin/python -m scripts.node_docs          # rewrite web/docs/
    .venv/bin/python -m scripts.node_docs --check  # exit 1 if a page is missing or out of date

Both frontends (1.32.9 and 1.58.1) ask for `docs/<NodeId>/<locale>.md` first, then `docs/<NodeId>.md`;
without a page they show the node's description only. A page is written from the node's declaration
(English) or `locales/zh` (Chinese): what it does, each input with its type, default, range or choices
and which of our nodes feed it, each output and which of our nodes take it, then a short hand-written
word on where to start (`TEXT` below).
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "web" / "docs"
COMMAND = ".venv/bin/python -m scripts.node_docs"
LANGUAGES = ("en", "zh")
BUILTIN = {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "IMAGE", "MASK", "MODEL", "CLIP", "VAE", "CLIP_VISION",
           "CONDITIONING", "LATENT"}
"""ComfyUI's own types: many nodes of other packs give and take them, so a page lists no sources for them."""

TEXT = {
    "en": {
        "inputs": "Inputs", "outputs": "Outputs", "none": "None.", "optional": "optional", "default": "default",
        "choices": "one of", "file_choice": "a choice from the folder's files", "range": "from {min} to {max}",
        "from": "from", "to": "goes to", "yes": "on", "no": "off", "open": " (", "close": ")", "sep": "; ", "colon": ": ",
        "list": ", ",
        "start": "## Where to start\n\nThe templates show the HyperLoRA nodes in working graphs: *Workflow -> "
                 "Browse Templates -> HyperLoRA*. When a weight file is missing, the **HyperLoRA Model Check** node lists "
                 "every file HyperLoRA needs, where it goes and how to get it.",
        "compat": "## The published pack's node\n\nThis node exists so that workflows made for the published "
                  "*ComfyUI-HyperLoRA* pack open and run unchanged, on this pack's code. For a new graph, use "
                  "the HyperLoRA nodes (category *HyperLoRA*).",
    },
    "zh": {
        "inputs": "输入", "outputs": "输出", "none": "无。", "optional": "可选", "default": "默认",
        "choices": "可选值", "file_choice": "从文件夹里的文件中选择", "range": "范围 {min} 到 {max}",
        "from": "来自", "to": "接到", "yes": "开", "no": "关", "open": "（", "close": "）", "sep": "；", "colon": "：",
        "list": "、",
        "start": "## 从哪里开始\n\n模板里有用 HyperLoRA 节点搭好的、可以直接运行的图：*工作流 -> 浏览模板 -> HyperLoRA*。缺少权重文件时，"
                 "**HyperLoRA 模型检查**节点会列出 HyperLoRA 需要的每个文件、该放在哪里以及如何获取。",
        "compat": "## 原版插件的节点\n\n这个节点让为原版 *ComfyUI-HyperLoRA* 插件做的工作流无需修改即可打开和运行"
                  "（运行的是本插件的代码）。新建的图请使用 HyperLoRA 节点（*HyperLoRA* 分类）。",
    },
}


def _text(texts: dict, lang: str, node_id: str, *path: str, fallback: str | None = None) -> str:
    """A translated text (`locales/<lang>` nodeDefs layout), or `fallback` where the translation lacks it."""
    value = texts.get(lang, {}).get(node_id, {})
    for k in path:
        value = value.get(k, {}) if isinstance(value, dict) else {}
    return value if isinstance(value, str) and value.strip() else (fallback or "")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _value(value, t: dict) -> str:
    if isinstance(value, bool):
        return t["yes"] if value else t["no"]
    return f"`{value}`" if isinstance(value, str) else _number(value)


def _facts(i, t: dict) -> list[str]:
    """Type, optional, default, range or choices of one input, in the page's language."""
    facts = [f"`{i.type}`" if i.type != "COMBO" else ""]
    if i.type == "COMBO":
        if callable(i.options):
            facts.append(t["file_choice"])
        else:
            facts.append(f"{t['choices']} " + t["list"].join(f"`{o}`" for o in i.option_list()))
    if i.optional:
        facts.append(t["optional"])
    if i.default not in (None, ""):
        facts.append(f"{t['default']} {_value(i.default, t)}")
    if i.type in ("INT", "FLOAT") and i.min is not None and i.max is not None:
        facts.append(t["range"].format(min=_number(i.min), max=_number(i.max)))
    return [f for f in facts if f]


def page(d, defs, compat: set[str], texts: dict, lang: str) -> str:
    """One node's help page in `lang` ("en": from the declaration; others: from `texts[lang]`). `compat`: the
    published pack's node ids (their pages name only each other as sources and takers; ours, only ours)."""
    t = TEXT[lang]
    name = {n.node_id: _text(texts, lang, n.node_id, "display_name", fallback=n.display_name) for n in defs}
    ours = [n for n in defs if (n.node_id in compat) == (d.node_id in compat)]
    lines = [f"# {name[d.node_id]}", "", _text(texts, lang, d.node_id, "description", fallback=d.description), "",
             f"## {t['inputs']}", ""]
    for i in d.inputs:
        label = _text(texts, lang, d.node_id, "inputs", i.name.replace(".", "_"), "name", fallback=i.name)
        facts = ([f"`{i.name}`"] if label != i.name else []) + _facts(i, t)
        if i.type not in BUILTIN:
            sources = [name[n.node_id] for n in ours if any(o.type == i.type for o in n.outputs)]
            if sources:
                facts.append(f"{t['from']} " + t["list"].join(sources))
        tip = _text(texts, lang, d.node_id, "inputs", i.name.replace(".", "_"), "tooltip", fallback=i.tooltip)
        lines.append(f"- **{label}**{t['open']}{t['sep'].join(facts)}{t['close']}" + (f"{t['colon']}{tip}" if tip else ""))
    if not d.inputs:
        lines.append(t["none"])
    lines += ["", f"## {t['outputs']}", ""]
    for k, o in enumerate(d.outputs):
        label = _text(texts, lang, d.node_id, "outputs", str(k), "name", fallback=o.name)
        facts = [f"`{o.type}`"]
        if o.type not in BUILTIN:
            takers = [name[n.node_id] for n in ours if n is not d and any(i.type == o.type for i in n.inputs)]
            if takers:
                facts.append(f"{t['to']} " + t["list"].join(takers))
        tip = _text(texts, lang, d.node_id, "outputs", str(k), "tooltip", fallback=o.tooltip)
        lines.append(f"- **{label}**{t['open']}{t['sep'].join(facts)}{t['close']}" + (f"{t['colon']}{tip}" if tip else ""))
    if not d.outputs:
        lines.append(t["none"])
    lines += ["", t["compat" if d.node_id in compat else "start"], ""]
    return "\n".join(lines)


def path_of(node_id: str, lang: str) -> Path:
    """Where the frontends look: `<NodeId>.md` (any language without its own page) and `<NodeId>/<lang>.md`."""
    return DOCS / (f"{node_id}.md" if lang == "en" else f"{node_id}/{lang}.md")


def pages(registry, texts: dict) -> dict[Path, str]:
    """Every page of every node the registry declares, English and Chinese (`texts`: {lang:
    locales/<lang>/nodeDefs.json})."""
    defs = registry.node_defs(include_compat=True)
    compat = {d.node_id for d in defs} - {d.node_id for d in registry.node_defs(include_compat=False)}
    return {path_of(d.node_id, lang): page(d, defs, compat, texts, lang) for d in defs for lang in LANGUAGES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    from scripts import locales
    from scripts.comfy_env import boot_comfy, pack_nodes

    boot_comfy(cpu=True)
    files = pages(pack_nodes().registry, {lang: locales.load(lang) for lang in LANGUAGES if lang != "en"})
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    extra = [p for p in DOCS.rglob("*.md") if p not in files] if DOCS.is_dir() else []
    if args.check:
        for p in stale + extra:
            print(f"out of date: {p.relative_to(ROOT)} (run `{COMMAND}`)")
        return 1 if stale or extra else 0
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    for p in extra:
        p.unlink()
    print(f"wrote {len(files)} pages ({len(stale)} changed, {len(extra)} removed) in {DOCS.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
