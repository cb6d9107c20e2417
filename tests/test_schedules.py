"""course_lib.optim.schedules: every schedule against torch.optim.lr_scheduler, the adapter, torch's surprises."""

from __future__ import annotations

import copy
import functools
import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as L

from course_lib import engine, optim
from course_lib.engine import models
from course_lib.optim import schedules as S

TOL = 1e-12
P = functools.partial


def torch_lrs(make, steps, optimizer_cls=torch.optim.SGD, lr=0.1, **kw):
    return S.run_scheduler(make, steps, optimizer_cls, lr, **kw)


def ours(schedule, steps, lr=0.1, **kw):
    """Our pure function times lr, straight (no optimizer involved)."""
    values = S.factors(schedule, steps, **kw)
    return values * lr if values.ndim == 1 else values[:, 0] * lr


@pytest.fixture(autouse=True)
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------------------------
# Each schedule equals torch's, as a pure function and through the adapter
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step_size,gamma", [(1, 0.5), (7, 0.1), (30, 0.3)])
def test_step_decay_matches_StepLR(step_size, gamma):
    n = 4 * step_size + 5
    ref = torch_lrs(lambda o: L.StepLR(o, step_size=step_size, gamma=gamma), n)["lr"]
    assert np.max(np.abs(ours(S.step_decay, n, step_size=step_size, gamma=gamma) - ref)) < TOL
    assert optim.max_schedule_difference(P(S.step_decay, step_size=step_size, gamma=gamma),
                            lambda o: L.StepLR(o, step_size=step_size, gamma=gamma), n) < TOL


@pytest.mark.parametrize("gamma", [0.9, 0.99, 0.5])
def test_exponential_decay_matches_ExponentialLR(gamma):
    n = 200
    ref = torch_lrs(lambda o: L.ExponentialLR(o, gamma=gamma), n)["lr"]
    assert np.max(np.abs(ours(S.exponential_decay, n, gamma=gamma) - ref)) < TOL
    assert optim.max_schedule_difference(P(S.exponential_decay, gamma=gamma), lambda o: L.ExponentialLR(o, gamma), n) < TOL


COSINE_CASES = ([(T, 0.1, 0.0) for T in (1, 3, 10, 100, 1000, 3000)] + [(T, 1.0, 0.0) for T in (7, 390)]
                + [(T, lr, eta_min) for T in (1, 3, 10, 100) for lr, eta_min in ((0.1, 0.001), (3.0, 0.3), (1.0, 0.5))])


@pytest.mark.parametrize("T_max,lr,eta_min", COSINE_CASES)
def test_cosine_annealing_matches_CosineAnnealingLR_over_three_periods(T_max, lr, eta_min):
    n = 3 * T_max + 1
    ref = torch_lrs(lambda o: L.CosineAnnealingLR(o, T_max=T_max, eta_min=eta_min), n, lr=lr)["lr"]
    got = ours(S.cosine_annealing, n, lr=lr, T_max=T_max, min_factor=eta_min / lr)
    assert np.max(np.abs(got - ref)) < TOL
    adapter = torch_lrs(lambda o: S.ScheduledLR(o, S.cosine_annealing, T_max=T_max, min_factor=eta_min / lr), n, lr=lr)
    assert np.max(np.abs(adapter["lr"] - ref)) < TOL


def test_torch_cosine_climbs_back_after_T_max_with_period_2T():
    """Surprise: CosineAnnealingLR does not stay at eta_min after T_max; it is a cosine of period 2*T_max."""
    T, lr, eta_min = 20, 0.1, 0.001
    ref = torch_lrs(lambda o: L.CosineAnnealingLR(o, T_max=T, eta_min=eta_min), 4 * T + 1, lr=lr)["lr"]
    assert ref[T] == pytest.approx(eta_min, abs=TOL)
    assert np.all(np.diff(ref[: T + 1]) < 0)  # down on [0, T] ...
    assert np.all(np.diff(ref[T : 2 * T + 1]) > 0)  # ... and back up on [T, 2T]
    assert ref[2 * T] == pytest.approx(lr, abs=TOL) and ref[4 * T] == pytest.approx(lr, abs=TOL)
    assert np.max(np.abs(ref[T : 2 * T + 1] - ref[T::-1])) < TOL  # mirror image
    ours_ = S.factors(S.cosine_annealing, 4 * T + 1, T_max=T, min_factor=eta_min / lr) * lr
    assert np.max(np.abs(ours_ - ref)) < TOL  # our closed form does the same, on purpose


