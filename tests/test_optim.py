"""course_lib.optim against torch.optim: parity, API compatibility, convergence."""

from __future__ import annotations

import copy
import functools
import inspect
import itertools

import pytest
import torch

from course_lib import optim as co

PAIRS = {
    "SGD": (co.SGD, torch.optim.SGD),
    "Adagrad": (co.Adagrad, torch.optim.Adagrad),
    "RMSprop": (co.RMSprop, torch.optim.RMSprop),
    "Adam": (co.Adam, torch.optim.Adam),
    "AdamW": (co.AdamW, torch.optim.AdamW),
}

# Every option alone, then combined. lr is set so that the runs move the parameters noticeably.
CONFIGS = {
    "SGD": [
        dict(lr=0.05),
        dict(lr=0.05, momentum=0.9),
        dict(lr=0.05, momentum=0.9, dampening=0.5),
        dict(lr=0.05, momentum=0.9, nesterov=True),
        dict(lr=0.05, weight_decay=0.1),
        dict(lr=0.05, maximize=True),
        dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.05, maximize=True),
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05, maximize=True),
    ],
    "Adagrad": [
        dict(),
        dict(lr=0.1, lr_decay=0.01),
        dict(lr=0.1, initial_accumulator_value=0.1),
        dict(lr=0.1, eps=1e-3),
        dict(lr=0.1, weight_decay=0.1),
        dict(lr=0.1, maximize=True),
        dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.5, eps=1e-4, weight_decay=0.05, maximize=True),
    ],
    "RMSprop": [
        dict(),
        dict(lr=0.01, alpha=0.9),
        dict(lr=0.01, eps=1e-3),
        dict(lr=0.01, centered=True),
        dict(lr=0.01, momentum=0.9),
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, maximize=True),
        dict(lr=0.01, alpha=0.95, eps=1e-4, centered=True, momentum=0.5, weight_decay=0.05, maximize=True),
    ],
    "Adam": [
        dict(),
        dict(lr=0.01, betas=(0.8, 0.99)),
        dict(lr=0.01, eps=1e-3),
        dict(lr=0.01, amsgrad=True),
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, maximize=True),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        dict(lr=0.01, betas=(0.5, 0.9), eps=1e-4, amsgrad=True, weight_decay=0.05, maximize=True),
    ],
    "AdamW": [
        dict(),
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, amsgrad=True),
        dict(lr=0.01, betas=(0.8, 0.99), eps=1e-4),
        dict(lr=0.01, maximize=True),
        dict(lr=0.01, betas=(0.5, 0.9), eps=1e-4, amsgrad=True, weight_decay=0.2, maximize=True),
    ],
}

CASES = [(name, cfg) for name, cfgs in CONFIGS.items() for cfg in cfgs]
SHAPES = [(7, 5), (5,), (2, 3, 4)]
STEPS = 120


def _initial_params(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in SHAPES]


