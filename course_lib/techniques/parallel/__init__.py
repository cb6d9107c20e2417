r"""Parallel training: data parallelism on ``torch.distributed``, and pipelined model parallelism.

================  ==========================================================================
``launch``        worker functions on local processes with a process group (spawned, free
                  port, timeouts, clear errors, clean shutdown): :class:`Workers`, started
                  once for many tasks, and :func:`spawn`, processes for one task
``ddp``           DDP's averaged gradient against the big batch's, over real processes
                  (:func:`ddp_gradient_checks`, :func:`ddp_check_worker`), and the small maths
                  (:func:`weighted_gradient_average`, :func:`flat_grad`, :func:`flat_params`)
``throughput``    the machine's ceiling for parallel work (:func:`machine_ceiling`), and samples
                  per second for a fixed total batch, 1 vs several processes and threads:
                  :func:`ddp_throughputs`
``pipeline``      the maths of pipelines: stages, hand-offs, GPipe's simulated schedule, its
                  bubble and makespan, timeline plots
``pipelining``    GPipe and 1F1B on ``torch.distributed.pipelining`` across processes: timelines,
                  micro-batches in flight, activation bytes, gradients (:func:`pipeline_runs`)
``memory``        bytes saved for backward, live and peak (:class:`SavedActivations`)
``batch_size``    linear and square-root learning-rate scaling, the simple gradient noise scale
                  (critical batch size, :func:`gradient_noise_scale`)
``communication`` the all-reduce's cost: ring bytes :math:`2(W-1)\Psi/W`, latency and bandwidth
                  fitted from a sweep of sizes (:func:`allreduce_sweep`, :func:`fit_allreduce`)
``sharding``      optimizer state per parameter (:func:`state_bytes_per_parameter_table`), ZeRO's
                  stages (:func:`zero_bytes_per_parameter`), DDP vs ``ZeroRedundancyOptimizer``
                  vs FSDP2 with the course's Adam on real processes (:func:`sharding_runs`)
``ddp_training``  data-parallel CIFAR-10 training under ``torchrun`` (:func:`main`,
                  :func:`train_ddp`) and starting it from Python (:func:`run_torchrun`)
================  ==========================================================================

Notebooks write ``from course_lib.techniques import parallel`` (it is not imported by
``course_lib.techniques`` itself, since it loads ``torch.distributed``) and use
``parallel.Workers``, ``parallel.ddp_gradient_checks``, ``parallel.pipeline_runs``, ... Every
function that runs processes takes ``workers=``: a :class:`Workers` whose processes it reuses
(starting processes that import torch costs seconds each time); without it, it starts its own.

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

of the step (:func:`bubble_fraction`; with unequal stages the step lasts
:math:`\sum_s t_s + (M-1)\max_s t_s`, :func:`gpipe_makespan`). :func:`gpipe_schedule` simulates
that ideal schedule; :func:`pipeline_runs` runs GPipe and 1F1B (PipeDream-Flush) on torch's
engine, one process per stage, and measures their timelines, the micro-batches each stage holds
(GPipe :math:`M`, 1F1B at most :math:`S`) and the activation bytes;
:func:`plot_pipeline_timeline` draws the timelines.
"""

from . import batch_size, communication, ddp, ddp_training, launch, memory, pipeline, pipelining, sharding, throughput
from .batch_size import NoiseScale, gradient_noise_scale, linear_scaled_lr, sqrt_scaled_lr
from .communication import AllReduceFit, allreduce_sweep, allreduce_worker, fit_allreduce, ring_allreduce_bytes
from .ddp import DDPCheck, ddp_check_worker, ddp_gradient_checks, flat_grad, flat_params, weighted_gradient_average
from .ddp_training import TorchrunResult, main, run_torchrun, torchrun_command, train_ddp
from .launch import WorkerError, Workers, free_port, spawn
from .memory import SavedActivations
from .pipeline import (Interval, PipelineTimeline, bubble_fraction, gpipe_makespan, gpipe_schedule, handoff,
                       pipeline_mlp, plot_pipeline_timeline, split_stages)
from .pipelining import SCHEDULES, PipelineRun, in_flight_limit, pipeline_runs, pipeline_worker
from .sharding import (COURSE_OPTIMIZERS, METHODS, ShardingRun, local_bytes, sharding_runs, sharding_worker,
                       state_bytes_per_parameter_table, zero_bytes_per_parameter)
from .throughput import Ceiling, Throughput, ceiling_worker, ddp_throughputs, machine_ceiling, speed_measurements

__all__ = [
    "batch_size", "communication", "launch",
    "linear_scaled_lr", "sqrt_scaled_lr", "NoiseScale", "gradient_noise_scale", "ddp", "throughput",
    "ring_allreduce_bytes", "AllReduceFit", "fit_allreduce", "allreduce_worker", "allreduce_sweep", "pipeline", "pipelining", "memory", "sharding", "ddp_training",
    "COURSE_OPTIMIZERS", "METHODS", "ShardingRun", "local_bytes", "sharding_runs", "sharding_worker",
    "state_bytes_per_parameter_table", "zero_bytes_per_parameter",
    "WorkerError", "Workers", "free_port", "spawn",
    "weighted_gradient_average", "flat_grad", "flat_params", "DDPCheck", "ddp_check_worker", "ddp_gradient_checks",
    "Ceiling", "ceiling_worker", "machine_ceiling", "Throughput", "ddp_throughputs", "speed_measurements",
    "bubble_fraction", "gpipe_makespan", "Interval", "PipelineTimeline", "gpipe_schedule", "pipeline_mlp",
    "split_stages", "handoff", "plot_pipeline_timeline", "SavedActivations",
    "SCHEDULES", "in_flight_limit", "PipelineRun", "pipeline_worker", "pipeline_runs",
    "TorchrunResult", "torchrun_command", "run_torchrun", "train_ddp", "main",
]  # fmt: skip
