"""Classification, a task of the engine: class folders in, a trained classifier and its report out.

Modules: data (find, check, split), preprocessing (pixels in), augment (on-device batches),
batches (cache or stream), models (torchvision + local weights), metrics (per-class report),
plots (confusion matrix), task (ClassificationTask, what the engine's fit loop calls).
"""
