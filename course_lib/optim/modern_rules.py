r"""The modern optimizers' update rules, in the chapters' symbols: Lion, Adafactor, Muon,
schedule-free AdamW and SGD, NAdam and RAdam.

The same conventions as :mod:`course_lib.optim.rules`: each rule takes a parameter :math:`\theta`,
its gradient :math:`g` (already sign-flipped for ``maximize``), the parameter's state dict and
its hyperparameters as keywords, and updates :math:`\theta` and the state in place.

==================  ==========================================================================
Lion               :math:`c = \mathrm{sign}(\beta_1 m + (1-\beta_1) g)`,
                   :math:`\theta \leftarrow \theta - \eta (c + \lambda\theta)`,
                   :math:`m \leftarrow \beta_2 m + (1-\beta_2) g`
Adafactor          EWMAs of the row and column means of :math:`g^2` (vectors: of :math:`g^2`),
                   :math:`\hat V = R C / \mathrm{mean}(R)`; :math:`U = g/\sqrt{\hat V}`, clipped to
                   RMS :math:`d`; a step relative to the parameter's own RMS
Muon               :math:`B \leftarrow \mu B + (1-\mu) g` (an EMA, torch's ``lerp``); the
                   update :math:`O = \mathrm{NS}_k(B)` (or of :math:`\mu B + (1-\mu) g`),
                   orthogonalised by Newton–Schulz
schedule-free      :math:`z \leftarrow z - \gamma g(y)`, :math:`x \leftarrow (1-c) x + c z`,
                   gradients taken at :math:`y = (1-\beta) z + \beta x`
NAdam              Adam with Nesterov's look-ahead on the first moment (momentum schedule
                   :math:`\mu_t`)
RAdam              Adam whose adaptive step is switched on (and rectified by :math:`r_t`) once
                   the second moment's variance is tractable
==================  ==========================================================================

The EWMA steps are the EWMA chapter's :func:`~course_lib.optim.ewma.ewma_step_` and
:func:`~course_lib.optim.ewma.ewma_square_step_` wherever torch's reference performs the same
operations; where a reference gives the EWMA's weight :math:`1-\beta` directly (Adafactor's
:math:`\hat\beta_{2,t} = 1 - t^{\tau}`, Muon's Nesterov step) the rule calls ``lerp`` with that
weight, because computing :math:`1-\beta` and then :math:`1-(1-\beta)` would round differently.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .ewma import bias_correction_factor, ewma_square_step_, ewma_step, ewma_step_
from .rules import State, _count_step, _scalar_dtype, _zero_step

__all__ = [
    "lion_rule", "adafactor_rule", "newton_schulz", "newton_schulz_polynomial", "muon_lr", "muon_rule",
    "schedule_free_coefficients", "schedule_free_adamw_rule", "schedule_free_sgd_rule", "nadam_rule",
    "radam_rule", "MUON_NS_COEFFICIENTS", "MUON_EPS", "MUON_NS_STEPS",
]  # fmt: skip

# Keller Jordan's quintic (the defaults of torch.optim.Muon)
MUON_NS_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
MUON_EPS = 1e-7
MUON_NS_STEPS = 5


# ---- Lion ---------------------------------------------------------------------------------


def lion_rule(param: Tensor, grad: Tensor, state: State, *, lr: float, betas: tuple[float, float],
              weight_decay: float) -> None:  # fmt: skip
    r"""Lion (Chen et al. 2023, Algorithm 2): the sign of an interpolated EWMA, decoupled decay.

    .. math::
        c &= \mathrm{sign}\big(\beta_1 m + (1-\beta_1) g\big) \\
        \theta &\leftarrow \theta - \eta\,(c + \lambda\theta) \\
        m &\leftarrow \beta_2 m + (1-\beta_2) g

    Every coordinate moves by exactly :math:`\pm\eta` (plus the decay): the step is as large as
    signSGD's, which is why Lion wants a learning rate 3-10x smaller than AdamW's and a
    weight decay 3-10x larger (the same :math:`\eta\lambda`). The interpolation uses
    :math:`\beta_1`, the momentum that is carried on uses :math:`\beta_2 > \beta_1`.
    """
    beta1, beta2 = betas
    if not state:
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    m = state["exp_avg"]
    # [weight decay] decoupled, as in AdamW
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)
    # [update] the sign of the interpolation between the momentum and the new gradient
    c = ewma_step(m, grad, beta1).sign_()
    param.add_(c, alpha=-lr)
    # [momentum] an EWMA of the gradients, with its own beta
    ewma_step_(m, grad, beta2)


# ---- Adafactor ----------------------------------------------------------------------------


def adafactor_rule(param: Tensor, grad: Tensor, state: State, *, lr: float, beta2_decay: float,
                   eps: tuple[float | None, float], d: float, weight_decay: float) -> None:  # fmt: skip
    r"""Adafactor (Shazeer & Stern 2018) as ``torch.optim.Adafactor`` computes it.

    .. math::
        \hat\beta_{2,t} &= 1 - t^{\tau}, \qquad \rho_t = \min(\eta, 1/\sqrt t), \qquad
            \alpha_t = \max(\epsilon_2, \mathrm{RMS}(\theta))\,\rho_t \\
        \theta &\leftarrow \theta - \eta\lambda\theta \\
        R &\leftarrow \hat\beta_{2,t} R + (1-\hat\beta_{2,t})\,\mathrm{mean}_{\text{cols}}(g^2),
        \quad C \leftarrow \hat\beta_{2,t} C + (1-\hat\beta_{2,t})\,\mathrm{mean}_{\text{rows}}(g^2) \\
        \hat V &= \frac{R\,C}{\max(\mathrm{mean}(R), \epsilon_1)}
            \quad(\text{vectors: } \hat V \leftarrow \hat\beta_{2,t}\hat V + (1-\hat\beta_{2,t}) g^2) \\
        U &= \frac{g}{\max(\sqrt{\hat V}, \epsilon_1)}, \qquad
        \theta \leftarrow \theta - \frac{\alpha_t}{\max(1, \mathrm{RMS}(U)/d)}\, U

    A tensor with two or more dimensions keeps only a row factor :math:`R` (its last dimension
    reduced) and a column factor :math:`C` (its second-to-last reduced): :math:`n + m` numbers
    for an :math:`n\times m` matrix instead of Adam's :math:`2nm`. ``eps[0] = None`` means the
    machine epsilon of the parameter's dtype.
    """
    eps1, eps2 = eps
    # [state] factored for matrices (and higher), full for vectors
    if not state:
        state["step"] = _zero_step()
        if grad.dim() > 1:
            row_shape, col_shape = list(grad.shape), list(grad.shape)
            row_shape[-1], col_shape[-2] = 1, 1
            state["row_var"] = grad.new_zeros(row_shape)
            state["col_var"] = grad.new_zeros(col_shape)
        else:
            state["variance"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
    t = _count_step(state)
    if eps1 is None:
        eps1 = torch.finfo(param.dtype).eps
    # [relative step] beta2 grows towards 1 with t; the step is relative to the parameter's RMS
    one_minus_beta2_t = t**beta2_decay
    rho_t = min(lr, 1 / (t**0.5))
    alpha = max(eps2, param.norm(2).item() / (param.numel() ** 0.5)) * rho_t
    # [weight decay]
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)
    # [second moments] EWMAs (lerp with weight 1 - beta2_t) of the row and column means of g^2
    if grad.dim() > 1:
        R, C = state["row_var"], state["col_var"]
        R.lerp_(torch.norm(grad, dim=-1, keepdim=True).square_().div_(grad.size(-1)), one_minus_beta2_t)
        C.lerp_(torch.norm(grad, dim=-2, keepdim=True).square_().div_(grad.size(-2)), one_minus_beta2_t)
        V = R @ C
        V.div_(R.mean(dim=-2, keepdim=True).clamp_(min=eps1))
    else:
        V = state["variance"].lerp_(grad * grad, one_minus_beta2_t).clone()
    # [update] g / sqrt(V), clipped so that its RMS is at most d
    U = V.clamp_(min=eps1 * eps1).rsqrt_().mul_(grad)
    clip = max(1.0, U.norm(2).item() / ((U.numel() ** 0.5) * d))
    param.add_(U, alpha=-alpha / clip)


# ---- Muon ---------------------------------------------------------------------------------


def newton_schulz_polynomial(sigma, coefficients: tuple[float, float, float] = MUON_NS_COEFFICIENTS):
    r"""What one Newton–Schulz iteration does to each singular value: :math:`p(\sigma) = a\sigma
    + b\sigma^3 + c\sigma^5`. Works on floats, arrays and tensors; ``k`` iterations apply it ``k``
    times (that is what :func:`newton_schulz` does to the singular values, up to rounding)."""
    a, b, c = coefficients
    return a * sigma + b * sigma**3 + c * sigma**5


def newton_schulz(G: Tensor, steps: int = MUON_NS_STEPS,
                  coefficients: tuple[float, float, float] = MUON_NS_COEFFICIENTS, eps: float = MUON_EPS, *,
                  dtype: torch.dtype = torch.bfloat16) -> Tensor:  # fmt: skip
    r"""``steps`` Newton–Schulz iterations towards the orthogonal factor :math:`UV^\top` of
    :math:`G = U\Sigma V^\top`, as ``torch.optim.Muon`` computes them (in bfloat16 by default).

    .. math::
        X_0 = G / \max(\lVert G\rVert_F, \epsilon), \qquad
        X_{k+1} = a X_k + (b\, A_k + c\, A_k^2) X_k, \quad A_k = X_k X_k^\top

    (a wide matrix is iterated as its transpose, so :math:`A_k` is the smaller Gram matrix).
    Each iteration maps every singular value :math:`\sigma` of :math:`X` to
    :func:`newton_schulz_polynomial` :math:`(\sigma)` and leaves the singular vectors alone;
    dividing by the Frobenius norm puts every :math:`\sigma` in :math:`(0, 1]` first. With the
    default coefficients five iterations bring every :math:`\sigma` into about [0.7, 1.2]:
    not exactly 1, but enough. ``dtype=torch.float64`` shows the polynomial without bfloat16's
    rounding. The result has ``dtype``; ``G`` is left unchanged.
    """
    if steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(G.shape) != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = coefficients
    # [normalise] a copy in dtype, its Frobenius norm (>= the spectral norm) scaled to 1
    X = G.to(dtype, copy=True)
    tall = G.size(0) > G.size(1)
    if tall:
        X = X.T
    X.div_(X.norm().clamp(min=eps))
    # [iterate] X <- a X + (b A + c A^2) X with A = X X^T
    for _ in range(steps):
        A = X @ X.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)
        X = torch.addmm(X, B, X, beta=a)
    return X.T if tall else X


def muon_lr(lr: float, adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    r"""Muon's learning rate for an :math:`A \times B` matrix: ``"original"`` (or None, Keller
    Jordan's) :math:`\eta\sqrt{\max(1, A/B)}`; ``"match_rms_adamw"`` (Moonshot's)
    :math:`0.2\,\eta\sqrt{\max(A, B)}`, which gives the update the RMS of a typical AdamW step so
    that AdamW's learning rate and weight decay can be reused."""
    A, B = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, A / B))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(A, B))
    else:
        ratio = 1.0
    return lr * ratio


