"""ONNX export, int8 conversion job, smoke test and the torch-free OnnxTagger predictor."""
