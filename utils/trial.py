"""Assembling a trial: its split, student, partners, objective, loaders, optimizer and schedule, each random part
from its own seeded stream.

`TrialBuilder` is the one way to build a trial: the run uses it, and so do the tests and the benchmarks.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler, Subset

from utils.device import AMP_DTYPES, resolve_device
from utils.distributed import world_size
from utils.experiment import Experiment, InputError, Split
from utils.optim import build_optimizer
from utils.precise_bn import has_batchnorm
from utils.run_files import SPLITS, read_split_file
from utils.seed import (
    ShuffledEpochs,
    batch_order_generator,
    loader_generator,
    partner_rng,
    precise_bn_rng,
    set_seed,
    split_rng,
)
from utils.sync_batchnorm import synchronise_batchnorm
from utils.synergy import Partners, SynergyObjective, training_partners
from utils.teacher_features import InLoopTeacher, TeacherFeatureCache, TeacherSource


@dataclass
class Trial:
    """Everything one trial trains and evaluates with; built by `TrialBuilder.build`, run by `utils.loop`."""

    student: nn.Module
    step_model: nn.Module  # what a training step calls: the student, in DDP with several processes, compiled
    splits: dict[str, Split]
    loaders: dict[str, DataLoader]  # train, val, test, and precise_bn for a student with BatchNorm
    partners: Partners  # each training sample's teacher-input key: `.draw(positions)`
    teacher_features: TeacherSource | None  # None without a teacher (lam = 0)
    objective: SynergyObjective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None  # --amp fp16
    batch_order: torch.Generator  # shuffles the training split each epoch
    device: torch.device
    amp_dtype: torch.dtype | None
    experiment: Experiment  # its classes and which metrics it reports


class TrialBuilder:
    """What every trial of a run shares (the device, the teacher features) and how one trial is built."""

    def __init__(self, experiment: Experiment, args: argparse.Namespace) -> None:
        self.experiment, self.args = experiment, args
        self.device = resolve_device(args.device, args.gpu_ids)
        self.amp_dtype = AMP_DTYPES[args.amp]
        self.features = teacher_features(experiment, args, self.device)

    def split_record(self, seed: int, given: dict[str, list] | None = None) -> dict[str, Any]:
        """Trial `seed`'s split, as its split.json records it: `given`, else --split_file, else drawn from the
        trial's split generator; then the first --subset items of each."""
        args = self.args
        record = given
        if record is None and args.split_file:
            record = read_split_file(args.split_file)
        elif record is None:
            record = self.experiment.splits.draw(split_rng(seed))
        if args.subset:
            record = {name: items[:args.subset] for name, items in record.items()}
        return {**record, "subset": args.subset, "seed": seed}

    def build(self, seed: int, record: dict[str, Any], testing_only: bool = False) -> Trial:
        """Trial `seed` on the split `record` (from `split_record`): the student, the training partners, the
        teacher features they need (the test's alone when `testing_only`), the loaders, the optimizer and the
        schedule. Nothing is written to the run's folder."""
        experiment, args = self.experiment, self.args
        splits = experiment.splits.build({name: record[name] for name in SPLITS})

        for name, part in splits.items():
            if len(part.dataset) < world_size():
                raise InputError(f"the {name} split has {len(part.dataset)} items, fewer than the {world_size()} "
                                 "processes; expected at least one item for each")
        set_seed(seed, args.deterministic)  # right before the student: its init does not depend on lam
        student, collate = experiment.build_student(args, experiment.feature_dim)
        student = synchronise_batchnorm(student.to(self.device), self.device)
        # A student may need more than one sample per training batch (BatchNorm over a 1x1 feature map); the
        # smallest training batch is the whole split when that is no larger than a batch.
        min_batch = student.min_batch
        smallest = min(args.batch_size, len(splits["train"].dataset))
        if smallest < min_batch:
            raise InputError(f"training batches of {smallest} sample(s) (--batch_size {args.batch_size}, "
                             f"{len(splits['train'].dataset)} training items); the student needs at least "
                             f"{min_batch} per batch (BatchNorm)")
        partners = training_partners(args.pairing, splits["train"].teacher_keys, experiment.unpaired_pool,
                                     partner_rng(seed))
        if self.features is not None and testing_only:
            self.features.prepare(splits["test"].teacher_keys)
        elif self.features is not None:
            self.features.prepare(np.concatenate([partners.possible_keys(), splits["val"].teacher_keys,
                                                  splits["test"].teacher_keys]))
        batch_order = batch_order_generator(seed)
        train = splits["train"].dataset
        # The last incomplete training batch is dropped unless it is the only one.
        loaders = {"train": self._loader(train, collate, ShuffledEpochs(len(train), batch_order),
                                         drop_last=len(train) > args.batch_size, generator=loader_generator(seed)),
                   "val": self._loader(splits["val"].dataset, collate),
                   "test": self._loader(splits["test"].dataset, collate)}
        if experiment.precise_bn and has_batchnorm(student):
            # A fixed, seeded sample of the training split, drawn from its own stream: the same for every lam.
            order = precise_bn_rng(seed).permutation(len(train))[:experiment.precise_bn]
            sample = Subset(train, order.tolist())
            if len(sample) < min_batch:
                raise InputError(f"--precise_bn {experiment.precise_bn} gives a batch of {len(sample)} sample(s); "
                                 f"the student needs at least {min_batch} for BatchNorm statistics (or 0: none)")
            # Batches as in training: the last incomplete one is dropped.
            loaders["precise_bn"] = self._loader(sample, collate, drop_last=len(sample) > args.batch_size)
        optimizer = build_optimizer(args.optim, student.parameters(), args.learning_rate)
        step_model = student
        if world_size() > 1:  # averages the gradients of the processes' shares
            # A student that can skip layers (LayerDrop) says so: DDP then looks for the parameters a step left
            # out (on every process: their gradients stay None, as in one process).
            step_model = DistributedDataParallel(student, broadcast_buffers=False,
                                                 device_ids=[self.device] if self.device.type == "cuda" else None,
                                                 find_unused_parameters=student.skips_layers)
        if args.compile:  # the training step only: evaluation runs once an epoch, eagerly
            step_model = torch.compile(step_model)
        scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        return Trial(student=student, step_model=step_model, splits=splits, loaders=loaders, partners=partners,
                     teacher_features=self.features, objective=SynergyObjective(args.lam), optimizer=optimizer,
                     scheduler=experiment.schedule.build(optimizer), scaler=scaler, batch_order=batch_order,
                     device=self.device, amp_dtype=self.amp_dtype, experiment=experiment)

    def _loader(self, dataset: Dataset, collate: Callable, order: Sampler[int] | None = None,
                drop_last: bool = False, generator: torch.Generator | None = None) -> DataLoader:
        """Global batches of --batch_size samples in `order` (default: in turn); every process reads each batch
        whole and the loop takes its share, so that a share is padded as the whole batch is.

        Only the training loader keeps its workers across epochs, and it takes their seeds from a generator
        of its own (`generator`): a loader draws one number from the global generator each pass without
        workers, or once with persistent ones, and the global generator also drives the student's dropout
        and masking, so persistent evaluation workers would tie the results to --num_workers."""
        workers = self.args.num_workers
        batches = BatchSampler(order or SequentialSampler(dataset), self.args.batch_size, drop_last)
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=workers,
                          persistent_workers=generator is not None and workers > 0, generator=generator,
                          pin_memory=self.device.type == "cuda")


def teacher_features(experiment: Experiment, args: argparse.Namespace, device: torch.device) -> TeacherSource | None:
    """The teacher-feature source of a run: the cache (default) or the in-loop teacher; None without a teacher."""
    if experiment.teacher is None:
        return None
    experiment.teacher.to(device)
    if args.teacher_cache == "off":
        return InLoopTeacher(experiment.teacher, experiment.teacher_inputs, device, AMP_DTYPES[args.amp])
    return TeacherFeatureCache(experiment.teacher, experiment.teacher_inputs, device, AMP_DTYPES[args.amp],
                               cache_dir=args.cache_dir, progress=not args.no_progress)
