"""HyperLoRA nodes (filled in by the nodes work; see issue 5)."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
