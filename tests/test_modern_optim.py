"""The modern optimizers (course_lib.optim.modern) against their references: torch.optim's Muon,
Adafactor, NAdam and RAdam, lion-pytorch's Lion and schedulefree's AdamW and SGD; their API
(signatures, validation, state dicts, schedulers), the Muon/AdamW split, Newton–Schulz and the
optimizer-state bytes."""

from __future__ import annotations

import copy
import inspect

import lion_pytorch
import pytest
import schedulefree
import torch
from torch import nn

from course_lib import optim as co
from course_lib.engine import models

SHAPES = [(7, 5), (5,), (2, 3, 4)]
MATRICES = [(7, 5), (4, 9)]  # Muon: a tall and a wide matrix
STEPS = 120

REFERENCES = {
    "Muon": (co.Muon, torch.optim.Muon),
    "Adafactor": (co.Adafactor, torch.optim.Adafactor),
    "NAdam": (co.NAdam, torch.optim.NAdam),
    "RAdam": (co.RAdam, torch.optim.RAdam),
    "Lion": (co.Lion, lion_pytorch.Lion),
    "ScheduleFreeAdamW": (co.ScheduleFreeAdamW, schedulefree.AdamWScheduleFree),
    "ScheduleFreeSGD": (co.ScheduleFreeSGD, schedulefree.SGDScheduleFree),
}

CONFIGS = {
    "Muon": [
        dict(lr=0.02),
        dict(lr=0.02, momentum=0.9),
        dict(lr=0.02, nesterov=False),
        dict(lr=0.02, weight_decay=0.0),
        dict(lr=0.02, weight_decay=0.3),
        dict(lr=0.02, ns_coefficients=(2.0, -1.5, 0.5)),  # a classic cubic-style (convergent) set
        dict(lr=0.02, ns_steps=2),
        dict(lr=0.02, eps=1e-3),
        dict(lr=0.02, adjust_lr_fn="original"),
        dict(lr=0.02, adjust_lr_fn="match_rms_adamw"),
        dict(lr=0.01, momentum=0.8, nesterov=False, weight_decay=0.05, ns_steps=3, adjust_lr_fn="match_rms_adamw"),
    ],
    "Adafactor": [
        dict(),
        dict(lr=0.05),
        dict(lr=0.05, beta2_decay=-0.5),
        dict(lr=0.05, eps=(1e-20, 1e-2)),
        dict(lr=0.05, eps=(None, 0.5)),  # the RMS floor eps2 above the parameters' RMS
        dict(lr=0.05, d=0.999 + 0.001),
        dict(lr=0.05, d=3.0),
        dict(lr=0.05, weight_decay=0.1),
        dict(lr=0.05, maximize=True),
        dict(lr=0.2, beta2_decay=-0.6, eps=(1e-10, 1e-2), d=1.5, weight_decay=0.05, maximize=True),
    ],
    "NAdam": [
        dict(),
        dict(lr=0.01, betas=(0.8, 0.99)),
        dict(lr=0.01, momentum_decay=0.01),
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        dict(lr=0.01, maximize=True),
        dict(lr=0.01, betas=(0.5, 0.9), eps=1e-4, weight_decay=0.05, momentum_decay=0.02, maximize=True),
    ],
    "RAdam": [
        dict(),
        dict(lr=0.01, betas=(0.8, 0.99)),  # rho_t > 5 after 5 steps
        dict(lr=0.01, betas=(0.9, 0.9)),  # rho_inf = 19: the rectified branch later
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        dict(lr=0.01, maximize=True),
        dict(lr=0.01, betas=(0.5, 0.95), eps=1e-4, weight_decay=0.05, decoupled_weight_decay=True, maximize=True),
    ],
    "Lion": [
        dict(),
        dict(lr=1e-3),
        dict(lr=1e-3, betas=(0.95, 0.98)),
        dict(lr=1e-3, weight_decay=0.5),
        dict(lr=3e-3, betas=(0.8, 0.999), weight_decay=1.0),
    ],
    "ScheduleFreeAdamW": [
        dict(),
        dict(lr=0.01, betas=(0.8, 0.99)),
        dict(lr=0.01, eps=1e-4),
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, warmup_steps=20),
        dict(lr=0.01, r=1.0),
        dict(lr=0.01, warmup_steps=20, weight_lr_power=1.0),
        dict(lr=0.02, betas=(0.95, 0.999), weight_decay=0.05, warmup_steps=30, r=0.5, weight_lr_power=3.0),
    ],
    "ScheduleFreeSGD": [
        dict(),
        dict(lr=0.1),
        dict(lr=0.1, momentum=0.5),
        dict(lr=0.1, weight_decay=0.1),
        dict(lr=0.1, warmup_steps=20),
        dict(lr=0.1, r=1.0, weight_lr_power=1.0),
        dict(lr=0.2, momentum=0.95, weight_decay=0.05, warmup_steps=30, r=0.5, weight_lr_power=3.0),
    ],
}

