"""Stand-in models for tests, demos and benchmarks when the real weights are absent."""

from ..face.packs import is_standin_pack
from .face_models import write_tiny_face_pack

__all__ = ["is_standin_pack", "write_tiny_face_pack"]