@pytest.mark.parametrize("T_max,lr,eta_min", [(1000, 3.0, 0.3), (1000, 1.0, 0.5), (10_000, 0.1, 0.001),
                                              (10_000, 1.0, 0.5), (10_000, 1.0, 0.0)])
def test_torch_cosine_recursion_drifts_on_the_way_up_when_eta_min_is_nonzero(T_max, lr, eta_min):
    """Torch's recursive CosineAnnealingLR agrees with the closed form to ~1e-14 (relative) on
    [0, T_max]. On the climbing half the rounding error of eta_min is amplified, to about
    eta_min * 2**-52 * (2 T_max / pi)**2 (so not at all when eta_min = 0); see the module notes."""
    T = T_max
    ref = torch_lrs(lambda o: L.CosineAnnealingLR(o, T_max=T, eta_min=eta_min), 2 * T + 1, lr=lr)["lr"]
    closed = S.factors(S.cosine_annealing, 2 * T + 1, T_max=T, min_factor=eta_min / lr) * lr
    err = np.abs(closed - ref)
    assert err[: T + 1].max() / lr < 1e-13
    bound = 2 * eta_min * 2.0**-52 * (2 * T / math.pi) ** 2
    assert err[T:].max() <= max(bound, 1e-13 * lr)
    if eta_min > 0:  # the drift is real, and far larger than on the way down
        assert err[T:].max() > 100 * err[: T + 1].max()
    if eta_min / lr >= 0.1:
        assert err[T:].max() > TOL  # more than the 1e-12 the other tests allow


def test_cosine_annealing_alone_only_decreases_and_warmup_cosine_rises_first():
    f = S.factors(S.cosine_annealing, 101, T_max=100)
    assert f[0] == 1.0 and f[-1] == pytest.approx(0.0, abs=1e-15) and np.all(np.diff(f) < 0)
    g = S.factors(S.warmup_cosine, 101, warmup_steps=10, total_steps=100)
    assert g[0] == 0.0 and np.argmax(g) == 10 and np.all(np.diff(g[:11]) > 0) and np.all(np.diff(g[10:]) < 0)


@pytest.mark.parametrize("T_0,T_mult", [(1, 1), (5, 1), (10, 1), (3, 2), (5, 2), (2, 3)])
@pytest.mark.parametrize("lr,eta_min", [(0.1, 0.0), (0.1, 0.005)])
def test_warm_restarts_match_CosineAnnealingWarmRestarts(T_0, T_mult, lr, eta_min):
    n = 200
    make = lambda o: L.CosineAnnealingWarmRestarts(o, T_0=T_0, T_mult=T_mult, eta_min=eta_min)  # noqa: E731
    ref = torch_lrs(make, n, lr=lr)["lr"]
    got = ours(S.cosine_warm_restarts, n, lr=lr, T_0=T_0, T_mult=T_mult, min_factor=eta_min / lr)
    assert np.max(np.abs(got - ref)) < TOL
    assert optim.max_schedule_difference(P(S.cosine_warm_restarts, T_0=T_0, T_mult=T_mult, min_factor=eta_min / lr),
                            make, n, lr=lr) < TOL


def test_warm_restarts_restart_where_sgdr_says():
    f = S.factors(S.cosine_warm_restarts, 40, T_0=5, T_mult=2)
    assert [t for t in range(40) if f[t] == 1.0] == [0, 5, 15, 35]


