"""Headless HyperLoRA trainer on the same core as the node pack.

Entry point: `python -m hyperlora_core.train {prepare,fit,export,finetune}` (console script
`hyperlora-train`). See README.md in this folder for the stages and the config format.
"""