# how close each must be in float64: bit-identical, except Lion's state (its reference updates
# the average with mul_/add_, the course's EWMA is a lerp: 1e-12, and 1e-6 in float32)
TOLERANCE = {name: 0.0 for name in REFERENCES} | {"Lion": 1e-12}
TOLERANCE32 = {name: 0.0 for name in REFERENCES} | {"Lion": 1e-6}
CASES = [(name, i) for name, cfgs in CONFIGS.items() for i in range(len(cfgs))]


def _shapes(name):
    return MATRICES if name == "Muon" else SHAPES


def _initial_params(shapes, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]


def _gradients(shapes, dtype, steps=STEPS, seed=1):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        scale = 1.0 + 0.9 * torch.sin(torch.tensor(t / 7.0)).item()
        out.append([(scale * torch.randn(s, generator=gen, dtype=torch.float64)).to(dtype) for s in shapes])
    return out


def _reference_kwargs(cls, cfg):
    return dict(cfg, foreach=False) if cls.__module__.startswith("schedulefree") else dict(cfg)


def _run(cls, cfg, dtype, shapes, steps=STEPS, grads=None):
    params = [nn.Parameter(p.clone()) for p in _initial_params(shapes, dtype)]
    opt = cls(params, **_reference_kwargs(cls, cfg))
    if hasattr(opt, "train") and hasattr(opt, "eval"):
        opt.train()
    for gs in grads if grads is not None else _gradients(shapes, dtype, steps):
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()
    return params, opt


def _assert_same(ours, theirs, tol):
    (p_ours, o_ours), (p_theirs, o_theirs) = ours, theirs
    for a, b in zip(p_ours, p_theirs):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=tol)
    for a, b in zip(p_ours, p_theirs):
        s_ours, s_theirs = o_ours.state[a], o_theirs.state[b]
        assert s_ours.keys() == s_theirs.keys()
        for key in s_ours:
            torch.testing.assert_close(s_ours[key], s_theirs[key], rtol=0, atol=tol, msg=key)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name,i", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_parity_with_the_reference(name, i, dtype):
    ours_cls, ref_cls = REFERENCES[name]
    cfg = CONFIGS[name][i]
    ours = _run(ours_cls, cfg, dtype, _shapes(name))
    theirs = _run(ref_cls, cfg, dtype, _shapes(name))
    _assert_same(ours, theirs, (TOLERANCE if dtype == torch.float64 else TOLERANCE32)[name])
    for a, b in zip(ours[1].param_groups, theirs[1].param_groups):  # schedule-free's running entries
        for key in ("k", "weight_sum", "lr_max", "scheduled_lr"):
            assert a.get(key) == b.get(key), key


def test_lion_is_within_1e_12_of_lion_pytorch_and_its_parameters_are_bit_identical():
    for cfg in CONFIGS["Lion"]:
        (p_ours, o_ours), (p_ref, o_ref) = (_run(c, cfg, torch.float64, SHAPES, steps=150) for c in REFERENCES["Lion"])
        assert all(torch.equal(a, b) for a, b in zip(p_ours, p_ref))
        worst = max((o_ours.state[a]["exp_avg"] - o_ref.state[b]["exp_avg"]).abs().max().item()
                    for a, b in zip(p_ours, p_ref))  # fmt: skip
        assert worst <= 1e-12


def test_runs_really_move_the_parameters():
    for name, i in CASES:
        cfg = CONFIGS[name][i]
        params, _ = _run(REFERENCES[name][0], cfg, torch.float64, _shapes(name), steps=20)
        start = _initial_params(_shapes(name), torch.float64)
        assert max((p.detach() - p0).abs().max().item() for p, p0 in zip(params, start)) > 1e-3, (name, cfg)


