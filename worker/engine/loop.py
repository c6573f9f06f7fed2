"""fit: the one training loop. Seed, load, build, then per epoch train → evaluate → keep the
best → checkpoint → report; resume (from an epoch's end or from inside one), warm stop,
cancel and divergence are handled here once, and so is the recipe around the seed's SGD +
StepLR (warm-up, weight average)."""

from __future__ import annotations

import logging
import random
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import SGD
from torch.optim.lr_scheduler import StepLR

from worker.engine.checkpoint import (
    ClassesChanged,
    capture_rng,
    cpu_state,
    load_resumable,
    restore_rng,
    save_checkpoint,
)
from worker.engine.config import TrainConfig
from worker.engine.control import TrainingInterrupted, cancel_poller, check_finite
from worker.engine.data import LoadedData, batch_sizes
from worker.engine.device import Compute, prepare_compute, synchronize, training_module
from worker.engine.plots import matplotlib_missing, plot_curves
from worker.engine.recipe import (
    WARMUP_EPOCHS,
    Strength,
    WeightAverage,
    warmup_factor,
)
from worker.engine.results import ArtifactPaths, EpochReport, TrainResult, write_json
from worker.engine.task import Evaluation, Poll, Task

log = logging.getLogger(__name__)

MOMENTUM = 0.9  # the seed's SGD
# Offsets the augmentation stream from the shuffle stream that shares the run's seed.
AUGMENT_SEED_OFFSET = 1
# checkpoint_last.pt's "best" holds these and the task's payload (classification's
# "confusion", detection's "report"): the keys every checkpoint since format 1 has.
BEST_KEYS = ("epoch", "accuracy", "model")


@dataclass
class Best:
    """The best epoch so far: its score, weights (on the CPU) and the task's payload."""

    epoch: int = 0
    accuracy: float = -1.0
    model: dict[str, torch.Tensor] | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpochProgress:
    """How far the epoch in progress has trained: what a checkpoint inside an epoch saves so
    that a resume continues at the next batch with the same result as an unbroken run."""

    epoch: int
    step: int  # batches of this epoch trained
    order: torch.Tensor  # this epoch's shuffle (drawn once, at its start)
    loss_sum: torch.Tensor  # float64: the summed training loss of those batches
    images_seen: int

    def to_checkpoint(self) -> dict[str, Any]:
        return {**asdict(self), "loss_sum": self.loss_sum.detach().cpu()}


@dataclass(frozen=True)
class StepCheckpoint:
    """Sent to on_checkpoint after checkpoint_last.pt was rewritten inside an epoch."""

    epoch: int
    step: int
    steps: int


@dataclass
class Run:
    """Everything one run holds between epochs; checkpoint_last.pt saves what resumes it."""

    task: Task
    config: TrainConfig
    compute: Compute
    device: torch.device
    data: LoadedData
    model: nn.Module
    train_model: nn.Module  # model, or it compiled (device.training_module): the step's
    pretrained: bool
    optimizer: torch.optim.Optimizer
    scheduler: StepLR
    generators: dict[str, torch.Generator]
    paths: ArtifactPaths
    augmentation: Strength
    average: WeightAverage | None
    scaler: torch.amp.GradScaler  # fp16's loss scaling; a pass-through otherwise
    history: list[EpochReport] = field(default_factory=list)
    best: Best = field(default_factory=Best)
    first_epoch: int = 1
    progress: EpochProgress | None = None  # a resumed checkpoint's part-trained epoch