@pytest.mark.parametrize("W,T,start,eta_min", [(5, 50, 0.1, 0.0), (10, 100, 0.01, 0.001), (1, 20, 0.5, 0.0),
                                               (20, 300, 1 / 3, 0.01)])
def test_warmup_cosine_matches_SequentialLR_of_LinearLR_and_CosineAnnealingLR(W, T, start, eta_min):
    lr = 0.1

    def make(o):
        return L.SequentialLR(o, [L.LinearLR(o, start_factor=start, total_iters=W),
                                  L.CosineAnnealingLR(o, T_max=T - W, eta_min=eta_min)], milestones=[W])

    n = T + 1
    ref = torch_lrs(make, n, lr=lr)["lr"]
    kw = dict(warmup_steps=W, total_steps=T, start_factor=start, min_factor=eta_min / lr)
    assert np.max(np.abs(ours(S.warmup_cosine, n, lr=lr, **kw) - ref)) < TOL
    assert optim.max_schedule_difference(P(S.warmup_cosine, **kw), make, n, lr=lr) < TOL
    assert ref[T] == pytest.approx(eta_min, abs=TOL)


@pytest.mark.parametrize("W,T,start", [(10, 100, 0.1), (1, 20, 0.5), (7, 50, 1 / 7)])
def test_warmup_linear_decay_matches_SequentialLR_of_two_LinearLR(W, T, start):
    def make(o):
        return L.SequentialLR(o, [L.LinearLR(o, start_factor=start, total_iters=W),
                                  L.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=T - W)],
                              milestones=[W])  # fmt: skip

    n = T + 1
    ref = torch_lrs(make, n)["lr"]
    ours_ = ours(S.warmup_linear_decay, n, warmup_steps=W, total_steps=T, start_factor=start)
    assert np.max(np.abs(ours_ - ref)) < TOL
    f = functools.partial(S.warmup_linear_decay, warmup_steps=W, total_steps=T)
    assert f(W) == 1.0 and f(T - 1) == 1 / (T - W) and f(T) == 0.0 and f(T + 5) == 0.0
    with pytest.raises(ValueError, match="warmup_steps"):
        S.warmup_linear_decay(0, T, T)


@pytest.mark.parametrize("milestones,gamma", [((50, 75), 0.1), ((3,), 0.5), ((10, 10, 40), 0.3)])
def test_multistep_decay_matches_MultiStepLR(milestones, gamma):
    make = lambda o: L.MultiStepLR(o, milestones=list(milestones), gamma=gamma)  # noqa: E731
    n = 100
    ref = torch_lrs(make, n)["lr"]
    assert np.max(np.abs(ours(S.multistep_decay, n, milestones=milestones, gamma=gamma) - ref)) < TOL


def _torch_wsd(W, S_, T, start, end):
    def make(o):
        return L.SequentialLR(o, [L.LinearLR(o, start_factor=start, total_iters=W),
                                  L.ConstantLR(o, factor=1.0, total_iters=0),
                                  L.LinearLR(o, start_factor=1.0, end_factor=end, total_iters=T - S_)],
                              milestones=[W, S_])  # fmt: skip

    return make


@pytest.mark.parametrize("W,S_,T,start,end", [(10, 80, 100, 0.1, 0.0), (1, 5, 20, 0.5, 0.0), (7, 30, 50, 1 / 7, 0.1)])
def test_warmup_stable_decay_matches_SequentialLR_of_LinearLR_ConstantLR_LinearLR(W, S_, T, start, end):
    make = _torch_wsd(W, S_, T, start, end)
    n = T + 1
    ref = torch_lrs(make, n)["lr"]
    kw = dict(warmup_steps=W, decay_start=S_, total_steps=T, start_factor=start, min_factor=end)
    assert np.max(np.abs(ours(S.warmup_stable_decay, n, **kw) - ref)) < TOL
    assert optim.max_schedule_difference(P(S.warmup_stable_decay, **kw), make, n) < TOL
    f = P(S.warmup_stable_decay, **kw)
    assert f(W) == f(S_) == 1.0 and f(T) == pytest.approx(end) and f(T + 7) == pytest.approx(end)