def muon_rule(param: Tensor, grad: Tensor, state: State, *, lr: float, weight_decay: float, momentum: float,
              nesterov: bool, ns_coefficients: tuple[float, float, float], ns_steps: int, eps: float,
              adjust_lr_fn: str | None, ns_dtype: torch.dtype = torch.bfloat16) -> None:  # fmt: skip
    r"""Muon (Jordan et al. 2024) as ``torch.optim.Muon`` computes it: an orthogonalised EWMA.

    .. math::
        B &\leftarrow \mu B + (1-\mu) g \qquad(\text{an EMA: torch's } \texttt{lerp}) \\
        \tilde B &= \mu B + (1-\mu) g \text{ with Nesterov, else } B \\
        O &= \mathrm{NS}_k(\tilde B) \approx U V^\top \quad(\tilde B = U\Sigma V^\top) \\
        \theta &\leftarrow \theta - \eta\lambda\theta - \eta' O, \qquad
            \eta' = \texttt{muon\_lr}(\eta, \theta\text{'s shape})

    torch's docstring writes the buffer as :math:`B \leftarrow \mu B + g` (torch's SGD form),
    but its code is ``buf.lerp_(grad, 1 - momentum)``: an EWMA. The two differ by the factor
    :math:`1-\mu`, which the orthogonalisation removes anyway (it ignores the scale). The
    parameter must be a matrix (:class:`~course_lib.optim.modern.MuonWithAdamW` flattens conv
    filters to matrices first). ``ns_dtype`` is the dtype of the Newton–Schulz iteration: torch's
    bfloat16 by default (``torch.float32`` is several times faster on a CPU without bfloat16
    arithmetic, and no longer torch's bits).
    """
    if grad.ndim != 2:
        raise ValueError("Param gradient must be a 2D matrix")
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
    # [momentum] an EWMA of the gradients; Nesterov: one more EWMA step towards g
    B = ewma_step_(state["momentum_buffer"], grad, momentum)
    update = grad.lerp(B, momentum) if nesterov else B
    # [orthogonalise]
    O = newton_schulz(update, ns_steps, ns_coefficients, eps, dtype=ns_dtype)
    # [step] decoupled weight decay with the plain lr, the update with the shape-adjusted one
    param.mul_(1 - lr * weight_decay)
    param.add_(O, alpha=-muon_lr(lr, adjust_lr_fn, param.shape))


