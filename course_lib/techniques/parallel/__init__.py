r"""Parallel training: data parallelism on ``torch.distributed``, and pipelined model parallelism.

================  ==========================================================================
``launch``        run a worker function on local processes with a process group (spawned,
                  free port, timeouts, clear errors, clean shutdown): :func:`spawn`
``ddp``           DDP's averaged gradient against the big batch's, over real processes
                  (:func:`ddp_gradient_checks`, :func:`ddp_check_worker`), and the small maths
                  (:func:`weighted_gradient_average`, :func:`flat_grad`, :func:`flat_params`)
``throughput``    samples per second for a fixed total batch, 1 vs several processes and
                  threads: :func:`ddp_throughputs`
``pipeline``      stages, hand-offs, GPipe schedules, measured timelines and bubbles
``ddp_training``  data-parallel CIFAR-10 training under ``torchrun`` (:func:`main`,
                  :func:`train_ddp`) and starting it from Python (:func:`run_torchrun`)
================  ==========================================================================

Notebooks write ``from course_lib.techniques import parallel`` (it is not imported by
``course_lib.techniques`` itself, since it loads ``torch.distributed``) and use
``parallel.spawn``, ``parallel.ddp_gradient_checks``, ``parallel.run_pipeline``, ...

Data parallelism (DDP)
----------------------
:math:`W` processes ("ranks") hold identical copies of the model; each takes its own shard of
the batch. With a mean-reduced loss, rank :math:`r` (shard of :math:`n_r` examples) computes

.. math:: g_r = \frac{1}{n_r} \sum_{i \in \text{shard } r} \nabla_\theta \ell_i(\theta),

and :class:`~torch.nn.parallel.DistributedDataParallel` all-reduces (sums) the gradients during
``backward`` and divides by :math:`W`, so every rank ends with :math:`\bar g = \frac1W \sum_r g_r`.
With equal shards :math:`n_r = N/W` this is exactly the gradient of the whole batch of
:math:`N`, :math:`\frac1N \sum_i \nabla_\theta \ell_i`; each rank then takes the same optimizer
step, so the copies stay identical. With unequal shards the correct average is weighted,
:math:`\sum_r n_r g_r / \sum_r n_r` (:func:`weighted_gradient_average`); and a layer that
mixes examples (batch norm) sees only its own shard, so DDP differs from one big batch there.

:func:`main` runs data-parallel CIFAR-10 training with the course's engine
(:func:`course_lib.engine.loop.train` on each rank's shard, the model wrapped in DDP), with
``torchrun``::

    torchrun --standalone --nproc_per_node=2 -m course_lib.techniques.parallel --epochs 10 --batch-size 512

:func:`run_torchrun` starts it from Python (a notebook, a test) and returns rank 0's results.

Pipeline (model) parallelism
----------------------------
A network too large for one device is cut into :math:`S` consecutive stages on :math:`S`
devices; stage :math:`s` hands its output activation to stage :math:`s+1` and, in the backward
pass, receives the gradient of that activation back (:func:`handoff`). With one batch only one
stage works at a time. GPipe (Huang et al., 2019) splits the batch into :math:`M`
micro-batches that flow through the stages one after another; with the same time per
micro-batch on every stage, each stage is idle for a fraction

.. math:: \text{bubble} = \frac{S-1}{M+S-1}

of the step (:func:`bubble_fraction`). :func:`gpipe_schedule` simulates that ideal schedule;
:func:`run_pipeline` really runs it, one thread per stage (each with one intra-op thread, as
stand-ins for devices), records every stage's busy intervals and measures the bubble;
:func:`plot_pipeline_timeline` draws the timelines.
"""

from . import ddp, ddp_training, launch, pipeline, throughput
from .ddp import DDPCheck, ddp_check_worker, ddp_gradient_checks, flat_grad, flat_params, weighted_gradient_average
from .ddp_training import TorchrunResult, main, run_torchrun, torchrun_command, train_ddp
from .launch import WorkerError, free_port, spawn
from .pipeline import (Interval, PipelineRun, PipelineTimeline, bubble_fraction, gpipe_schedule, handoff,
                       measure_pipeline, pipeline_mlp, plot_pipeline_timeline, run_pipeline, sequential_seconds,
                       split_stages)
from .throughput import Throughput, ddp_throughputs

__all__ = [
    "launch", "ddp", "throughput", "pipeline", "ddp_training",
    "WorkerError", "free_port", "spawn",
    "weighted_gradient_average", "flat_grad", "flat_params", "DDPCheck", "ddp_check_worker", "ddp_gradient_checks",
    "Throughput", "ddp_throughputs",
    "bubble_fraction", "Interval", "PipelineTimeline", "PipelineRun", "gpipe_schedule", "pipeline_mlp",
    "split_stages", "handoff", "run_pipeline", "measure_pipeline", "sequential_seconds", "plot_pipeline_timeline",
    "TorchrunResult", "torchrun_command", "run_torchrun", "train_ddp", "main",
]  # fmt: skip