def fit(
    task: Task,
    dataset_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    on_epoch: Callable[[EpochReport], None] | None = None,
    resume_from: Path | None = None,
    cancelled: Callable[[], bool] | None = None,
    stop_after_epoch: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[StepCheckpoint], None] | None = None,
    on_fresh_start: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train task's model on dataset_dir, writing checkpoints, metrics and plots to out_dir.

    checkpoint_last.pt is rewritten after every epoch and, with config.checkpoint_seconds,
    inside long epochs too (then on_checkpoint is told). A resume_from checkpoint whose run
    split the dataset otherwise is not resumed: training starts at epoch 1 and
    on_fresh_start(why) is told first. Raises TrainingInterrupted after an
    epoch when stop_after_epoch() says so (resume from checkpoint_last.pt), TrainingCancelled
    within an epoch once cancelled() does, and TrainingDiverged when an epoch's loss is not
    finite.
    """
    if config.task != task.name:
        raise ValueError(f"config.task is {config.task!r} but the task trains {task.name!r}")
    run = start(task, dataset_dir, out_dir, config, resume_from, on_fresh_start)
    for epoch in range(run.first_epoch, config.epochs + 1):
        if out_of_patience(run):  # also when resumed after the epoch that ran out of it
            break
        report = run_epoch(run, epoch, cancel_poller(cancelled, epoch), on_checkpoint)
        if on_epoch:
            on_epoch(report)
        # After the last epoch, or out of patience, there is nothing left to resume: finish.
        last = epoch == config.epochs or out_of_patience(run)
        if not last and stop_after_epoch and stop_after_epoch():
            raise TrainingInterrupted(epoch)
    return finish(run)


def compile_backend(task: Task, config: TrainConfig) -> str | None:
    """The torch.compile backend the training step runs through: none for a task that is
    never compiled."""
    return config.compile_backend if task.compiles else None


def out_of_patience(run: Run) -> bool:
    """config.patience epochs have passed since the best one (early stopping)."""
    patience = run.config.patience
    if patience is None or not run.history:
        return False
    return run.history[-1].epoch - run.best.epoch >= patience


def stopped_early(run: Run) -> bool:
    """Out of patience before the last epoch."""
    return out_of_patience(run) and run.history[-1].epoch < run.config.epochs


def start(
    task: Task,
    dataset_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    resume_from: Path | None,
    on_fresh_start: Callable[[str], None] | None = None,
) -> Run:
    """Seed, load the data, build model and optimiser, and restore a checkpoint if given."""
    compute = prepare_compute(config.device, config.precision, task.autocasts)
    device = compute.device
    out_dir.mkdir(parents=True, exist_ok=True)
    requested = config
    resumed = load_resumable(resume_from, config) if resume_from else None
    if resumed:
        config = config.as_resumed(resumed["config"])
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    data = task.load_data(dataset_dir, config, compute)
    # Other classes are another model: refused. The same classes split otherwise (files
    # added or removed, or the check grouping duplicates differently) are the same model
    # trained over other images: its epochs cannot continue, epoch 1 can.
    if resumed and tuple(resumed["class_names"]) != data.class_names:
        raise ClassesChanged(
            f"the checkpoint was trained on classes {resumed['class_names']}, "
            f"the dataset has {list(data.class_names)}"
        )
    # Only format-4 checkpoints have a split, and they save every config field: the config
    # as_resumed made is the one asked for, and the data need not load again.
    if resumed and resumed.get("split", data.split) != data.split:
        config = requested
        why = (
            "the dataset is split otherwise than when the checkpoint was saved (files were "
            "added or removed, or the check groups duplicates differently)"
        )
        log.warning("%s: training from epoch 1 instead of resuming", why)
        if on_fresh_start:
            on_fresh_start(why)
        resumed = None
    model, pretrained = task.build_model(config, bool(resumed["pretrained"]) if resumed else None)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = SGD(trainable, lr=config.learning_rate, momentum=MOMENTUM)
    generators = {
        "shuffle": torch.Generator().manual_seed(config.seed),
        "augment": torch.Generator(device).manual_seed(config.seed + AUGMENT_SEED_OFFSET),
    }
    augmentation = (
        task.auto_augmentation(data.train_images, config.epochs, pretrained)
        if config.augmentation == "auto"
        else config.augmentation
    )
    task.prepare_training(generators["augment"], augmentation, config.horizontal_flip)
    run = Run(
        task=task,
        config=config,
        compute=compute,
        device=device,
        data=data,
        model=model,
        train_model=training_module(model, compile_backend(task, config)),
        pretrained=pretrained,
        optimizer=optimizer,
        scheduler=StepLR(optimizer, step_size=config.step_size, gamma=config.gamma),
        generators=generators,
        paths=ArtifactPaths(out_dir),
        augmentation=augmentation,
        average=WeightAverage.of(model) if config.ema else None,
        scaler=compute.grad_scaler(),
    )
    if resumed:
        restore(run, resumed)
        if resume_from and resume_from.resolve() != run.paths.checkpoint_last.resolve():
            shutil.copyfile(resume_from, run.paths.checkpoint_last)
    log.info(
        "training %s on %d classes: %d train, %d val images (%d skipped), cache %s, device %s "
        "(%s, %s, compiled: %s), augmentation %s",
        config.architecture,
        len(data.class_names),
        data.train_images,
        data.val_images,
        data.skipped,
        data.placement,
        device,
        compute.gpu,
        compute.precision,
        compile_backend(task, config) or "no",
        augmentation,
    )
    return run


def restore(run: Run, resumed: dict[str, Any]) -> None:
    """Continue after the checkpoint's epoch with its weights, optimiser, schedule and RNG."""
    run.model.load_state_dict(resumed["model"])
    run.optimizer.load_state_dict(resumed["optimizer"])
    run.scheduler.load_state_dict(resumed["scheduler"])
    restore_rng(resumed["rng"], run.generators)
    # A run resumed on another card may compute in another precision: fp16's loss scale
    # carries over between fp16 workers and starts afresh otherwise.
    if run.scaler.is_enabled() and "scaler" in resumed:
        run.scaler.load_state_dict(resumed["scaler"])
    run.history = [EpochReport(**report) for report in resumed["history"]]
    saved = resumed["best"]
    payload = {key: value for key, value in saved.items() if key not in BEST_KEYS}
    run.best = Best(saved["epoch"], saved["accuracy"], saved["model"], payload)
    run.first_epoch = resumed["epoch"] + 1
    if "progress" in resumed:  # saved inside the epoch after resumed["epoch"]
        saved_progress = dict(resumed["progress"])
        saved_progress["loss_sum"] = saved_progress["loss_sum"].to(run.device)
        run.progress = EpochProgress(**saved_progress)
    if run.average is not None:
        if "ema" in resumed:
            run.average.load_state_dict(resumed["ema"])
        else:  # a format-1 checkpoint: the average starts at the resumed weights
            run.average = WeightAverage.of(run.model)
    if run.best.model is not None:  # None: saved inside the first epoch
        save_best(run)