# ---- schedule-free ------------------------------------------------------------------------


def schedule_free_coefficients(group: dict) -> tuple[float, float]:
    r"""The step's learning rate and averaging weight :math:`c_{k+1}` of a schedule-free
    parameter group, updating the group's running entries (``k`` is advanced by the caller).

    .. math::
        \gamma_k = \gamma \min\!\Big(1, \frac{k+1}{\text{warmup\_steps}}\Big), \qquad
        w_k = (k+1)^r\, \big(\max_{j\le k}\gamma_j\big)^{p}, \qquad
        c_{k+1} = \frac{w_k}{\sum_{j \le k} w_j}

    With :math:`r = 0` and no warm-up every weight is equal and :math:`x` is the plain average
    of the :math:`z` iterates (:math:`c_{k+1} = 1/(k+1)`); during warm-up the weights grow with
    :math:`\gamma^p` (``weight_lr_power`` :math:`p`), so the small early steps count less.
    """
    k, warmup = group["k"], group["warmup_steps"]
    # [warm-up] linear, built in: no schedule is needed
    lr = group["lr"] * ((k + 1) / warmup if k < warmup else 1.0)
    group["scheduled_lr"] = lr
    # [average weight]
    lr_max = group["lr_max"] = max(lr, group["lr_max"])
    weight = ((k + 1) ** group["r"]) * (lr_max ** group["weight_lr_power"])
    weight_sum = group["weight_sum"] = group["weight_sum"] + weight
    ckp1 = weight / weight_sum if weight_sum != 0 else 0
    return lr, ckp1


