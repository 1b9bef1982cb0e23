"""Image scoring models shared by memory selection and evaluation.

``clip.py`` builds CLIP image towers (real weights or a tiny random config) and
applies CLIP's preprocessing to uint8 frames; ``laion.py`` is the LAION
aesthetic predictor (CLIP ViT-L/14 + linear head) with VBench's preprocessing.
Heavy libraries are imported inside functions.
"""