def test_warmup_stable_decay_cooldown_shapes_and_errors():
    f = P(S.warmup_stable_decay, warmup_steps=0, decay_start=60, total_steps=100)
    assert f(0) == 1.0 and f(59) == 1.0
    assert f(80, cooldown="1-sqrt") == pytest.approx(1 - math.sqrt(0.5))
    assert f(80) == pytest.approx(0.5)
    assert f(80, cooldown="1-sqrt") < f(80)  # 1-sqrt drops faster at first
    for bad in [dict(decay_start=100), dict(decay_start=-1), dict(warmup_steps=61), dict(cooldown="cos")]:
        with pytest.raises(ValueError):
            S.warmup_stable_decay(0, **{**dict(warmup_steps=0, decay_start=60, total_steps=100), **bad})


def test_wsd_cooldown_branched_from_a_stable_checkpoint_equals_the_straight_run():
    """WSD's point: the stable phase does not depend on the run length, so a cool-down of any
    length continued from a checkpoint of the stable phase is the straight run, to the last bit."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=gen), torch.randn(64, generator=gen)
    W, S_ = 5, 40

    def fresh(total):
        w = torch.nn.Parameter(torch.zeros(5))
        opt = torch.optim.SGD([w], lr=0.05, momentum=0.9)
        return w, opt, S.ScheduledLR(opt, S.warmup_stable_decay, warmup_steps=W, decay_start=S_, total_steps=total)

    def steps(w, opt, sched, a, b):
        for t in range(a, b):
            i = torch.arange(8 * t, 8 * t + 8) % 64
            opt.zero_grad()
            ((x[i] @ w - y[i]) ** 2).mean().backward()
            opt.step()
            sched.step()

    w, opt, sched = fresh(total=60)  # the stable phase, run once; checkpoint at S
    steps(w, opt, sched, 0, S_)
    checkpoint = (w.detach().clone(), copy.deepcopy(opt.state_dict()), sched.state_dict())
    for total in (50, 60, 90):
        straight = fresh(total)
        steps(*straight, 0, total)
        w2, opt2, sched2 = fresh(total)
        with torch.no_grad():
            w2.copy_(checkpoint[0])
        opt2.load_state_dict(copy.deepcopy(checkpoint[1]))
        sched2.load_state_dict(checkpoint[2])
        steps(w2, opt2, sched2, S_, total)
        assert torch.equal(w2, straight[0])


def test_inverse_time_and_inverse_sqrt_decay():
    assert S.inverse_time_decay(0, k=10) == 1.0 and S.inverse_time_decay(10, k=10) == 0.5
    assert S.inverse_time_decay(90, k=10) == pytest.approx(0.1)
    f = P(S.inverse_sqrt_decay, warmup_steps=16)
    assert f(0) == 0.0 and f(8) == 0.5 and f(16) == 1.0 and f(64) == 0.5
    lam = L.LambdaLR  # both are LambdaLR one-liners in torch
    ref = torch_lrs(lambda o: lam(o, lambda t: min((t + 1e-300) / 16, math.sqrt(16 / max(t, 1)))), 50)["lr"]
    assert np.max(np.abs(ours(S.inverse_sqrt_decay, 50, warmup_steps=16) - ref)) < TOL
    with pytest.raises(ValueError):
        S.inverse_time_decay(3, k=0)


def test_radam_rho_and_rectification_match_torch_radam():
    """r_t from our formula equals the step size torch.optim.RAdam takes (first steps un-adapted)."""
    beta2 = 0.999
    assert S.radam_rho(0, beta2) == pytest.approx(1.0)
    assert S.radam_rho(3, beta2) < 4 < S.radam_rho(4, beta2)  # the variance is infinite for the first 4 steps
    first = next(t for t in range(100) if S.radam_rho(t, beta2) > 5)
    assert first == 5  # torch's RAdam adapts from its sixth step (rho_t > 5)
    assert S.radam_rectification(first - 1, beta2) == 0.0 and 0 < S.radam_rectification(first, beta2) < 0.1
    assert S.radam_rectification(100_000, beta2) == pytest.approx(1.0, abs=1e-6)
    assert S.untuned_warmup_steps(0.999) == 2000 and S.untuned_warmup_steps(0.99) == 200
    # torch's RAdam: with a constant gradient g and a zero-initialised v, step t moves by
    # lr * r_t * m_hat / sqrt(v_hat) = lr * r_t (sign g) once rho_t > 4
    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.RAdam([w], lr=1.0, betas=(0.9, beta2), eps=0.0)
    for t in range(40):
        before = w.detach().clone()
        opt.zero_grad()
        w.sum().backward()
        opt.step()
        if S.radam_rho(t, beta2) > 5:
            assert (before - w.detach()).item() == pytest.approx(S.radam_rectification(t, beta2), rel=1e-9)
    with pytest.raises(ValueError):
        S.radam_rho(0, 1.0)


@pytest.mark.parametrize("W,start,end", [(5, 0.1, 1.0), (10, 1 / 3, 1.0), (8, 0.5, 0.25), (1, 0.2, 1.0)])
def test_linear_warmup_matches_LinearLR(W, start, end):
    n = 3 * W + 2
    make = lambda o: L.LinearLR(o, start_factor=start, end_factor=end, total_iters=W)  # noqa: E731
    ref = torch_lrs(make, n)["lr"]
    assert np.max(np.abs(ours(S.linear_warmup, n, warmup_steps=W, start_factor=start, end_factor=end) - ref)) < TOL


def test_linear_warmup_from_zero_which_torch_refuses():
    """Surprise: LinearLR rejects start_factor=0; the warm-up 'from lr 0' is ours (and LambdaLR's)."""
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="greater than 0"):
        L.LinearLR(torch.optim.SGD([p], lr=0.1), start_factor=0.0, total_iters=4)
    f = S.factors(S.linear_warmup, 7, warmup_steps=4)
    assert f.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    ref = torch_lrs(lambda o: L.LambdaLR(o, lambda t: min(t, 4) / 4), 7)["lr"]
    assert np.max(np.abs(0.1 * f - ref)) < TOL
    assert S.linear_warmup(3, 0) == 1.0 and S.warmup_cosine(0, 0, 10) == 1.0