@pytest.mark.parametrize("name", ["ScheduleFreeAdamW", "ScheduleFreeSGD"])
def test_schedule_free_eval_and_train_switch_like_the_reference(name):
    """eval() puts the average x into the parameters, train() puts y back; training goes on."""
    ours_cls, ref_cls = REFERENCES[name]
    cfg = CONFIGS[name][-1]
    grads = _gradients(SHAPES, torch.float64, 80)
    runs = []
    for cls in (ours_cls, ref_cls):
        params = [nn.Parameter(p.clone()) for p in _initial_params(SHAPES, torch.float64)]
        opt = cls(params, **_reference_kwargs(cls, cfg))
        opt.train()
        seen = []
        for t, gs in enumerate(grads):
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt.step()
            if t % 20 == 19:
                y = [p.detach().clone() for p in params]
                opt.eval()
                opt.eval()  # twice: no change
                seen.append([p.detach().clone() for p in params])
                assert not torch.equal(seen[-1][0], y[0])  # x differs from y
                opt.train()
                torch.testing.assert_close([p.detach() for p in params], y, rtol=1e-13, atol=1e-13)
        runs.append(seen)
    for ours, theirs in zip(*runs):
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["ScheduleFreeAdamW", "ScheduleFreeSGD"])
def test_schedule_free_refuses_to_step_in_eval_mode_and_starts_in_train_mode(name):
    p = nn.Parameter(torch.ones(2))
    opt = REFERENCES[name][0]([p])
    p.grad = torch.ones(2)
    opt.step()  # the reference needs train() first: ours starts in train mode
    opt.eval()
    with pytest.raises(RuntimeError, match="not in train mode"):
        opt.step()
    ref = REFERENCES[name][1]([nn.Parameter(torch.ones(2))], foreach=False)
    with pytest.raises(Exception, match="not in train mode"):
        ref.step()


def test_schedule_free_warmup_is_linear_and_the_average_weights_follow_the_rate():
    p = nn.Parameter(torch.ones(3))
    opt = co.ScheduleFreeAdamW([p], lr=0.1, warmup_steps=4)
    rates, weights = [], []
    for _ in range(6):
        p.grad = torch.ones(3)
        before = opt.param_groups[0]["weight_sum"]
        opt.step()
        rates.append(opt.param_groups[0]["scheduled_lr"])
        weights.append(opt.param_groups[0]["weight_sum"] - before)
    assert rates == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert weights == pytest.approx([r**2 for r in rates])  # weight_lr_power 2, r = 0


@pytest.mark.parametrize("name", REFERENCES)
@pytest.mark.parametrize("direction", ["ours->ref", "ref->ours"])
def test_state_dict_cross_loading(name, direction):
    """30 steps in one implementation, its state dict loaded into the other, 30 more: the same
    as 60 steps of the reference."""
    ours_cls, ref_cls = REFERENCES[name]
    first, second = (ours_cls, ref_cls) if direction == "ours->ref" else (ref_cls, ours_cls)
    cfg = CONFIGS[name][-1]
    shapes = _shapes(name)
    grads = _gradients(shapes, torch.float64, 60)
    params = [nn.Parameter(p.clone()) for p in _initial_params(shapes, torch.float64)]
    opt = first(params, **_reference_kwargs(first, cfg))
    if hasattr(opt, "train"):
        opt.train()
    for gs in grads[:30]:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    opt2 = second(params, **_reference_kwargs(second, cfg))
    opt2.load_state_dict(saved)
    for gs in grads[30:]:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt2.step()
    # the reference makes the same round trip through its own state dict (loading casts state
    # other than "step" to the parameter's dtype: NAdam's mu_product becomes float64)
    ref = _run(ref_cls, cfg, torch.float64, shapes, grads=grads[:30])[1]
    ref_params = [p for g in ref.param_groups for p in g["params"]]
    ref2 = ref_cls(ref_params, **_reference_kwargs(ref_cls, cfg))
    ref2.load_state_dict(copy.deepcopy(ref.state_dict()))
    for gs in grads[30:]:
        for p, g in zip(ref_params, gs):
            p.grad = g.clone()
        ref2.step()
    _assert_same((params, opt2), (ref_params, ref2), TOLERANCE[name])
    assert opt2.state_dict()["param_groups"][0].keys() >= ref2.state_dict()["param_groups"][0].keys()


