"""Small language model guides: offline model loading and label scoring.

Heavy imports (torch, transformers) happen inside the submodules, so importing `guides` is cheap.
"""
