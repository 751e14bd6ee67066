"""``steer``: activation steering along a refusal direction (Arditi et al., NeurIPS 2024); no training.

Refusal in chat models is mediated by one direction of the residual stream. Its estimate is
the difference of mean activations at the last prompt token, harmful prompts minus benign
ones, at one decoder layer's output (``sweep.steer.layer``, the middle one by default):
``r = mean_harmful(h_l) - mean_benign(h_l)``. Adding ``s · r`` to that layer's output at every
position makes the base refuse more (``s > 0``) or less (``s < 0``); ``s = 0`` is the base
model itself. The scale grid (``sweep.steer.scales``) is the dial. The prompts are the label
set's training prompts (``sweep.harmful_labels``, :mod:`peo_hub.evaluate.labels`), never an
evaluation prompt, at most ``sweep.steer.max_prompts`` of each kind (a seeded subset),
rendered as every policy's prompt is.

Why a forward hook and not a library: ``steering-vectors`` 0.12 requires transformers < 5
(this project runs 5.x), and ``repeng`` 0.4 needs numpy < 2 (it uses ``np.float_``) and
scikit-learn, and takes its direction by PCA rather than the difference of means. The hook
is a dozen lines: it reads (to take the direction) or shifts (to steer) one decoder layer's
output, on the bundle's live model at the base (every coefficient 0), so steered replies
share the loaded model, the engine and the batching with every other point.

Cost: no training run; one forward pass per generated token; once per sweep, a forward
pass up to the steered layer over the direction's prompts.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from peo_hub.evaluate.baselines.registry import (Baseline, BaselineContext, BaselinePoint, Replies, base_preference,
                                                 register_baseline)
from peo_hub.utils.errors import PEOError


class _Read(Exception):
    """Raised by the reading hook once the layer's output is captured: the layers above are not needed."""


def decoder_layers(model: Any) -> Any:
    """The model's decoder blocks (a ``ModuleList`` as long as ``config.num_hidden_layers``)."""
    import torch

    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise PEOError(f"steer cannot find the decoder layers of {type(model).__name__}; remove steer from "
                   "sweep.baselines for this model")


def resolve_layer(model: Any, layer: int | None) -> int:
    """``layer``, or the middle decoder layer; one clear line when the model has fewer."""
    count = len(decoder_layers(model))
    if layer is None:
        return count // 2
    if layer >= count:
        raise PEOError(f"sweep.steer.layer is {layer} but the model has {count} decoder layers (0 to {count - 1}); "
                       "lower it or leave it out for the middle one")
    return layer