@pytest.mark.parametrize("name", REFERENCES)
def test_deepcopy_and_closure(name):
    params, opt = _run(REFERENCES[name][0], CONFIGS[name][-1], torch.float64, _shapes(name), steps=5)
    clone = copy.deepcopy(opt)
    for p, q in zip(params, [p for g in clone.param_groups for p in g["params"]]):
        for key, value in opt.state[p].items():
            assert torch.equal(value, clone.state[q][key]) and value.data_ptr() != clone.state[q][key].data_ptr()
    p = nn.Parameter(torch.tensor([[1.0, -2.0]]))
    opt = REFERENCES[name][0]([p], **CONFIGS[name][1])

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(5.0)


@pytest.mark.parametrize("name", ["Muon", "Adafactor", "NAdam", "RAdam"])
def test_same_signature_as_torch(name):
    ours, theirs = (inspect.signature(c.__init__).parameters for c in REFERENCES[name])
    extra = {"ns_dtype"} if name == "Muon" else set()
    assert [k for k in ours if k not in extra] == list(theirs)
    for key, param in theirs.items():
        assert ours[key].default == param.default, key
        assert ours[key].kind == param.kind, key


@pytest.mark.parametrize("name", ["ScheduleFreeAdamW", "ScheduleFreeSGD"])
def test_schedule_free_signature_is_the_reference_s_but_for_foreach(name):
    ours, theirs = (inspect.signature(c.__init__).parameters for c in REFERENCES[name])
    assert list(ours) == list(theirs)
    for key, param in theirs.items():
        assert key == "foreach" or ours[key].default == param.default, key
    assert ours["foreach"].default is None


def test_lion_signature_is_torch_style():
    params = inspect.signature(co.Lion.__init__).parameters
    assert list(params)[:5] == ["self", "params", "lr", "betas", "weight_decay"]
    assert params["lr"].default == 1e-4 and params["betas"].default == (0.9, 0.99)
    assert params["maximize"].kind is inspect.Parameter.KEYWORD_ONLY


INVALID = {
    "Muon": [dict(lr=-1.0), dict(momentum=-0.1), dict(weight_decay=-1.0), dict(adjust_lr_fn="cubic"),
             dict(lr=torch.tensor([0.1, 0.2]))],
    "Adafactor": [dict(lr=-1.0), dict(beta2_decay=0.5), dict(eps=(-1.0, 1e-3)), dict(eps=(None, -1.0)), dict(d=0.5),
                  dict(weight_decay=-1.0), dict(lr=torch.tensor([0.1, 0.2]))],
    "NAdam": [dict(lr=-1.0), dict(eps=-1.0), dict(betas=(1.0, 0.999)), dict(betas=(0.9, -0.1)),
              dict(weight_decay=-1.0), dict(momentum_decay=-1.0)],
    "RAdam": [dict(lr=-1.0), dict(eps=-1.0), dict(betas=(1.0, 0.999)), dict(betas=(0.9, 1.5)),
              dict(weight_decay=-1.0)],
    "ScheduleFreeSGD": [dict(lr=-1.0), dict(weight_decay=-1.0), dict(momentum=0.0), dict(momentum=1.0)],
}  # fmt: skip


@pytest.mark.parametrize("name,bad", [(n, b) for n, bs in INVALID.items() for b in bs])
def test_invalid_hyperparameters_raise_like_the_reference(name, bad):
    ours_cls, ref_cls = REFERENCES[name]
    shape = (2, 2) if name == "Muon" else (1,)
    with pytest.raises(ValueError) as theirs:
        ref_cls([nn.Parameter(torch.zeros(shape))], **bad)
    with pytest.raises(ValueError) as ours:
        ours_cls([nn.Parameter(torch.zeros(shape))], **bad)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("cls,bad,message", [
    (co.Lion, dict(lr=-1.0), "Invalid learning rate: -1.0"),
    (co.Lion, dict(betas=(1.0, 0.99)), "Invalid beta parameter at index 0: 1.0"),
    (co.Lion, dict(betas=(0.9,)), "expected a pair"),
    (co.Lion, dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    (co.ScheduleFreeAdamW, dict(lr=-1.0), "Invalid learning rate: -1.0"),
    (co.ScheduleFreeAdamW, dict(betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
    (co.ScheduleFreeAdamW, dict(betas=(0.0, 0.999)), "eval\\(\\) divides by beta1"),
    (co.ScheduleFreeAdamW, dict(warmup_steps=-1), "Invalid warmup_steps value: -1"),
    (co.MuonWithAdamW, dict(betas=(0.9, 1.2)), "Invalid beta parameter at index 1"),
    (co.MuonWithAdamW, dict(adjust_lr_fn="cubic"), "Adjust learning rate function cubic is not supported"),
])  # fmt: skip
def test_invalid_hyperparameters_of_the_classes_without_a_torch_twin(cls, bad, message):
    with pytest.raises(ValueError, match=message):
        cls([nn.Parameter(torch.zeros(2, 2))], **bad)


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4), ()])
def test_muon_refuses_what_is_not_a_matrix_as_torch_does(shape):
    for cls in REFERENCES["Muon"]:
        with pytest.raises(ValueError, match=r"Muon only supports 2D parameters whereas we found a parameter with size"):
            cls([nn.Parameter(torch.zeros(shape))])
    # a group added later is caught at the step, with torch's message
    for cls in REFERENCES["Muon"]:
        opt = cls([nn.Parameter(torch.zeros(2, 2))])
        p = nn.Parameter(torch.zeros(shape))
        opt.add_param_group({"params": [p]})
        p.grad = torch.ones(shape)
        with pytest.raises(ValueError, match="Param gradient must be a 2D matrix"):
            opt.step()


