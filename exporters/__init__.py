"""Exporters: PyTorch -> ONNX (with ONNX Runtime transformer fusions) and -> OpenVINO IR, each validated."""