def _hidden(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


def last_token_activations(model: Any, tokenizer: Any, texts: Sequence[str], layer: int,
                           batch_size: int = 16) -> Any:
    """``(len(texts), hidden)``: layer ``layer``'s output at each text's last token (float32).

    Texts are padded on the left with positions counted from each text's first token, as
    :func:`peo_hub.family.engines.prompt_cache` numbers them, so a text's activation does not depend on
    its batch.
    """
    import torch

    from peo_hub.family.engines import left_padded

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    block = decoder_layers(model)[layer]
    captured: list[Any] = []

    def read(module: Any, args: Any, output: Any) -> None:
        captured.append(_hidden(output)[:, -1, :].float())
        raise _Read()

    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    width = max((len(ids) for ids in encoded), default=0)
    device = next(model.parameters()).device
    handle = block.register_forward_hook(read)
    try:
        for start in range(0, len(texts), batch_size):
            batch = left_padded(encoded[start:start + batch_size], width, tokenizer.pad_token_id, device)
            mask = batch["attention_mask"]
            positions = (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 1)
            try:
                with torch.inference_mode():
                    model(**batch, position_ids=positions, use_cache=False)
            except _Read:
                pass
    finally:
        handle.remove()
    return torch.cat(captured) if captured else torch.zeros((0, 0))


def refusal_direction(model: Any, tokenizer: Any, harmful: Sequence[str], benign: Sequence[str], layer: int,
                      batch_size: int = 16) -> Any:
    """``mean(h_l | harmful) - mean(h_l | benign)`` at the last prompt token (Arditi et al. 2024)."""
    acts = last_token_activations(model, tokenizer, [*harmful, *benign], layer, batch_size)
    return acts[:len(harmful)].mean(dim=0) - acts[len(harmful):].mean(dim=0)


@contextmanager
def steered(model: Any, direction: Any, layer: int, scale: float) -> Iterator[None]:
    """Within the block, layer ``layer``'s output is shifted by ``scale * direction`` at every position."""
    block = decoder_layers(model)[layer]

    def shift(module: Any, args: Any, output: Any) -> Any:
        hidden = _hidden(output)
        moved = hidden + (scale * direction).to(dtype=hidden.dtype, device=hidden.device)
        return (moved, *output[1:]) if isinstance(output, tuple) else moved

    handle = block.register_forward_hook(shift)
    try:
        yield
    finally:
        handle.remove()


def direction_prompts(context: BaselineContext) -> tuple[list[str], list[str], str]:
    """(harmful, benign, where from): the direction's prompts, rendered, at most max_prompts of each kind."""
    import numpy as np

    from peo_hub.data.chat import render_prompt
    from peo_hub.evaluate.labels import prompt_text

    settings = context.sweep.steer
    labels = context.labels()
    if settings.prompts is None:
        held_out = {prompt_text(p) for p in context.prompts}
        prompts: list[Any] = [p for p in labels.train if p not in held_out]
        where = f"the training prompts of {labels.source}"
    else:
        from peo_hub.data.load import load_prompts

        prompts = load_prompts(settings.prompts, where="sweep.steer.prompts")
        missing = labels.missing(prompts)
        if missing:
            raise PEOError(f"sweep.steer.prompts: {len(missing)} prompts have no harmful flag in {labels.source} "
                           f"(e.g. {missing[0][:60]!r}); label them there or set sweep.harmful_labels")
        where = "sweep.steer.prompts"
    flags = labels.flags(prompts) or []
    rng = np.random.default_rng(context.seed)
    kinds = []
    for wanted in (True, False):
        chosen = [p for p, f in zip(prompts, flags) if f is wanted]
        chosen = [chosen[i] for i in sorted(rng.permutation(len(chosen))[:settings.max_prompts])]
        kinds.append([render_prompt(context.tokenizer, p) for p in chosen])
    if not kinds[0] or not kinds[1]:
        raise PEOError(f"steer needs harmful and benign prompts for its direction; {where} has {len(kinds[0])} "
                       f"harmful and {len(kinds[1])} benign; set sweep.steer.prompts or sweep.harmful_labels")
    return kinds[0], kinds[1], where


def _label(scale: float) -> str:
    return f"scale{scale:+.4g}"


def _points(sweep: Any, aspects: list[str], tokenizer: Any) -> list[BaselinePoint]:
    return [BaselinePoint(label=_label(s), dial=s, extra={"scale": s}) for s in sweep.steer.scales]


def _replies(context: BaselineContext, points: list[BaselinePoint]) -> Replies:
    """One steered pass per scale, at the base; the direction is taken once, before the first."""
    from peo_hub.family.engines import generate_rows

    model = context.model()
    model.set_preference(coefficients=base_preference(context.aspects).coefficients)
    layer = resolve_layer(model.model, context.sweep.steer.layer)
    harmful, benign, where = direction_prompts(context)
    direction = refusal_direction(model.model, context.tokenizer, harmful, benign, layer)
    info = {"layer": layer, "direction_norm": round(float(direction.norm()), 6), "direction_prompts": where,
            "harmful_prompts": len(harmful), "benign_prompts": len(benign)}
    spec = context.evaluate
    texts = [t for t in context.rendered for _ in range(spec.samples)]
    samples = [s for _ in context.rendered for s in range(spec.samples)]
    for k, point in enumerate(points):
        with steered(model.model, direction, layer, point.extra["scale"]):
            flat = [r for _, chunk in generate_rows(model, context.tokenizer, texts, samples, spec, context.seed)
                    for r in chunk]
        yield k, [flat[i * spec.samples:(i + 1) * spec.samples] for i in range(len(context.rendered))], info


def _cost(sweep: Any, aspects: list[str]) -> dict[str, Any]:
    return {"training_runs": 0, "forward_passes_per_token": 1.0,
            "one_off": f"one forward pass up to the steered layer per direction prompt (at most "
                       f"{2 * sweep.steer.max_prompts})",
            "notes": "the base model with a vector added to one layer's output"}


register_baseline(Baseline(
    name="steer",
    summary="activation steering (Arditi et al. 2024): the base plus scale x a refusal direction (mean activation of "
            "harmful minus benign training prompts at a middle layer), one point per scale (sweep.steer); no training",
    dial="scale: the multiple of the refusal direction added (0 = the base)",
    points=_points, replies=_replies, cost=_cost))
