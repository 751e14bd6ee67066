"""Live LoRA as one product per module for all aspects: ``B @ (c ⊙ (A @ x))``.

Why: in live mode every aspect adapter is active, and PEFT's ``lora.Linear.forward`` runs
them one by one: per module and aspect, two ``nn.Linear`` calls, a dropout call, a scale
multiply and an add, each through Python. On SmolLM2-135M (7 modules x 30 layers x 2
aspects) that is 420 small products per token, and their fixed costs, not their
multiply-adds (about 4% of the model's), made live generation 1.2x-2.6x slower than the
base (``benchmarks/results/smollm2_serving.json``).

Here each plain LoRA ``Linear`` keeps its aspects' factors stacked once,
``A = [A₁; …; Aₙ]`` (Σr x d_in) and ``B = [B₁ … Bₙ]`` (d_out x Σr), and its forward is::

    W x + B @ (c ⊙ (A @ x)),   c = (c₁s₁ … c₁s₁, …, cₙsₙ … cₙsₙ)   (each cᵢsᵢ over its rᵢ ranks)

two matrix products per module whatever the number of aspects, with no per-aspect loop.
``c`` is a float32 tensor on the module's device, shared by every module with the same rank
layout: a live switch writes the new values into it in place (microseconds, no weight is
touched, on GPU too); a batch with one preference per row (:meth:`MultiLora.set_rows`)
swaps in a ``(rows, 1, Σr)`` tensor instead, so row b gets its own ``c_b``. Rows are only
ever multiplied elementwise, so a row's numbers do not depend on its neighbours, and a row
at preference p computes exactly what the whole batch computes at live preference p.

What it does not change: loading, saving and the bundle format (the adapters stay
standard PEFT folders loaded by PEFT; the stacked copies are non-persistent buffers, so
they follow ``.to()`` and never reach a state dict), fusing (PEFT's ``merge``, which reads
PEFT's own scales), exports. Layers that are not plain LoRA ``Linear`` (embeddings, LoRA
variants, LoRA biases) keep PEFT's forward, as does any layer in training mode, merged, with
adapters disabled, or called with extra arguments. ``remove`` puts PEFT's forward back
everywhere (``PEOModel.live_path = "peft"``, or ``PEO_HUB_LIVE_PATH=peft``).

The sum is the same as PEFT's up to float rounding (the order of the additions changes):
``tests/family/test_multilora.py`` holds both to the exact ``W + Σ cᵢ Δᵢ`` within 1e-5 of the
largest logit in float32.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from peo_hub.utils.errors import PEOError

#: Names of the stacked factors, registered on each LoRA layer as non-persistent buffers.
PACKED_A = "peo_packed_A"  # (Σr, d_in): [A₁; …; Aₙ]
PACKED_BT = "peo_packed_Bt"  # (Σr, d_out): [B₁ … Bₙ]ᵀ, the layout ``addmm`` takes without a transposed view

# (aspect, rank, PEFT scale sᵢ) for each aspect a module has, in the model's aspect order.
Layout = tuple[tuple[str, int, float], ...]


def peft_scale(layer: Any, aspect: str) -> float:
    """PEFT's scale ``sᵢ`` of one adapter on one layer (``lora_alpha / r``, or ``/ √r`` with rsLoRA).

    Read from the layer, so ``alpha_pattern`` and ``rank_pattern`` are PEFT's own reading.
    """
    r, alpha = layer.r[aspect], layer.lora_alpha[aspect]
    return alpha / math.sqrt(r) if layer.use_rslora.get(aspect) else alpha / r


class Coefficients:
    """The ``c`` vector of every module with one rank layout on one device.

    ``live`` is written in place at each switch; ``c`` is what the forward multiplies by:
    ``live`` (shape ``(Σr,)``) or, inside a per-row block, a ``(rows, 1, Σr)`` tensor.
    """

    __slots__ = ("layout", "live", "c")

    def __init__(self, layout: Layout, device: torch.device) -> None:
        self.layout = layout
        with torch.inference_mode(False):  # a normal tensor: writable in place in and out of inference mode
            self.live = torch.zeros(sum(r for _, r, _ in layout), dtype=torch.float32, device=device)
        self.c = self.live

    def values(self, coefficients: Mapping[str, float]) -> list[float]:
        """``cᵢ·sᵢ`` over each aspect's ranks, the products taken in Python floats as PEFT's ``set_scale`` does."""
        return [v for aspect, r, s in self.layout for v in [coefficients[aspect] * s] * r]

    def to(self, device: torch.device) -> torch.Tensor:
        """Follow the model to another device (after ``model.to(...)``); returns the new ``c``."""
        with torch.inference_mode(False):
            self.live = self.live.to(device)
        self.c = self.c.to(device) if self.c.dim() > 1 else self.live
        return self.c


class PackedForward:
    """The forward of one LoRA ``Linear``, installed as the layer's instance attribute ``forward``.

    Falls back to PEFT's own forward whenever the layer is not in the plain live state it
    was packed for (training, merged, adapters disabled, extra arguments).
    """

    __slots__ = ("layer", "coefficients", "base", "plain", "params", "buffers", "peft_forward")

    def __init__(self, layer: Any, coefficients: Coefficients) -> None:
        self.layer = layer
        self.coefficients = coefficients
        self.base = layer.get_base_layer()
        # A plain nn.Linear base is called as F.linear, exactly its own forward, without a
        # second module call; anything else (Conv1D, a quantised layer) through its module.
        self.plain = type(self.base) is torch.nn.Linear
        self.params = self.base._parameters  # stable dict: .to() replaces its entries, not the dict
        self.buffers = layer._buffers
        self.peft_forward = type(layer).forward.__get__(layer)

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        layer = self.layer
        if args or kwargs or layer.training or layer._disable_adapters or layer.merged_adapters:
            return self.peft_forward(x, *args, **kwargs)
        A, Bt = self.buffers[PACKED_A], self.buffers[PACKED_BT]
        same_dtype = x.dtype is A.dtype
        if self.plain:
            result = F.linear(x, self.params["weight"], self.params["bias"])
        else:
            result = self.base(x)
        h = F.linear(x if same_dtype else x.to(A.dtype), A)
        c = self.coefficients.c
        if c.device != h.device:
            c = self.coefficients.to(h.device)
        if c.dim() > 1 and (h.dim() != 3 or h.shape[0] != c.shape[0]):
            raise PEOError(f"{c.shape[0]} preferences for inputs of shape {tuple(x.shape[:-1])}; "
                           "give one preference per row of input_ids")
        h.mul_(c)  # in place: h is this call's own tensor (bf16 h: multiplied in float32, rounded once)
        if self.plain and same_dtype:
            # F.linear's fresh, contiguous output takes B's product in place: one GEMM with its
            # add folded in (beta = 1), not a product then a pass over the output to add it.
            result.view(-1, result.shape[-1]).addmm_(h.view(-1, h.shape[-1]), Bt)
            return result
        return result + torch.matmul(h, Bt).to(result.dtype)


def packable(layer: Any, aspects: Sequence[str]) -> bool:
    """Whether ``layer`` is a plain LoRA ``Linear`` whose adapters are all plain LoRA of ``aspects``."""
    from peft.tuners.lora import Linear

    if type(layer) is not Linear:
        return False
    names = list(layer.lora_A.keys())
    if not names or not set(names) <= set(aspects):
        return False
    if any(a in layer.lora_variant or layer.lora_bias.get(a) for a in names):
        return False
    linears = [layer.lora_A[a] for a in names] + [layer.lora_B[a] for a in names]
    if any(type(m) is not torch.nn.Linear or m.bias is not None for m in linears):
        return False
    return len({m.weight.dtype for m in linears}) == 1 and len({m.weight.device for m in linears}) == 1


class MultiLora:
    """The packed live path over a PEFT model's LoRA layers (see the module docstring).

    ``layers`` are the model's LoRA layers; those :func:`packable` get stacked factors and
    the packed forward on :meth:`install`, the rest keep PEFT's forward and its scales,
    which the caller keeps writing (PEOModel does, for fusing too).
    """

    def __init__(self, layers: Sequence[Any], aspects: Sequence[str]) -> None:
        self.aspects = list(aspects)
        self.layers = [layer for layer in layers if packable(layer, self.aspects)]
        self.fallback = [layer for layer in layers if not packable(layer, self.aspects)]
        self._groups: dict[tuple[Layout, str], Coefficients] = {}
        self._forwards: list[tuple[Any, PackedForward]] = []
        for layer in self.layers:
            layout = tuple((a, int(layer.r[a]), peft_scale(layer, a)) for a in self.aspects if a in layer.lora_A)
            device = layer.lora_A[layout[0][0]].weight.device
            group = self._groups.setdefault((layout, str(device)), Coefficients(layout, device))
            self._forwards.append((layer, PackedForward(layer, group)))
        self.installed = False

    @property
    def groups(self) -> list[Coefficients]:
        return list(self._groups.values())

    def install(self) -> None:
        """Stack every packable layer's factors and give it the packed forward."""
        if self.installed:
            return
        with torch.no_grad(), torch.inference_mode(False):
            for layer, forward in self._forwards:
                names = [a for a, _, _ in forward.coefficients.layout]
                A = torch.cat([layer.lora_A[a].weight for a in names], dim=0).contiguous()
                Bt = torch.cat([layer.lora_B[a].weight for a in names], dim=1).t().contiguous()
                layer.register_buffer(PACKED_A, A, persistent=False)
                layer.register_buffer(PACKED_BT, Bt, persistent=False)
                layer.forward = forward  # an instance attribute: nn.Module.__call__ finds it first
        self.installed = True

    def remove(self) -> None:
        """PEFT's own forward back on every layer, and the stacked copies dropped."""
        for layer, _ in self._forwards:
            layer.__dict__.pop("forward", None)
            layer._buffers.pop(PACKED_A, None)
            layer._buffers.pop(PACKED_BT, None)
        self.installed = False

    def set_live(self, coefficients: Mapping[str, float]) -> None:
        """One preference for every row: write ``c`` in place (no allocation, no weight touched)."""
        for group in self._groups.values():
            group.live.copy_(torch.tensor(group.values(coefficients), dtype=torch.float32))  # fine in inference mode
            group.c = group.live

    def set_rows(self, rows: Sequence[Mapping[str, float]]) -> None:
        """One preference per row: ``c`` becomes ``(rows, 1, Σr)``, broadcast over the sequence."""
        for group in self._groups.values():
            values = [group.values(row) for row in rows]
            group.c = torch.tensor(values, dtype=torch.float32, device=group.live.device).view(len(rows), 1, -1)


def _contiguous_input(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and not x.is_contiguous():
        return (x.contiguous(), *args[1:])
    return None


def contiguous_head_input(model: torch.nn.Module) -> Any:
    """Give the output head a contiguous input; returns the hook's handle (``None`` without a head).

    Why: at the first step of ``generate`` the head gets the prompt's last position,
    ``hidden[:, -1:, :]``, a view with gaps between rows. ``torch.matmul`` folds such a 3-D
    input into one matrix product only when the weight requires grad; PEFT freezes the base,
    so for a PEFT model (live, per-row and fused alike) it ran as one matrix-vector product per
    row instead: on SmolLM2's 49k x 576 head, 365 ms against 40 ms at batch 32 (one thread), a
    cost the plain base model never pays. Copying B x d floats first restores the one product.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        return None
    if hasattr(head, "get_base_layer"):  # an adapted head: the hook on the base layer, seen in every mode
        head = head.get_base_layer()
    return head.register_forward_pre_hook(_contiguous_input)