def run_epoch(
    run: Run,
    epoch: int,
    poll: Poll,
    on_checkpoint: Callable[[StepCheckpoint], None] | None = None,
) -> EpochReport:
    """Train one epoch, evaluate, keep a new best, write the checkpoint and metrics.json."""
    config, task, device = run.config, run.task, run.device
    learning_rate = float(run.scheduler.get_last_lr()[0])
    progress, run.progress = run.progress, None
    if progress is None or progress.epoch != epoch:
        order = torch.randperm(run.data.train_images, generator=run.generators["shuffle"])
        zero = torch.zeros((), dtype=torch.float64, device=device)
        progress = EpochProgress(epoch, 0, order, zero, 0)
    sizes = batch_sizes(run.data.train_images, config.batch_size, drop_single_last=True)
    resumed_images = progress.images_seen
    synchronize(device)
    started = time.perf_counter()
    # A resumed epoch continues with the batch after the last one its checkpoint trained.
    rest = progress.order[sum(sizes[: progress.step]) :]
    batches = task.train_batches(rest, sizes[progress.step :])
    train_one_epoch(run, batches, progress, len(sizes), poll, on_checkpoint)
    train_loss = (progress.loss_sum / max(1, progress.images_seen)).item()
    train_images = progress.images_seen
    train_duration = time.perf_counter() - started
    check_finite(epoch, train_loss, config.learning_rate)
    run.scheduler.step()
    evaluated = evaluate_candidates(run, poll)
    evaluation = evaluated.evaluation
    duration = time.perf_counter() - started

    # Strictly better only: on a tie the earlier (less trained) epoch stays best.
    improved = evaluation.score > run.best.accuracy
    if improved:
        run.best = Best(
            epoch, evaluation.score, cpu_state(evaluated.model), evaluation.best_payload
        )
    report = EpochReport(
        epoch=epoch,
        epochs=config.epochs,
        train_loss=train_loss,
        val_loss=evaluation.loss,
        val_accuracy=evaluation.score,
        learning_rate=learning_rate,
        duration_s=duration,
        train_duration_s=train_duration,
        images_per_s=(train_images - resumed_images) / train_duration,
        train_images=train_images,
        improved=improved,
        best_epoch=run.best.epoch,
        best_val_accuracy=run.best.accuracy,
        pretrained=run.pretrained,
        skipped_images=run.data.skipped,
        weights=evaluated.weights,
        batch_norm=evaluated.batch_norm,
    )
    run.history.append(report)
    log_epoch(run, report, evaluation)
    save_epoch(run, improved)
    return report