def _gradients(dtype, steps=STEPS, seed=1):
    """Pre-generated gradients whose scale wanders, so AMSGrad's max and lr decay matter."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        scale = 1.0 + 0.9 * torch.sin(torch.tensor(t / 7.0)).item()
        out.append([(scale * torch.randn(s, generator=gen, dtype=torch.float64)).to(dtype) for s in SHAPES])
    return out


def _run(cls, cfg, dtype, steps=STEPS):
    params = [torch.nn.Parameter(p.clone()) for p in _initial_params(dtype)]
    opt = cls(params, **cfg)
    for grads in _gradients(dtype, steps):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    return params, opt


def _assert_same(ours, theirs, rtol, atol):
    (p_ours, o_ours), (p_theirs, o_theirs) = ours, theirs
    for a, b in zip(p_ours, p_theirs):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=rtol, atol=atol)
    for a, b in zip(p_ours, p_theirs):
        s_ours, s_theirs = o_ours.state[a], o_theirs.state[b]
        assert s_ours.keys() == s_theirs.keys()
        for key in s_ours:
            torch.testing.assert_close(s_ours[key], s_theirs[key], rtol=rtol, atol=atol, msg=key)


@pytest.mark.parametrize("name,cfg", CASES, ids=[f"{n}-{i}" for n, i in itertools.chain.from_iterable(
    [(n, i) for i in range(len(c))] for n, c in CONFIGS.items())])
def test_parity_float64(name, cfg):
    ours_cls, torch_cls = PAIRS[name]
    _assert_same(_run(ours_cls, cfg, torch.float64), _run(torch_cls, cfg, torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,cfg", CASES)
def test_parity_float32(name, cfg):
    ours_cls, torch_cls = PAIRS[name]
    _assert_same(_run(ours_cls, cfg, torch.float32), _run(torch_cls, cfg, torch.float32), rtol=1e-5, atol=1e-6)


def test_runs_really_move_the_parameters():
    """Guard against a parity test that passes because nothing happens."""
    for name, cfg in CASES:
        params, _ = _run(PAIRS[name][0], cfg, torch.float64, steps=20)
        moved = max((p.detach() - p0).abs().max().item() for p, p0 in zip(params, _initial_params(torch.float64)))
        assert moved > 1e-3, (name, cfg)


@pytest.mark.parametrize("name", PAIRS)
def test_param_groups_with_different_settings(name):
    ours_cls, torch_cls = PAIRS[name]
    base, other = CONFIGS[name][1], dict(CONFIGS[name][-1])
    if name == "Adagrad":  # torch ignores a per-group value: see the next test
        other.pop("initial_accumulator_value")

    def run(cls):
        params = [torch.nn.Parameter(p.clone()) for p in _initial_params(torch.float64)]
        opt = cls([{"params": params[:1], **other}, {"params": params[1:]}], **base)
        for grads in _gradients(torch.float64, 50):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
        return params, opt

    _assert_same(run(ours_cls), run(torch_cls), rtol=1e-12, atol=1e-12)


def test_adagrad_honours_a_per_group_initial_accumulator_value_where_torch_does_not():
    """torch.optim.Adagrad fills `sum` with the constructor's initial_accumulator_value for every
    group; ours uses each group's own value, as the parameter-group API promises."""
    def state_sum(cls):
        a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
        opt = cls([{"params": [a], "initial_accumulator_value": 3.0}, {"params": [b]}])
        a.grad, b.grad = torch.zeros(2), torch.zeros(2)
        opt.step()
        return opt.state[a]["sum"]

    assert torch.equal(state_sum(co.Adagrad), torch.full((2,), 3.0))
    assert torch.equal(state_sum(torch.optim.Adagrad), torch.zeros(2))


@pytest.mark.parametrize("name", PAIRS)
def test_parameters_without_grad_are_skipped(name):
    cls = PAIRS[name][0]
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    cfg = dict(CONFIGS[name][1])
    opt = cls([a, b], **cfg)
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(3))
    assert b not in opt.state
    assert not torch.equal(a.detach(), torch.ones(3))


def test_plain_sgd_keeps_no_state():
    p = torch.nn.Parameter(torch.ones(2))
    opt = co.SGD([p], lr=0.1)
    p.grad = torch.ones(2)
    opt.step()
    assert len(opt.state) == 0 and len(opt.state_dict()["state"]) == 0


@pytest.mark.parametrize("name", PAIRS)
def test_step_with_closure_returns_loss(name):
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = PAIRS[name][0]([p], **CONFIGS[name][1])

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(5.0)
    assert p.grad is not None


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("direction", ["ours->torch", "torch->ours"])
def test_state_dict_cross_loading(name, direction):
    """Run 30 steps in one implementation, load its state dict into the other, run 30 more,
    and compare with 60 steps in one go."""
    ours_cls, torch_cls = PAIRS[name]
    first, second = (ours_cls, torch_cls) if direction == "ours->torch" else (torch_cls, ours_cls)
    cfg = CONFIGS[name][-1]
    grads = _gradients(torch.float64, 60)
    params = [torch.nn.Parameter(p.clone()) for p in _initial_params(torch.float64)]
    opt = first(params, **cfg)
    for gs in grads[:30]:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    opt2 = second(params, **cfg)
    opt2.load_state_dict(saved)
    for gs in grads[30:]:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt2.step()

    ref_params = [torch.nn.Parameter(p.clone()) for p in _initial_params(torch.float64)]
    ref = torch_cls(ref_params, **cfg)
    for gs in grads:
        for p, g in zip(ref_params, gs):
            p.grad = g.clone()
        ref.step()
    _assert_same((params, opt2), (ref_params, ref), rtol=1e-12, atol=1e-12)
    # and the round trip ours -> state_dict -> ours keeps every key
    assert opt2.state_dict()["param_groups"][0].keys() >= ref.state_dict()["param_groups"][0].keys()


@pytest.mark.parametrize("name", PAIRS)
def test_deepcopy(name):
    params, opt = _run(PAIRS[name][0], CONFIGS[name][-1], torch.float64, steps=10)
    clone = copy.deepcopy(opt)
    cloned_params = [p for g in clone.param_groups for p in g["params"]]
    for p, q in zip(params, cloned_params):
        assert p is not q and torch.equal(p, q)
        for key, value in opt.state[p].items():
            assert torch.equal(value, clone.state[q][key])
            assert value.data_ptr() != clone.state[q][key].data_ptr()