def schedule_free_sgd_rule(param: Tensor, grad: Tensor, state: State, *, lr: float, ckp1: float, momentum: float,
                           weight_decay: float) -> None:  # fmt: skip
    r"""Schedule-free SGD (Defazio et al. 2024): the parameter holds :math:`y`, the state :math:`z`.

    .. math::
        z_{k+1} &= z_k - \gamma\, g(y_k), \qquad
        x_{k+1} = (1 - c_{k+1})\, x_k + c_{k+1} z_{k+1}, \qquad
        y_{k+1} = (1-\beta) z_{k+1} + \beta x_{k+1}

    :math:`x` is a running average of the :math:`z` iterates (the point to evaluate), :math:`y`
    interpolates between the two (:math:`\beta` = ``momentum``) and is where gradients are taken.
    Only :math:`y` and :math:`z` are stored: the update of :math:`y` follows from the three lines
    (:math:`y \leftarrow (1-c) y + c z + \gamma(\beta(1-c) - 1)\, g`), and :math:`x` is recovered
    from them by ``eval()``.
    """
    if "z" not in state:
        state["z"] = torch.clone(param, memory_format=torch.preserve_format)
    y, z = param, state["z"]
    # [weight decay] L2, at y
    if weight_decay != 0:
        grad = grad.add(y, alpha=weight_decay)
    # [average] y moves towards z, then takes its share of the gradient step
    y.lerp_(z, ckp1)
    y.add_(grad, alpha=lr * (momentum * (1 - ckp1) - 1))
    # [base sequence] z: plain SGD
    z.sub_(grad, alpha=lr)