def train_one_epoch(
    run: Run,
    batches: Iterable[Any],
    progress: EpochProgress,
    steps_per_epoch: int,
    poll: Poll,
    on_checkpoint: Callable[[StepCheckpoint], None] | None,
) -> None:
    """Train the epoch's remaining batches, adding their loss and images to progress.

    Global steps before the warm-up's end train at a share of the epoch's StepLR rate; the
    scheduled rate is restored after, so StepLR's own arithmetic never sees the warm-up.
    Every config.checkpoint_seconds of training, checkpoint_last.pt saves the progress.
    """
    model, optimizer = run.model, run.optimizer
    model.train()  # the compiled wrapper's module too: it is the same module
    scheduled = run.scheduler.get_last_lr()
    warmup_steps = WARMUP_EPOCHS * steps_per_epoch if run.config.warmup else 0
    interval = run.config.checkpoint_seconds
    last_checkpoint = time.monotonic()
    first_step = (progress.epoch - 1) * steps_per_epoch + progress.step
    for step, batch in enumerate(batches, start=first_step):
        poll()
        # Set every step when warming up: a resume inside the warm-up finds the optimiser
        # holding a ramped rate, not the scheduled one.
        for group, rate in zip(optimizer.param_groups, scheduled, strict=True):
            group["lr"] = rate * warmup_factor(step, warmup_steps) if warmup_steps else rate
        loss, count = run.task.training_loss(run.train_model, batch)
        optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(optimizer)
        run.scaler.update()
        if run.average is not None:
            run.average.update(model)
        # Summed on the device and read once at the end: a per-step .item() would stall the GPU.
        progress.loss_sum += loss.detach() * count
        progress.images_seen += count
        progress.step += 1
        due = interval is not None and time.monotonic() - last_checkpoint >= interval
        if due and progress.step < steps_per_epoch:  # the epoch's end checkpoints anyway
            save_checkpoint(checkpoint_payload(run, progress), run.paths.checkpoint_last)
            if on_checkpoint:
                on_checkpoint(StepCheckpoint(progress.epoch, progress.step, steps_per_epoch))
            last_checkpoint = time.monotonic()
    for group, rate in zip(optimizer.param_groups, scheduled, strict=True):
        group["lr"] = rate


# The least batch-norm momentum whose running statistics may compete with precise ones.
RUNNING_MIN_MOMENTUM = 0.1


@dataclass(frozen=True)
class Evaluated:
    """The epoch's chosen candidate: which weights, which batch-norm statistics, its score."""

    weights: str  # "trained" or "average"
    batch_norm: str  # "precise", "running" or "none" (no batch norm)
    model: nn.Module
    evaluation: Evaluation


def evaluate_candidates(run: Run, poll: Poll) -> Evaluated:
    """Evaluate the trained weights and their average; the better one (a tie: the trained)."""
    candidates = [("trained", run.model)]
    if run.average is not None:
        run.average.copy_buffers(run.model)
        candidates.append(("average", run.average.model))
    chosen: Evaluated | None = None
    for name, model in candidates:
        batch_norm, evaluation = evaluate_statistics(run, model, poll)
        if chosen is None or evaluation.score > chosen.evaluation.score:
            chosen = Evaluated(name, batch_norm, model, evaluation)
    assert chosen is not None
    return chosen