@pytest.mark.parametrize("name", PAIRS)
def test_same_signature_as_torch(name):
    ours, theirs = (inspect.signature(c.__init__).parameters for c in PAIRS[name])
    extra = {"ema_momentum"} if name == "SGD" else set()
    assert [k for k in ours if k not in extra] == list(theirs)
    for key, param in theirs.items():
        assert ours[key].default == param.default, key
        assert ours[key].kind == param.kind, key


INVALID = {
    "SGD": [dict(lr=-1.0), dict(momentum=-0.1), dict(weight_decay=-1.0), dict(nesterov=True),
            dict(momentum=0.9, dampening=0.1, nesterov=True), dict(lr=torch.tensor([0.1, 0.2]))],
    "Adagrad": [dict(lr=-1.0), dict(lr_decay=-1.0), dict(weight_decay=-1.0),
                dict(initial_accumulator_value=-1.0), dict(eps=-1.0)],
    "RMSprop": [dict(lr=-1.0), dict(eps=-1.0), dict(momentum=-1.0), dict(weight_decay=-1.0),
                dict(alpha=-1.0)],
    "Adam": [dict(lr=-1.0), dict(eps=-1.0), dict(betas=(1.0, 0.999)), dict(betas=(0.9, -0.1)),
             dict(weight_decay=-1.0), dict(betas=(0.9, torch.tensor(0.999)))],
    "AdamW": [dict(lr=-1.0), dict(betas=(0.9, 1.0)), dict(weight_decay=-0.5)],
}  # fmt: skip


@pytest.mark.parametrize("name,bad", [(n, b) for n, bs in INVALID.items() for b in bs])
def test_invalid_hyperparameters_raise_like_torch(name, bad):
    ours_cls, torch_cls = PAIRS[name]
    with pytest.raises(ValueError) as theirs:
        torch_cls([torch.nn.Parameter(torch.zeros(1))], **bad)
    with pytest.raises(ValueError) as ours:
        ours_cls([torch.nn.Parameter(torch.zeros(1))], **bad)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("option", ["foreach", "fused", "differentiable"])
def test_unsupported_paths_are_refused_clearly(option):
    with pytest.raises(NotImplementedError, match=option):
        co.Adam([torch.nn.Parameter(torch.zeros(1))], **{option: True})


@pytest.mark.parametrize("name", PAIRS)
def test_torch_lr_scheduler_drives_it(name):
    lrs = {}
    for impl, cls in zip(("ours", "torch"), PAIRS[name]):
        p = torch.nn.Parameter(torch.ones(3))
        opt = cls([p], lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        seen = []
        for _ in range(6):
            p.grad = torch.ones(3)
            opt.step()
            sched.step()
            seen.append(opt.param_groups[0]["lr"])
        lrs[impl] = (seen, p.detach().clone())
    assert lrs["ours"][0] == lrs["torch"][0] == [0.1, 0.05, 0.05, 0.025, 0.025, 0.0125]
    assert torch.equal(lrs["ours"][1], lrs["torch"][1])


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_ema_momentum_equals_torch_sgd_with_scaled_lr(nesterov, weight_decay):
    eta, beta = 0.5, 0.9
    ours, _ = _run(co.SGD, dict(lr=eta, momentum=beta, nesterov=nesterov, weight_decay=weight_decay,
                                ema_momentum=True), torch.float64)  # fmt: skip
    theirs, _ = _run(torch.optim.SGD, dict(lr=co.ema_equivalent_lr(eta, beta), momentum=beta,
                                           nesterov=nesterov, weight_decay=weight_decay), torch.float64)  # fmt: skip
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-12)
    # and it is *not* the same as torch's form with the same lr
    same_lr, _ = _run(torch.optim.SGD, dict(lr=eta, momentum=beta, nesterov=nesterov,
                                            weight_decay=weight_decay), torch.float64)  # fmt: skip
    assert not torch.allclose(ours[0], same_lr[0])


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("betas", [(0.9,), (0.9, 0.99, 0.5), 0.9])
def test_betas_of_the_wrong_length_fail_at_construction(name, betas):
    with pytest.raises(ValueError, match=r"Invalid betas: expected a pair \(beta1, beta2\), got "):
        PAIRS[name][0]([torch.nn.Parameter(torch.zeros(1))], lr=0.1, betas=betas)


@pytest.mark.parametrize("momentum", [1.0, 1.5])
def test_ema_momentum_refuses_a_buffer_that_never_moves(momentum):
    with pytest.raises(ValueError, match=rf"ema_momentum=True needs 0 <= momentum < 1, got momentum={momentum}"):
        co.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=momentum, ema_momentum=True)
    co.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=momentum)  # torch's form allows it