ONE_CYCLE_CONFIGS = [
    dict(total_steps=100),
    dict(total_steps=100, anneal="linear"),
    dict(total_steps=100, three_phase=True),
    dict(total_steps=100, three_phase=True, anneal="linear"),
    dict(total_steps=37, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
    dict(total_steps=50, pct_start=0.5, base_momentum=0.8, max_momentum=0.9, anneal="linear"),
    dict(total_steps=13, pct_start=0.4, three_phase=True, div_factor=5.0),
]


def _torch_one_cycle(cfg, max_lr):
    kw = dict(cfg)
    kw["anneal_strategy"] = kw.pop("anneal", "cos")
    return lambda o: L.OneCycleLR(o, max_lr=max_lr, **kw)


@pytest.mark.parametrize("cfg", ONE_CYCLE_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("optimizer_cls,opt_kw", [
    (torch.optim.SGD, dict(momentum=0.9)),
    (optim.SGD, dict(momentum=0.9)),
    (torch.optim.Adam, dict(betas=(0.9, 0.999))),
    (optim.Adam, dict(betas=(0.9, 0.999))),
    (optim.AdamW, dict()),
], ids=["torch.SGD", "course.SGD", "torch.Adam", "course.Adam", "course.AdamW"])
def test_one_cycle_matches_OneCycleLR_with_its_momentum_cycle(cfg, optimizer_cls, opt_kw):
    max_lr, n = 0.5, cfg["total_steps"]
    ref = torch_lrs(_torch_one_cycle(cfg, max_lr), n, optimizer_cls, lr=max_lr, **opt_kw)
    pairs = S.factors(S.one_cycle, n, **cfg)
    assert np.max(np.abs(pairs[:, 0] * max_lr - ref["lr"])) < TOL
    assert np.max(np.abs(pairs[:, 1] - ref["momentum"])) < TOL
    adapter = torch_lrs(lambda o: S.ScheduledLR(o, S.one_cycle, **cfg), n, optimizer_cls, lr=max_lr, **opt_kw)
    assert np.max(np.abs(adapter["lr"] - ref["lr"])) < TOL
    assert np.max(np.abs(adapter["momentum"] - ref["momentum"])) < TOL


def test_one_cycle_with_a_one_step_first_phase():
    """torch divides by zero when pct_start * total_steps == 1; ours starts at the peak."""
    with pytest.raises(ZeroDivisionError):
        L.OneCycleLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.9),
                     max_lr=1.0, total_steps=10, pct_start=0.1)
    assert S.one_cycle(0, 10, pct_start=0.1) == (1.0, 0.85)
    f = S.factors(S.one_cycle, 10, total_steps=10, pct_start=0.1)
    assert np.all(np.diff(f[:, 0]) < 0) and np.all(np.diff(f[:, 1]) > 0)


