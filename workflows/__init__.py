"""The example workflows this pack ships, and the one builder that writes them.

`library.py` describes every graph once (the templates in this folder and the toy graph `make demo`
queues); `graph.py` turns a description into ComfyUI's API format, `ui.py` into the graph-editor
format (laid out, with notes and model download entries), `thumbnails.py` draws the template
pictures, and `build.py` writes the files: `python -m workflows.build [--check]`.
"""