@pytest.mark.parametrize("option", ["foreach", "capturable", "differentiable"])
def test_unsupported_paths_are_refused_clearly(option):
    with pytest.raises(NotImplementedError, match=option):
        co.NAdam([nn.Parameter(torch.zeros(1))], **{option: True})


@pytest.mark.parametrize("name", REFERENCES)
def test_torch_lr_scheduler_drives_it(name):
    lrs = {}
    shape = (2, 3) if name == "Muon" else (3,)
    for impl, cls in zip(("ours", "ref"), REFERENCES[name]):
        p = nn.Parameter(torch.ones(shape))
        opt = cls([p], **_reference_kwargs(cls, dict(lr=0.1)))
        if hasattr(opt, "train"):
            opt.train()
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        seen = []
        for t in range(6):
            p.grad = torch.ones(shape) * (1 + t)
            opt.step()
            sched.step()
            seen.append(opt.param_groups[0]["lr"])
        lrs[impl] = (seen, p.detach().clone())
    assert lrs["ours"][0] == lrs["ref"][0] == [0.1, 0.05, 0.05, 0.025, 0.025, 0.0125]
    assert torch.equal(lrs["ours"][1], lrs["ref"][1])


# ---- Newton–Schulz ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (6, 6)])
def test_newton_schulz_is_torch_s_and_leaves_its_input_alone(shape):
    from torch.optim._muon import _zeropower_via_newtonschulz

    G = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    before = G.clone()
    for steps in (0, 1, 5):
        ours = co.newton_schulz(G, steps)
        assert ours.dtype == torch.bfloat16
        assert torch.equal(ours, _zeropower_via_newtonschulz(G, co.modern_rules.MUON_NS_COEFFICIENTS, steps, 1e-7))
    assert torch.equal(G, before)
    with pytest.raises(ValueError, match="2D matrix"):
        co.newton_schulz(torch.ones(3))
    with pytest.raises(ValueError, match="less than 100"):
        co.newton_schulz(G, 100)


def test_newton_schulz_maps_each_singular_value_by_the_polynomial():
    gen = torch.Generator().manual_seed(1)
    U, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    sigma = torch.tensor([3.0, 1.0, 0.1, 0.001], dtype=torch.float64)
    G = U[:, :4] @ torch.diag(sigma) @ V.T
    expected = sigma / sigma.norm()  # the Frobenius normalisation first
    for k in range(1, 6):
        expected = co.newton_schulz_polynomial(expected)
        got = torch.linalg.svdvals(co.newton_schulz(G, k, dtype=torch.float64))
        torch.testing.assert_close(got, expected.sort(descending=True).values, rtol=1e-10, atol=1e-12)
    # after 5 iterations every singular value is near 1, the small ones too; bfloat16 agrees roughly
    five = torch.linalg.svdvals(co.newton_schulz(G, 5, dtype=torch.float64))
    assert five[:3].min() > 0.6 and five.max() < 1.3
    # in bfloat16 the large ones agree roughly; the smallest (1/3000 of the largest) is lost in
    # rounding and comes out anywhere in (0, 1.2)
    bf16 = torch.linalg.svdvals(co.newton_schulz(G, 5).double())
    assert (bf16[:3] - five[:3]).abs().max() < 0.05 and 0 < bf16[3] < 1.3