def schedule_free_adamw_rule(param: Tensor, grad: Tensor, state: State, *, lr: float, ckp1: float,
                             betas: tuple[float, float], eps: float, weight_decay: float, k: int) -> None:  # fmt: skip
    r"""Schedule-free AdamW (Defazio et al. 2024): schedule-free SGD on Adam-normalised gradients.

    .. math::
        v &\leftarrow \beta_2 v + (1-\beta_2) g^2, \qquad
        \hat g = \frac{g}{\sqrt{v / (1-\beta_2^{k+1})} + \epsilon} + \lambda y \\
        z &\leftarrow z - \gamma \hat g, \quad x \leftarrow (1-c) x + c z, \quad
        y = (1-\beta_1) z + \beta_1 x

    There is no first moment: :math:`\beta_1` is the interpolation of :math:`y` (the averaging
    plays momentum's part). ``k`` is the group's step count before this step.
    """
    beta1, beta2 = betas
    if "z" not in state:
        state["z"] = torch.clone(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    y, z = param, state["z"]
    # [second moment] RMSProp's normalisation, bias-corrected
    v = ewma_square_step_(state["exp_avg_sq"], grad, beta2)
    denom = v.div(bias_correction_factor(beta2, k + 1)).sqrt_().add_(eps)
    g_hat = torch.div(grad, denom, out=denom)  # g / denom, written over denom (one tensor fewer)
    # [weight decay] decoupled from v, taken at y
    if weight_decay != 0:
        g_hat.add_(y, alpha=weight_decay)
    # [average] as schedule-free SGD
    y.lerp_(z, ckp1)
    y.add_(g_hat, alpha=lr * (beta1 * (1 - ckp1) - 1))
    # [base sequence]
    z.sub_(g_hat, alpha=lr)


# ---- NAdam and RAdam ----------------------------------------------------------------------


def nadam_rule(param: Tensor, grad: Tensor, state: State, *, lr: float, betas: tuple[float, float], eps: float,
               weight_decay: float, momentum_decay: float, decoupled_weight_decay: bool) -> None:  # fmt: skip
    r"""NAdam (Dozat 2016) as ``torch.optim.NAdam`` computes it: Adam with Nesterov's look-ahead.

    .. math::
        \mu_t &= \beta_1\big(1 - \tfrac12\, 0.96^{t\psi}\big), \qquad
            \Pi_t = \textstyle\prod_{j\le t} \mu_j \\
        m &\leftarrow \beta_1 m + (1-\beta_1) g, \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2,
            \qquad s = \sqrt{v/(1-\beta_2^t)} + \epsilon \\
        \theta &\leftarrow \theta - \eta\,\frac{1-\mu_t}{1-\Pi_t}\,\frac{g}{s}
            - \eta\,\frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\,\frac{m}{s}

    The step mixes the new gradient and the momentum *one step ahead* (:math:`\mu_{t+1}`), as
    Nesterov's momentum does; :math:`\psi` = ``momentum_decay`` warms :math:`\mu_t` up.
    """
    beta1, beta2 = betas
    # [state]
    if not state:
        state["step"] = _zero_step()
        state["mu_product"] = torch.tensor(1.0, dtype=_scalar_dtype())
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    t = _count_step(state)
    bias_correction2 = bias_correction_factor(beta2, t)
    # [weight decay]
    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)
    # [momentum schedule]
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (t * momentum_decay)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * momentum_decay)))
    state["mu_product"] *= mu
    mu_product = state["mu_product"].item()
    # [moments]
    m = ewma_step_(state["exp_avg"], grad, beta1)
    v = ewma_square_step_(state["exp_avg_sq"], grad, beta2)
    denom = v.div(bias_correction2).sqrt().add_(eps)
    # [step] the gradient's part now, the momentum's part one step ahead
    param.addcdiv_(grad, denom, value=(-lr * (1.0 - mu) / (1.0 - mu_product)))
    param.addcdiv_(m, denom, value=(-lr * mu_next) / (1.0 - mu_product * mu_next))


def radam_rule(param: Tensor, grad: Tensor, state: State, *, lr: float, betas: tuple[float, float], eps: float,
               weight_decay: float, decoupled_weight_decay: bool) -> None:  # fmt: skip
    r"""RAdam (Liu et al. 2020) as ``torch.optim.RAdam`` computes it: Adam with a rectified start.

    .. math::
        \rho_\infty &= \frac{2}{1-\beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t} \\
        \theta &\leftarrow \theta - \eta\,\hat m\; r_t \frac{\sqrt{1-\beta_2^t}}{\sqrt{v} + \epsilon}
            \text{ if } \rho_t > 5, \quad\text{else}\quad \theta \leftarrow \theta - \eta\,\hat m,
            \qquad r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    :math:`\rho_t` is the length of the simple moving average that the EWMA :math:`v` resembles
    after :math:`t` steps: while it is short the variance of :math:`v` is too large (or
    infinite) and RAdam takes plain momentum steps; :math:`r_t` rises to 1, a built-in warm-up.
    """
    beta1, beta2 = betas
    if not state:
        state["step"] = _zero_step()
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    t = _count_step(state)
    # [weight decay]
    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)
    # [moments]
    m = ewma_step_(state["exp_avg"], grad, beta1)
    v = ewma_square_step_(state["exp_avg_sq"], grad, beta2)
    bias_correction1, bias_correction2 = bias_correction_factor(beta1, t), bias_correction_factor(beta2, t)
    m_hat = m / bias_correction1
    # [rectification] the length of the SMA that v approximates
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * (beta2**t) / bias_correction2
    # [step]
    if rho_t > 5.0:
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        adaptive = (bias_correction2**0.5) / v.sqrt().add_(eps)
        param.add_(m_hat * lr * adaptive * rect, alpha=-1.0)
    else:
        param.add_(m_hat * lr, alpha=-1.0)
