"""edgesmith: prune -> distill -> shrink -> export -> quantize -> bench -> bundle for BERT-family encoders.

Importing this package is cheap on purpose: torch, onnxruntime and openvino load lazily inside the stages.
"""

__version__ = "0.1.0"
