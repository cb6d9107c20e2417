r"""Activation memory: the bytes autograd keeps for the backward pass, measured as they come and go.

A forward pass saves tensors for its backward (a linear layer its input, a ReLU its output);
they stay alive until that backward has run. A pipeline stage that has run the forward of
:math:`k` micro-batches and the backward of none of them holds :math:`k` micro-batches of such
activations, so a schedule's peak activation memory is (bytes of one micro-batch) x (the most
micro-batches in flight). :class:`SavedActivations` measures it on any device, through
``torch.autograd.graph.saved_tensors_hooks``: every tensor saved for backward is counted once
per region of memory (a tensor saved by two operations is stored once; a micro-batch that is a
view of the batch counts its own bytes) while autograd still holds it, parameters excluded (they
are memory of the model, not of the step).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SavedActivations"]


class _Held:
    """What the pack hook hands to autograd: the tensor, and a release of its bytes when autograd drops it."""

    __slots__ = ("tensor", "key", "owner")

    def __init__(self, tensor: Tensor, key, owner: "SavedActivations"):
        self.tensor, self.key, self.owner = tensor, key, owner

    def __del__(self):
        self.owner._release(self.key)


class SavedActivations:
    """Context manager: live and peak bytes of the tensors saved for backward inside it.

    ``model``: its parameters are not counted (looked up on entering, so a stage that moves or
    replaces them is still excluded). ``live`` is the number of bytes
    saved and not yet released now, ``peak`` the most at any moment since :meth:`reset`. Use it
    around forward *and* backward (a pipeline schedule's whole step): the bytes of a
    micro-batch are released when autograd frees its graph after the backward.
    """

    def __init__(self, model: nn.Module | None = None):
        self.model = model
        self._skip: set[int] = set()
        self._count: dict = {}
        self._bytes: dict = {}
        self.live = 0
        self.peak = 0
        self._hooks = None

    def reset(self) -> None:
        """Forget the peak (the bytes still held stay counted)."""
        self.peak = self.live

    def _pack(self, t: Tensor):
        if t.untyped_storage().data_ptr() in self._skip or t.data_ptr() == 0:
            return t
        nbytes = t.numel() * t.element_size()
        key = (t.device, t.data_ptr(), nbytes)
        if self._count.get(key, 0) == 0:
            self._bytes[key] = nbytes
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self._count[key] = self._count.get(key, 0) + 1
        return _Held(t, key, self)

    @staticmethod
    def _unpack(held):
        return held.tensor if isinstance(held, _Held) else held

    def _release(self, key) -> None:
        self._count[key] -= 1
        if self._count[key] == 0:
            del self._count[key]
            self.live -= self._bytes.pop(key)

    def __enter__(self) -> "SavedActivations":
        params = self.model.parameters() if self.model is not None else ()
        self._skip = {p.untyped_storage().data_ptr() for p in params}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._hooks = None
