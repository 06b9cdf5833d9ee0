"""The attention's values over a stepping training loop, their gradient summed once.

Under plain autograd every decoder step's context product ``weights_t @ values`` returns its
own ``(B, S, 2H)`` gradient for the values (a ``K = 1`` outer product), and autograd adds it to
the others: two passes per step over a tensor larger than the L2 cache, 0.4-0.5 ms of a 5.4 ms
step of the Joey-shape decoder (forward + backward, one thread). :class:`ValueGrads` does the
same sum once: each step keeps its weights and, in the backward, its context's gradient; after
every step's backward has run the values' gradient is ``W^T dC``, one batched product of
``W (B, T, S)`` and ``dC (B, T, 2H)``, in float32 (float64 for a float64 model). Under autocast
the values are cast once here, not at every step (a float64 model stays float64: autocast leaves
it alone, and so does this).

    grads = ValueGrads(enc.out)            # once per batch, before the loop
    ctx = grads.context(weights_t)         # at every step: weights_t (B, 1, S) -> (B, 1, 2H)

How the sum reaches the values: :attr:`ValueGrads.values` is the output of :class:`_Tap`, and
every step's :class:`_StepContext` takes it as an input and returns no gradient for it.
Autograd runs a node's backward only after every node that used its output, so ``_Tap``'s
backward runs after all the steps' and returns the total. A step keeps its context's gradient
only when ``_Tap``'s node runs in the same backward: one that stops short of the values
(``torch.autograd.grad`` of the decoder's parameters, say) leaves nothing to be summed into the
next one.
"""

import weakref
from typing import List, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class ValueGrads:
    """The values ``(B, S, 2H)`` of one batch's training loop; see the module docstring."""

    def __init__(self, values: Tensor) -> None:
        dev = values.device.type
        float64 = values.dtype == torch.float64
        self.dtype = (torch.get_autocast_dtype(dev)  # what the context products run in
                      if torch.is_autocast_enabled(dev) and not float64 else values.dtype)
        self.acc = torch.float64 if float64 else torch.float32  # what the sum runs in
        self.weights: List[Tensor] = []  # (B, 1, S) per step, in self.acc
        self.d_ctx: List[Optional[Tensor]] = []  # (B, 1, 2H) per step, set by the backward
        self.values = _Tap.apply(values, self)  # (B, S, 2H) in self.dtype

    def context(self, weights: Tensor) -> Tensor:
        """One step's context ``weights (B, 1, S) @ values (B, S, 2H) -> (B, 1, 2H)``."""
        return _StepContext.apply(weights, self.values, self)

    def total(self) -> Optional[Tensor]:
        """``sum_t weights_t^T d_ctx_t``, ``(B, S, 2H)`` in ``self.acc``, over the steps that
        got a gradient in the last backward (None: none did)."""
        steps = [t for t, d in enumerate(self.d_ctx) if d is not None]
        if not steps:
            return None
        w = torch.cat([self.weights[t] for t in steps], dim=1)  # (B, T', S)
        dc = torch.cat([self.d_ctx[t].to(self.acc) for t in steps], dim=1)  # (B, T', 2H)
        return torch.bmm(w.transpose(1, 2), dc)  # (B, S, 2H)


class _Tap(torch.autograd.Function):
    """``values (B, S, 2H) -> values`` in the sink's dtype; the backward returns the sink's
    total. The node holds the sink weakly: the sink holds this node's output, and a strong
    reference back would keep every batch's sink (and the encoder's graph) alive until Python's
    cycle collector runs."""

    @staticmethod
    def forward(ctx, values, sink):
        ctx.set_materialize_grads(False)
        ctx.sink, ctx.dtype = weakref.ref(sink), values.dtype
        return values.to(sink.dtype) if values.dtype != sink.dtype else values.view_as(values)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        # grad (B, S, 2H): from uses other than the sink's steps, usually None
        sink = ctx.sink()  # alive: the steps' nodes hold it until their backward has run
        total = None if sink is None else sink.total()  # (B, S, 2H) in sink.acc
        if sink is not None:  # a later backward (retain_graph) sums only what it reaches
            sink.d_ctx = [None] * len(sink.d_ctx)
        if grad is not None:  # float32, or float64 for a float64 model
            grad = grad.to(torch.float64 if grad.dtype == torch.float64 else torch.float32)
            total = grad if total is None else total + grad
        return None if total is None else total.to(ctx.dtype), None


class _StepContext(torch.autograd.Function):
    """``(weights (B, 1, S), values (B, S, 2H), sink) -> weights @ values (B, 1, 2H)`` in the
    sink's dtype, with autocast off inside; the backward hands its incoming gradient to the sink
    and returns none for the values."""

    @staticmethod
    def forward(ctx, weights, values, sink):
        ctx.set_materialize_grads(False)
        ctx.sink, ctx.step = sink, len(sink.weights)
        sink.weights.append(weights.detach().to(sink.acc))
        sink.d_ctx.append(None)
        ctx.save_for_backward(values)
        ctx.w_dtype = weights.dtype
        with torch.autocast(values.device.type, enabled=False):
            return torch.bmm(weights.to(values.dtype), values)  # (B, 1, 2H)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_ctx):  # d_ctx (B, 1, 2H)
        if d_ctx is None:
            return None, None, None
        values, = ctx.saved_tensors  # (B, S, 2H)
        tap = values.grad_fn  # the _Tap node (None: the values need no gradient)
        # kept only when that node runs later in this backward and sums it; the engine's own
        # test, as torch.autograd.graph.register_multi_grad_hook asks it
        if tap is not None and torch._C._will_engine_execute_node(tap):
            ctx.sink.d_ctx[ctx.step] = d_ctx
        d_w = torch.bmm(d_ctx.to(values.dtype), values.transpose(1, 2))  # (B, 1, S)
        return d_w.to(ctx.w_dtype), None, None