def test_muon_s_newton_schulz_dtype_is_torch_s_bfloat16_unless_asked_otherwise():
    shapes = MATRICES
    bf16, _ = _run(co.Muon, dict(lr=0.02), torch.float32, shapes, steps=20)
    f32, opt = _run(co.Muon, dict(lr=0.02, ns_dtype=torch.float32), torch.float32, shapes, steps=20)
    ref, _ = _run(torch.optim.Muon, dict(lr=0.02), torch.float32, shapes, steps=20)
    assert all(torch.equal(a, b) for a, b in zip(bf16, ref))
    assert not torch.equal(f32[0], ref[0]) and max((a - b).abs().max().item() for a, b in zip(f32, ref)) < 0.05
    assert opt.param_groups[0]["ns_dtype"] is torch.float32
    loaded = co.Muon([nn.Parameter(torch.zeros(7, 5)), nn.Parameter(torch.zeros(4, 9))], lr=0.02)
    torch_state = torch.optim.Muon([nn.Parameter(torch.zeros(7, 5)), nn.Parameter(torch.zeros(4, 9))]).state_dict()
    loaded.load_state_dict(torch_state)  # a state dict without ns_dtype gets torch's bfloat16
    assert loaded.param_groups[0]["ns_dtype"] is torch.bfloat16
    with pytest.raises(ValueError, match="ns_dtype must be a floating-point"):
        co.Muon([nn.Parameter(torch.zeros(2, 2))], ns_dtype=torch.int32)


def test_muon_s_momentum_buffer_is_an_ema_not_a_sum():
    p = nn.Parameter(torch.zeros(2, 3))
    opt = co.Muon([p], lr=0.1, momentum=0.9)
    for _ in range(3):
        p.grad = torch.ones(2, 3)
        opt.step()
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], torch.full((2, 3), 1 - 0.9**3))


def test_bfloat16_muon_without_nesterov_keeps_its_momentum_where_torch_rescales_it():
    """torch's Newton–Schulz normalises a bfloat16 input in place: with nesterov=False that
    input is the momentum buffer itself. Ours works on a copy."""
    g = torch.randn(4, 6, generator=torch.Generator().manual_seed(0)).bfloat16()
    buffers = {}
    for cls in REFERENCES["Muon"]:
        p = nn.Parameter(torch.zeros(4, 6, dtype=torch.bfloat16))
        opt = cls([p], lr=0.02, nesterov=False)
        p.grad = g.clone()
        opt.step()
        buffers[cls] = opt.state[p]["momentum_buffer"].float()
    torch.testing.assert_close(buffers[co.Muon], (0.05 * g.float()), rtol=1e-2, atol=1e-3)
    assert buffers[torch.optim.Muon].norm() == pytest.approx(1.0, rel=1e-2)


# ---- Muon with AdamW ----------------------------------------------------------------------


def test_muon_param_groups_split_the_transformer_and_the_cnns():
    split = co.muon_split(models.transformer(65, "fast"))
    assert "blocks.0.attn.qkv.weight" in split["muon"] and "blocks.1.mlp.2.weight" in split["muon"]
    for name in ("token_embedding.weight", "position_embedding.weight", "head.weight", "ln_f.weight",
                 "blocks.0.attn.qkv.bias", "blocks.0.ln1.weight"):  # fmt: skip
        assert name in split["adamw"], name
    assert all(name.endswith(".weight") for name in split["muon"])
    cnn = co.muon_split(models.small_cnn())
    assert cnn["muon"] == ["0.weight", "4.weight", "8.weight"] and "14.weight" in cnn["adamw"]
    # a frozen parameter is left out; the groups hold the parameters themselves
    net = models.small_cnn()
    net[0].weight.requires_grad_(False)
    groups = co.muon_param_groups(net)
    assert [g["use_muon"] for g in groups] == [True, False]
    assert all(p is not net[0].weight for g in groups for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters())) - 1