def test_ema_momentum_rejects_dampening():
    with pytest.raises(ValueError, match="dampening"):
        co.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9, dampening=0.9, ema_momentum=True)


def _minimize(cls, fn, start, steps, **cfg):
    p = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = cls([p], **cfg)
    for _ in range(steps):
        opt.zero_grad()
        fn(p).backward()
        opt.step()
    return p.detach()


QUADRATIC_A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
QUADRATIC_B = torch.tensor([1.0, -1.0], dtype=torch.float64)
QUADRATIC_MIN = torch.linalg.solve(QUADRATIC_A, QUADRATIC_B)


def quadratic(p):
    return 0.5 * p @ QUADRATIC_A @ p - QUADRATIC_B @ p


def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


@pytest.mark.parametrize("cls,cfg,steps", [
    (co.SGD, dict(lr=0.1), 3000), (co.SGD, dict(lr=0.05, momentum=0.9, nesterov=True), 3000),
    (co.Adagrad, dict(lr=0.5), 3000), (co.Adam, dict(lr=0.05), 3000),
    (co.AdamW, dict(lr=0.05, weight_decay=0.0), 3000),
    # RMSprop has no decaying step: at constant lr it hovers within about lr of the minimum
    (co.RMSprop, dict(lr=1e-3), 5000),
])  # fmt: skip
def test_converges_on_quadratic(cls, cfg, steps):
    found = _minimize(cls, quadratic, [2.0, 2.0], steps, **cfg)
    torch.testing.assert_close(found, QUADRATIC_MIN, atol=1e-3, rtol=0)


@pytest.mark.parametrize("cls,cfg,steps", [
    (co.SGD, dict(lr=1e-3, momentum=0.9), 20000), (co.Adam, dict(lr=0.02), 8000),
    (co.RMSprop, dict(lr=1e-3), 20000), (co.Adagrad, dict(lr=0.5), 20000),
])  # fmt: skip
def test_converges_on_rosenbrock(cls, cfg, steps):
    found = _minimize(cls, rosenbrock, [-1.5, 2.0], steps, **cfg)
    torch.testing.assert_close(found, torch.tensor([1.0, 1.0], dtype=torch.float64), atol=2e-2, rtol=0)


def test_works_on_a_real_network():
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    y = (x[:, :3].sum(1) > 0).long()
    net = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    opt = co.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.3 * first


def test_max_difference_sees_equal_and_different_optimizers():
    assert co.max_difference(co.Adam, torch.optim.Adam, lr=0.01, amsgrad=True) == 0.0
    assert co.max_difference(co.Adam, torch.optim.AdamW, lr=0.01, weight_decay=0.1) > 1e-3


# ---- the parity tables and the rules' own keywords ------------------------------------------


def test_parity_table_prints_every_row_and_checks_its_tolerance():
    table = co.optimizer_parity([(co.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
                                 (co.Adam, torch.optim.Adam, dict(lr=0.01))], steps=20)
    text = str(table)
    assert "course_lib.SGD vs torch.SGD" in text and "lr=0.1, momentum=0.9" in text and "yes" in text
    assert table.passed and table.worst == 0.0 and table.check() is table
    # a row that is not equal fails, and says which one
    off = co.optimizer_parity([(co.SGD, torch.optim.SGD, dict(lr=0.1)),
                               (functools.partial(co.SGD, lr=0.1), functools.partial(torch.optim.SGD, lr=0.1 + 1e-9), {})],
                              steps=5)
    assert not off.passed and off.worst > 0 and "NO" in str(off)
    with pytest.raises(AssertionError, match="not equal to torch"):
        off.check()


def test_schedule_parity():
    import torch.optim.lr_scheduler as L

    table = co.schedule_parity([("step", functools.partial(co.schedules.step_decay, step_size=3, gamma=0.5),
                                 lambda o: L.StepLR(o, step_size=3, gamma=0.5), 20, torch.optim.SGD, {})])
    assert table.passed and "step" in str(table)
    wrong = co.schedule_parity([("step", functools.partial(co.schedules.step_decay, step_size=3, gamma=0.5),
                                 lambda o: L.StepLR(o, step_size=4, gamma=0.5), 20, torch.optim.SGD, {})])
    assert not wrong.passed


def test_a_misspelt_keyword_of_a_rule_is_an_error():
    p = torch.zeros(3)
    with pytest.raises(TypeError, match="momentm"):
        co.sgd_rule(p, torch.ones(3), {}, lr=0.1, momentm=0.9, momentum=0.0, dampening=0.0, weight_decay=0.0,
                    nesterov=False)
