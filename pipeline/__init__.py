"""edgesmith: prune -> distill -> shrink -> export -> quantize -> bench -> bundle for BERT-family encoders.

Importing this package is cheap on purpose: torch, onnxruntime and openvino load lazily inside the stages. The
Python API (`edgesmith.run`, `edgesmith.plan`, `edgesmith.verify_bundle`, in api.py) loads on first use.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "plan", "verify_bundle"]


def __getattr__(name: str) -> Any:
    """`edgesmith.run` and the rest of the API, imported when first asked for (PEP 562)."""
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgesmith' has no attribute {name!r}")