def test_muon_with_adamw_equals_torch_s_muon_and_adamw_side_by_side():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    twin = copy.deepcopy(net)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    ours = co.MuonWithAdamW(net, lr=0.01, weight_decay=0.05)
    split = co.muon_split(twin)
    named = dict(twin.named_parameters())
    torch_muon = torch.optim.Muon([named[n] for n in split["muon"]], lr=0.01, weight_decay=0.05,
                                  adjust_lr_fn="match_rms_adamw")  # fmt: skip
    torch_adamw = torch.optim.AdamW([named[n] for n in split["adamw"]], lr=0.01, weight_decay=0.05, betas=(0.9, 0.95))
    assert split["muon"] == ["0.weight", "2.weight"]
    for _ in range(30):
        for model, opts in ((net, [ours]), (twin, [torch_muon, torch_adamw])):
            for o in opts:
                o.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            for o in opts:
                o.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_muon_with_adamw_flattens_conv_filters_to_matrices():
    conv = nn.Parameter(torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0)))
    flat = nn.Parameter(conv.detach().reshape(4, 27).clone())
    ours = co.MuonWithAdamW([{"params": [conv], "use_muon": True}], lr=0.02, adjust_lr_fn="original")
    ref = torch.optim.Muon([flat], lr=0.02)
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        g = torch.randn(4, 3, 3, 3, generator=gen)
        conv.grad, flat.grad = g.clone(), g.reshape(4, 27).clone()
        ours.step()
        ref.step()
    assert torch.equal(conv.detach().reshape(4, 27), flat.detach())
    assert torch.equal(ours.state[conv]["momentum_buffer"], ref.state[flat]["momentum_buffer"])


def test_muon_with_adamw_takes_a_plain_list_and_refuses_vectors_in_a_muon_group():
    w, b = nn.Parameter(torch.randn(3, 4)), nn.Parameter(torch.zeros(3))
    opt = co.MuonWithAdamW([w, b])
    assert [(g["use_muon"], len(g["params"])) for g in opt.param_groups] == [(True, 1), (False, 1)]
    with pytest.raises(ValueError, match="use_muon=False"):
        co.MuonWithAdamW([{"params": [w, b]}])


# ---- every class on a 2-element tensor, a CNN and the transformer -------------------------

SMALL = {
    co.Lion: dict(lr=0.02), co.Adafactor: dict(lr=0.05), co.NAdam: dict(lr=0.05), co.RAdam: dict(lr=0.05),
    co.ScheduleFreeAdamW: dict(lr=0.05), co.ScheduleFreeSGD: dict(lr=0.1),
}  # fmt: skip
TRAIN = {co.Lion: dict(lr=3e-3), co.Adafactor: dict(lr=0.05), co.NAdam: dict(lr=0.01), co.RAdam: dict(lr=0.01),
         co.ScheduleFreeAdamW: dict(lr=0.01), co.ScheduleFreeSGD: dict(lr=0.1)}  # fmt: skip


@pytest.mark.parametrize("cls", [*SMALL, co.Muon, co.MuonWithAdamW], ids=lambda c: c.__name__)
def test_minimises_a_two_element_quadratic(cls):
    A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    start = torch.tensor([2.0, 2.0], dtype=torch.float64)
    if cls is co.Muon:  # a matrix: the 2-element parameter as 1 x 2
        p, f = nn.Parameter(start.reshape(1, 2).clone()), lambda p: 0.5 * p[0] @ A @ p[0]
        opt = cls([p], lr=0.02, weight_decay=0.0)
    else:
        p, f = nn.Parameter(start.clone()), lambda p: 0.5 * p @ A @ p
        opt = cls([p], **SMALL.get(cls, dict(lr=0.01, weight_decay=0.0)))
    first = f(p).item()
    for _ in range(300):
        opt.zero_grad()
        f(p).backward()
        opt.step()
    if hasattr(opt, "eval"):
        opt.eval()
    assert f(p).item() < 0.05 * first


TRAINABLE = {**TRAIN, co.MuonWithAdamW: dict(lr=3e-3, weight_decay=0.0)}


@pytest.mark.parametrize("cls", TRAINABLE, ids=lambda c: c.__name__)
def test_trains_a_cnn_and_the_transformer(cls):
    torch.manual_seed(0)
    cnn = models.small_cnn(widths=(4, 8, 8))
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    tf = models.transformer(65, "fast")
    tokens = torch.randint(0, 65, (16, 33))
    for model, loss_fn in ((cnn, lambda: nn.functional.cross_entropy(cnn(x), y)),
                           (tf, lambda: nn.functional.cross_entropy(tf(tokens[:, :-1]).reshape(-1, 65),
                                                                    tokens[:, 1:].reshape(-1)))):  # fmt: skip
        params = model if cls is co.MuonWithAdamW else model.parameters()
        opt = cls(params, **TRAINABLE[cls])
        first = loss_fn().item()
        for _ in range(15):
            opt.zero_grad()
            loss_fn().backward()
            opt.step()
        if hasattr(opt, "eval"):
            opt.eval()
        assert loss_fn().item() < first, cls.__name__
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_transformer_s_hidden_matrices_go_to_muon_in_a_training_variant():
    from course_lib.engine.compare import Variant

    groups = co.MuonWithAdamW.param_groups_for(models.transformer(65, "fast"))
    assert [len(g["params"]) for g in groups] == [8, 21]
    assert Variant(co.MuonWithAdamW).parameters is None  # train_variant asks the class for its split