def test_one_cycle_shape():
    f = S.factors(S.one_cycle, 100, total_steps=100)
    assert f[0, 0] == pytest.approx(1 / 25) and f[29, 0] == 1.0 and f[99, 0] == pytest.approx(1 / 25 / 1e4)
    assert f[0, 1] == 0.95 and f[29, 1] == 0.85 and f[99, 1] == pytest.approx(0.95)
    assert S.one_cycle(100, 100) == S.one_cycle(5000, 100) == (1 / 25 / 1e4, 0.95)  # held past the end


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_torch_one_cycle_extrapolates_one_step_past_the_end_then_raises(anneal):
    """Surprise: the T-th step() of OneCycleLR(total_steps=T) extrapolates the last phase (the rate
    jumps back up with 'cos', turns negative with 'linear', momentum leaves max_momentum); the next raises."""
    T, max_lr = 20, 1.0
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=max_lr, momentum=0.9)
    sched = L.OneCycleLR(opt, max_lr=max_lr, total_steps=T, anneal_strategy=anneal)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(T):  # T calls: one per optimizer step of a T-step run
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    min_lr = max_lr / 25 / 1e4
    assert lrs[T - 1] == pytest.approx(min_lr, rel=1e-9)
    if anneal == "cos":
        assert lrs[T] > 100 * min_lr
        assert opt.param_groups[0]["momentum"] < 0.95  # back down the cosine
    else:
        assert lrs[T] < 0
        assert opt.param_groups[0]["momentum"] > 0.95  # past the line's end
    opt.step()
    with pytest.raises(ValueError, match="Tried to step 21 times"):
        sched.step()
    # ours holds the final values instead
    assert S.one_cycle(T, T, anneal=anneal) == (min_lr, 0.95)


# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------


def test_adapter_scales_each_groups_initial_lr_and_sets_momentum_per_group():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    opt = optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}], momentum=0.9)
    sched = S.ScheduledLR(opt, S.one_cycle, total_steps=10)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1 / 25, 0.1 / 25])
    for _ in range(2):
        opt.step()
        sched.step()
    factor, momentum = S.one_cycle(2, 10)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([factor, 0.1 * factor])
    assert [g["momentum"] for g in opt.param_groups] == [momentum, momentum]
    assert sched.get_last_lr() == pytest.approx([factor, 0.1 * factor]) and sched.last_epoch == 2
    # cycle_momentum=False leaves momentum alone
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1, betas=(0.7, 0.99))
    S.ScheduledLR(opt2, S.one_cycle, total_steps=10, cycle_momentum=False)
    assert opt2.param_groups[0]["betas"] == (0.7, 0.99)
    # a group with no momentum at all
    opt3 = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="neither 'betas' nor 'momentum'"):
        S.ScheduledLR(opt3, S.one_cycle, total_steps=10)


