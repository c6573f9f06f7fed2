"""The training engine: one task-agnostic, resumable fit loop that every task plugs into.

config (TrainConfig), loop (fit), task (the Task protocol a task implements), checkpoint,
results (EpochReport, TrainResult, metrics.json), control (stop, cancel, divergence),
device (device choice, autocast), data (batch sizes, dataset errors), plots (curves).
It knows nothing of Azure or of any one task: classification and detection live in their
own packages, and progress leaves through callbacks. Importing this package imports no torch
(the worker's settings read config's defaults).
"""