def evaluate_statistics(run: Run, model: nn.Module, poll: Poll) -> tuple[str, Evaluation]:
    """model's evaluation with precise batch norm, or with its running statistics where the
    config and the model let those compete and they validate strictly better (they are then
    restored). A model without batch norm is evaluated once, as it is."""
    config = run.config
    norms = [module for module in model.modules() if isinstance(module, _BatchNorm)]
    model.eval()  # the tasks do too; the running pass must not update what it scores
    if not norms:
        return "none", run.task.evaluate(model, poll)
    if not config.precise_batch_norm:
        return "running", run.task.evaluate(model, poll)
    running: tuple[dict[str, torch.Tensor], Evaluation] | None = None
    if config.batch_norm_choice and running_statistics_current(norms):
        kept = {name: buffer.clone() for name, buffer in model.named_buffers()}
        running = (kept, run.task.evaluate(model, poll))
    run.task.before_evaluation(model, poll)
    precise = run.task.evaluate(model, poll)
    if running is not None and running[1].score > precise.score:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(running[0][name])
        return "running", running[1]
    return "precise", precise


def running_statistics_current(norms: list[_BatchNorm]) -> bool:
    """Whether every batch norm's running statistics follow the weights closely enough to
    compete with re-estimated ones: momentum at least RUNNING_MIN_MOMENTUM (PyTorch's
    default 0.1, a memory of about ten steps: ResNets, EfficientNet). MobileNetV3's 0.01 and
    SSDlite's 0.03 remember a hundred steps of an older network, which is what precise batch
    norm is there to fix; on a handful of validation images such statistics can still win by
    chance (a 2-epoch MobileNetV3-Small did, at 5 of 6 images)."""
    return all(
        norm.momentum is not None and norm.momentum >= RUNNING_MIN_MOMENTUM for norm in norms
    )


def save_epoch(run: Run, improved: bool) -> None:
    """checkpoint_last.pt (and checkpoint_best.pt after a new best), then metrics.json."""
    save_checkpoint(checkpoint_payload(run, None, improved), run.paths.checkpoint_last)
    if improved:
        save_best(run)
    write_json(run.paths.metrics, metrics(run, run.task.final_report(run.best.payload)))


def checkpoint_payload(
    run: Run, progress: EpochProgress | None, improved: bool = False
) -> dict[str, Any]:
    """What checkpoint_last.pt holds: the run after its last whole epoch, plus the epoch in
    progress when saved inside one (the model, optimiser and averages are then mid-epoch)."""
    model_state = run.model.state_dict()
    best = run.best
    # A new best is this epoch's trained weights or its average: save those very tensors,
    # which torch.save then stores once.
    best_state: dict[str, torch.Tensor] | None = best.model
    if improved and run.history[-1].weights == "trained":
        best_state = model_state
    elif improved and run.average is not None:
        best_state = run.average.model.state_dict()
    return {
        "epoch": run.history[-1].epoch if run.history else 0,
        "config": run.config.to_dict(),
        "class_names": list(run.data.class_names),
        "split": run.data.split,
        "pretrained": run.pretrained,
        "model": model_state,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "history": [asdict(report) for report in run.history],
        "best": {
            "epoch": best.epoch,
            "accuracy": best.accuracy,
            "model": best_state,
            **best.payload,
        },
        "rng": capture_rng(run.generators),
        **({"ema": run.average.state_dict()} if run.average is not None else {}),
        **({"scaler": run.scaler.state_dict()} if run.scaler.is_enabled() else {}),
        **({"progress": progress.to_checkpoint()} if progress is not None else {}),
    }


def save_best(run: Run) -> None:
    """checkpoint_best.pt: the best epoch's weights and what rebuilding the model needs."""
    save_checkpoint(
        {
            "epoch": run.best.epoch,
            "val_accuracy": run.best.accuracy,
            "config": run.config.to_dict(),
            "class_names": list(run.data.class_names),
            "pretrained": run.pretrained,
            "model": run.best.model,
        },
        run.paths.checkpoint_best,
    )