def test_adapter_state_dict_round_trip_resumes_the_schedule():
    def make():
        opt = optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return opt, S.ScheduledLR(opt, S.warmup_cosine, warmup_steps=5, total_steps=30)

    opt, sched = make()
    for _ in range(12):
        opt.step()
        sched.step()
    state = pickle.loads(pickle.dumps(sched.state_dict()))  # picklable: no function inside
    assert "schedule" not in state and "optimizer" not in state
    opt2, sched2 = make()
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(state)
    for _ in range(5):
        opt.step(), sched.step(), opt2.step(), sched2.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == pytest.approx(0.1 * S.warmup_cosine(17, 5, 30))


def test_adapter_accepts_any_callable_and_checks_steps():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = S.ScheduledLR(opt, lambda t: 1 / (1 + t))
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == 1.0
    with pytest.raises(TypeError):
        S.ScheduledLR(opt, 0.5)
    with pytest.raises(ValueError):
        S.cosine_annealing(-1, 10)
    with pytest.raises(TypeError):
        S.step_decay(1.5, 10)
    with pytest.raises(ValueError):
        S.one_cycle(0, 10, anneal="exp")
    with pytest.raises(ValueError):
        S.warmup_cosine(0, 10, 10)


def test_adapter_drives_train_per_step_like_torch_does(toy_data):
    """train(..., scheduler=ScheduledLR) and train(..., scheduler=torch's) take the same steps."""
    data = toy_data()
    epochs, batch = 2, 16
    total = epochs * math.ceil(len(data) / batch)
    runs = {}
    for name in ["ours", "torch"]:
        torch.manual_seed(0)
        model = models.mlp(hidden=16, classes=3)
        opt = optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
        sched = (S.ScheduledLR(opt, S.one_cycle, total_steps=total) if name == "ours"
                 else L.OneCycleLR(opt, max_lr=0.2, total_steps=total))  # fmt: skip
        hist = engine.train(model, opt, data, epochs=epochs, batch_size=batch, scheduler=sched,
                           scheduler_interval="step", progress=False)  # fmt: skip
        runs[name] = (hist, sched.last_epoch, [p.detach().clone() for p in model.parameters()])
    assert runs["ours"][1] == runs["torch"][1] == total
    assert np.allclose(runs["ours"][0].step_loss, runs["torch"][0].step_loss, rtol=1e-6, atol=1e-7)
    for a, b in zip(runs["ours"][2], runs["torch"][2]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert runs["ours"][0].epochs[-1].lr == pytest.approx(0.2 / 25 / 1e4)  # held, not extrapolated


def test_compare_schedules_same_start_same_batches(toy_data):
    data = toy_data()
    hists = engine.compare_schedules(lambda: models.mlp(hidden=8, classes=3), optim.SGD, dict(lr=0.1),
                                {"constant": None, "constant too": S.constant,
                                 "cosine": P(S.cosine_annealing, T_max=12)},
                                data, epochs=2, batch_size=16, progress=False)  # fmt: skip
    assert list(hists) == ["constant", "constant too", "cosine"]
    assert hists["constant"].step_loss == hists["constant too"].step_loss
    assert hists["cosine"].step_loss[0] == hists["constant"].step_loss[0]
    assert hists["cosine"].step_loss[-1] != hists["constant"].step_loss[-1]
    assert hists["cosine"].epochs[-1].lr == pytest.approx(0.0, abs=1e-12)