# ---- memory -------------------------------------------------------------------------------


def test_state_bytes_per_parameter():
    def after_one_step(cls, shape=(64, 32), dtype=torch.float32, **kw):
        p = nn.Parameter(torch.randn(shape, dtype=dtype))
        opt = cls([p], **kw)
        p.grad = torch.randn(shape, dtype=dtype)
        opt.step()
        return co.state_bytes_per_parameter(opt), co.state_bytes(opt)

    n = 64 * 32
    assert after_one_step(co.SGD, lr=0.1) == (0.0, 0)
    assert after_one_step(co.SGD, lr=0.1, momentum=0.9)[1] == 4 * n
    assert after_one_step(co.Adam)[1] == 8 * n + 4  # two averages + the step counter
    assert after_one_step(co.Adam, dtype=torch.float64)[1] == 16 * n + 4
    assert after_one_step(co.Lion)[1] == 4 * n
    assert after_one_step(co.Muon)[1] == 4 * n
    assert after_one_step(co.Adafactor)[1] == 4 * (64 + 32) + 4  # one row and one column factor
    assert after_one_step(co.ScheduleFreeAdamW)[1] == 8 * n  # z and v
    assert after_one_step(co.ScheduleFreeSGD)[1] == 4 * n
    assert after_one_step(co.NAdam)[1] == 8 * n + 8  # + step and mu_product
    assert after_one_step(co.Adam)[0] == pytest.approx(8.0, abs=0.01)
    assert after_one_step(co.Adafactor)[0] < 0.2


# ---- the parity table ---------------------------------------------------------------------


def test_modern_parity_table():
    table = co.optimizer_parity(co.parity.modern_parity_checks(), steps=60)
    text = str(table)
    assert table.passed and table.worst == 0.0
    for name in ("course_lib.Muon vs torch.Muon", "course_lib.Lion vs lion_pytorch.Lion",
                 "course_lib.ScheduleFreeAdamW vs schedulefree.AdamWScheduleFree", "course_lib.RAdam vs torch.RAdam"):  # fmt: skip
        assert name in text
    # a schedule-free run is compared at x as well as y: a wrong eval() would show
    off = co.max_difference(co.ScheduleFreeSGD, schedulefree.SGDScheduleFree, steps=10, lr=0.1, momentum=0.9)
    assert off == 0.0


def test_train_variant_hands_muon_with_adamw_the_model_s_split():
    from course_lib.engine import DeviceData
    from course_lib.engine.compare import Variant, train_variant
    from course_lib.problems import brightest_channel_images

    data = DeviceData.from_numpy(*brightest_channel_images(32, seed=0), device="cpu")
    model = models.small_cnn(widths=(4, 4, 4))
    run = train_variant(model, Variant(co.MuonWithAdamW, {"lr": 1e-3}), data, epochs=1, batch_size=16, progress=False)
    assert [(g["use_muon"], len(g["params"])) for g in run.optimizer.param_groups] == [(True, 3), (False, 8)]
    assert run.optimizer.state[model[0].weight]["momentum_buffer"].shape == (4, 27)  # the filter as a matrix


def test_the_modern_step_benchmark_runs(capsys):
    import importlib.util

    from course_lib import config

    spec = importlib.util.spec_from_file_location("modern_optimizer_step",
                                                  config.repo_root() / "benchmarks" / "modern_optimizer_step.py")  # fmt: skip
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--repeats", "2", "--only", "Lion", "Muon (transformer", "ScheduleFreeSGD", "--flush-denormal"])
    assert [r["optimizer"] for r in rows] == ["Muon (transformer matrices)", "Lion", "ScheduleFreeSGD"]
    assert rows[0]["tensors"] == 8 and all(r["ratio"] > 0 for r in rows)
    assert "worst ratio" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--only", "Shampoo"])
