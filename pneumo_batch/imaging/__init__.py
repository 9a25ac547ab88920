"""Bytes to the model's input: decoders per file format, the one preprocess, the monitoring features.

A new input format is a new decoder module here (``raster.py`` is Pillow's
formats) that returns the same :class:`~pneumo_batch.imaging.raster.DecodedImage`.
"""