def finish(run: Run) -> TrainResult:
    """The best epoch's report, the curves and the task's plots, and the final metrics.json."""
    if run.best.model is None:
        raise RuntimeError("no epoch was evaluated; nothing to report")
    task, history, paths = run.task, run.history, run.paths
    report = task.final_report(run.best.payload)
    plots: dict[str, Path] = {}
    if matplotlib_missing():
        log.warning("matplotlib is not installed: this run writes no plots")
    else:
        plot_curves(
            [r.epoch for r in history],
            [r.train_loss for r in history],
            [r.val_loss for r in history],
            [r.val_accuracy for r in history],
            paths.curves,
            loss_label=task.loss_label,
            accuracy_title=f"Validation {task.score_name}",
        )
        plots = {"curves": paths.curves, **task.final_plots(report, paths.out_dir)}
    # The best weights (trained or averaged: the same module's state), scored once more in
    # full precision, as the exports will compute: what ships with them, and the test split.
    run.model.load_state_dict(run.best.model)
    with run.compute.full_precision():
        report, test_report = task.finalize(run.model, report, lambda: None)
    write_json(paths.metrics, metrics(run, report, test_report))
    return TrainResult(
        task=task.name,
        class_names=run.data.class_names,
        best_epoch=run.best.epoch,
        best_val_accuracy=run.best.accuracy,
        report=report,
        history=tuple(history),
        skipped=run.data.skipped,
        skipped_files=run.data.skipped_files,
        pretrained=run.pretrained,
        train_images=run.data.train_images,
        val_images=run.data.val_images,
        cache_placement=run.data.placement,
        checkpoint_best=paths.checkpoint_best,
        checkpoint_last=paths.checkpoint_last,
        metrics_path=paths.metrics,
        plots=plots,
        stopped_early=stopped_early(run),
        test_report=test_report,
        test_images=run.data.test_images,
        dataset_check=run.data.check,
    )


def metrics(run: Run, final: Any, test: Any = None) -> dict[str, Any]:
    """metrics.json: the run, its dataset, every epoch, the best epoch's report so far, and
    at the end the best model's report on the test split."""
    data = run.data
    return {
        "task": run.task.name,
        "class_names": list(data.class_names),
        "config": run.config.to_dict(),
        "pretrained": run.pretrained,
        "preprocessing": run.task.preprocessing(run.config.image_size),
        "compute": {
            **run.compute.describe(),
            "compile_backend": compile_backend(run.task, run.config),
        },
        "dataset": {
            **data.summary,
            "train_images": data.train_images,
            "val_images": data.val_images,
            "test_images": data.test_images,
            "skipped": data.skipped,
            "skipped_files": list(data.skipped_files),
            "cache": data.placement,
            "check": data.check,
        },
        "accuracy_is": run.task.score_description,
        "recipe": {
            "augmentation": run.augmentation,
            "horizontal_flip": run.config.horizontal_flip,
            "ema": run.config.ema,
            "warmup_epochs": WARMUP_EPOCHS if run.config.warmup else 0,
            "precise_batch_norm": run.config.precise_batch_norm,
            "batch_norm_choice": run.config.batch_norm_choice,
            "label_smoothing": run.config.label_smoothing,
            "patience": run.config.patience,
            **data.recipe,
            # Per epoch in "epochs": "weights" says which weights were evaluated best,
            # "batch_norm" with which statistics.
        },
        "epochs": [asdict(report) for report in run.history],
        "best_epoch": run.best.epoch,
        "best_val_accuracy": run.best.accuracy,
        "stopped_early": stopped_early(run),
        "final": asdict(final) if final is not None else None,
        "test": asdict(test) if test is not None else None,
    }


def log_epoch(run: Run, report: EpochReport, evaluation: Evaluation) -> None:
    log.info(
        "epoch %d/%d: train loss %.4f, val loss %.4f, val %s %.4f%s, %.0f images/s",
        report.epoch,
        report.epochs,
        report.train_loss,
        report.val_loss,
        run.task.score_name,
        report.val_accuracy,
        evaluation.note,
        report.images_per_s,
    )
