"""What the Comfy Registry reads from pyproject.toml, parsed by ComfyUI's own parser."""

from __future__ import annotations

from fixtures.pack import ROOT
from PIL import Image


def test_the_registry_gets_a_description_an_icon_and_the_repository():
    from comfy_config.config_parser import extract_node_configuration

    config = extract_node_configuration(str(ROOT))
    project, comfy = config.project, config.tool_comfy
    assert project.name == "comfyui-hyperlora" and "ComfyUI" not in project.name.replace("comfyui", "")
    assert 80 < len(project.description) < 400 and "photo" in project.description
    repository = project.urls.repository
    assert repository == f"https://github.com/{comfy.publisher_id}/{project.name}"
    assert comfy.icon == repository.replace("github.com", "raw.githubusercontent.com") + "/main/icon.png"
    icon = Image.open(ROOT / "icon.png")
    assert icon.size == (400, 400)  # the file the URL names, in the repository
    assert comfy.display_name == "HyperLoRA" and project.supported_os == ["OS Independent"]
    assert "huggingface_hub>=0.30" in project.dependencies
