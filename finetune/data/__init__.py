"""Real data -> labelled examples: packaged source files, prices and the labels computed from them,
MMLU, time and symbol splits, datasets.
"""
