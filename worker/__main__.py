"""`python -m worker [--once]`: the GPU worker."""

from __future__ import annotations

import argparse
import logging
import sys

from worker.engine.device import DeviceUnavailable
from worker.loop import ColdStop, Worker
from worker.settings import WorkerSettings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--once", action="store_true", help="take at most one job, then exit")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # One line per HTTP call (azure) or per graph pass (exporters) drowns the job's story.
    for noisy in ("azure", "coremltools", "onnxscript", "onnx_ir", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        worker = Worker(WorkerSettings())
    except DeviceUnavailable as error:  # told to train on what is not there: no CPU fallback
        logging.getLogger("aitrainer.worker").error("the worker does not start: %s", error)
        return 2
    worker.install_signal_handlers()
    try:
        worker.run(once=args.once)
    except ColdStop:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
