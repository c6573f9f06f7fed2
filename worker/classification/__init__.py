"""The training engine: a labelled image folder in, a trained classifier and its report out.

Modules: data (find, check, split), preprocessing (pixels in), augment (on-device batches),
batches (cache or stream), models (torchvision + local weights), engine (the loop),
checkpoint, metrics, plots. It knows nothing of Azure: progress goes through callbacks.
"""
