"""Object detection: annotation formats, detectors and their training."""
