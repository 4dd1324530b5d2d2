"""Teacher and student models.

loading.py           the embedded default pair, layer-subset and random students, any HF pair
assets.py            the offline teacher: SmolLM2-135M-Instruct's GGUF converted once into a cache
pruning.py           the width-pruned student (activation-ranked MLP neurons)
"""
