"""Importing this package registers every stage in pipeline.registry.STAGES."""

from . import bench, bundle, data, distill, export, prune, quantize, report, shrink, teacher  # noqa: F401
