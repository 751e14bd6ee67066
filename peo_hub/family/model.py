"""``PEOModel``: one base model, every aspect adapter loaded, a preference dial at inference time.

The policy at coefficients ``c`` is ``θ₀ + Σᵢ cᵢ Δᵢ`` with ``Δᵢ = sᵢ Bᵢ Aᵢ`` (``sᵢ =
lora_alpha/r``). Two in-memory realisations share the same loaded weights:

* **live** (default): all aspect adapters are active at once, and a forward pass adds
  ``Σ cᵢ sᵢ Bᵢ Aᵢ x``. Each plain LoRA ``Linear`` computes it as one product for all
  aspects, ``B @ (c ⊙ (A @ x))`` with the factors stacked once (:mod:`peo_hub.family.multilora`);
  PEFT's own scales are kept equal to ``cᵢ · sᵢ`` too (what ``LoraLayer.set_scale(aspect, cᵢ)``
  computes), for fusing and for the layers PEFT still runs (embeddings). Switching
  preference writes a few floats into small tensors: microseconds, no weight is touched.
* **fused** (``fuse=True``): the same scales are merged into the base weights in place
  (PEFT ``merge``), and unmerged (subtracted with the very same scales) before the next
  switch. Generation then runs at exactly the base model's cost. In float32 each
  fuse/unfuse round trip perturbs the weights by at most a rounding (~1e-7 relative); in
  half precision a subtraction loses far more (~1e-3 per trip), so there the adapted
  weights are kept once in CPU memory and restored bitwise instead (``exact_unfuse``).

The third realisation, files, is :meth:`PEOModel.export_adapter` (one exact LoRA adapter)
and :meth:`PEOModel.to_mergekit_config` (a mergekit ``task_arithmetic`` config), both in
:mod:`peo_hub.family.merge`.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from peo_hub.bundle.manifest import Bundle, Manifest, open_bundle
from peo_hub.utils.errors import HubError, PEOError, PreferenceError, first_line
from peo_hub.family.merge import export_adapter, mergekit_config
from peo_hub.bundle.front import Front, Preset
from peo_hub.family.lora import base_shapes_from_model, load_bundle_adapters
from peo_hub.family.multilora import MultiLora, contiguous_head_input, peft_scale
from peo_hub.core.policy import Preference, coefficient_warning, make_preference
from peo_hub.utils.weights import check_loaded_finite

LOG = logging.getLogger("peo_hub")

Messages = Sequence[Mapping[str, str]] | str
# One row's preference: {"weights": {...}, "alpha": a}, {"coefficients": {...}} or a Preference.
PreferenceSpec = Mapping[str, Any] | Preference
#: How live mode runs the LoRA layers: "packed" (one product per module, peo_hub.family.multilora) or
#: "peft" (PEFT's per-adapter loop, as before; kept for comparison). Default: $PEO_HUB_LIVE_PATH.
LIVE_PATHS = ("packed", "peft")


def warn_coefficients(manifest: Manifest, coefficients: Mapping[str, float]) -> None:
    """Log a one-line warning when a policy leaves the range its bundle's sweep measured."""
    message = coefficient_warning(coefficients, manifest.evaluated_range())
    if message:
        LOG.warning("warning: %s", message)


class PEOModel:
    """A PEO bundle loaded for inference: ``base + Σ cᵢ Δᵢ`` at a preference you can change."""

    def __init__(self, bundle: Bundle, peft_model: Any, tokenizer: Any,
                 exact_unfuse: bool | None = None, live_path: str | None = None) -> None:
        from peft.tuners.lora import LoraLayer

        self._bundle = bundle
        self.peft_model = peft_model
        self.model = peft_model.base_model.model  # the transformers model, LoRA layers injected
        self.tokenizer = tokenizer
        self._lock = threading.RLock()  # a switch never happens mid-generation
        # (parent module, attribute, LoRA layer): fused mode swaps each LoRA layer for its
        # merged base layer so the forward pass is exactly the base model's, with no PEFT
        # wrapper left in it (benchmarks/generation_throughput.py measured that wrapper at ~7%).
        self._homes: list[tuple[torch.nn.Module, str, Any]] = [
            (parent, name, child)
            for parent in self.model.modules()
            for name, child in parent.named_children()
            if isinstance(child, LoraLayer)
        ]
        self._layers = [layer for _, _, layer in self._homes]
        # (scaling dict, aspect, sᵢ) for every adapted module: the whole live-switch state.
        self._slots: list[tuple[dict[str, float], str, float]] = []
        self._slot_layers: list[Any] = []  # the layer of each slot (its device, for per-row scales)
        for layer in self._layers:
            for aspect in layer.lora_A.keys() | getattr(layer, "lora_embedding_A", {}).keys():
                self._slots.append((layer.scaling, aspect, peft_scale(layer, aspect)))
                self._slot_layers.append(layer)
        self._multilora = MultiLora(self._layers, self.aspects)
        self._head_hook = contiguous_head_input(self.model)  # the prompt's logits in one product, as the base
        self._fused = False
        self._auto_exact_unfuse = exact_unfuse is None
        if exact_unfuse is None:  # subtracting back is only lossless enough in >= float32
            exact_unfuse = self._half_precision()
        self.exact_unfuse = exact_unfuse
        self._pristine: dict[int, torch.Tensor] = {}  # id(layer) -> CPU copy, filled on first fuse
        #: warn when a preference leaves the range the bundle's sweep measured; the sweep itself,
        #: which is that measurement (its alpha search reaches past the grid), turns this off
        self.range_warnings = True
        self.preference: Preference = make_preference(self.aspects, {a: 1.0 for a in self.aspects},
                                                      formulation=self.manifest.formulation)
        self._apply_scales(self.preference.coefficients)
        self.live_path = live_path or os.environ.get("PEO_HUB_LIVE_PATH") or "packed"

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike[str], revision: str | None = None, *,
                        dtype: str | torch.dtype | None = None, device_map: Any = None,
                        token: str | bool | None = None, cache_dir: str | os.PathLike[str] | None = None,
                        local_files_only: bool = False, attn_implementation: str | None = None,
                        quantization_config: Any = None, device: str | torch.device | None = None,
                        exact_unfuse: bool | None = None, torch_dtype: str | torch.dtype | None = None,
                        live_path: str | None = None, **model_kwargs: Any) -> "PEOModel":
        """Load a bundle (local folder or Hub repo id): the base once, then every aspect adapter.

        The loading arguments are transformers' and PEFT's: ``dtype`` (``torch.bfloat16``,
        ``"auto"``...), ``device_map`` (``"auto"`` spreads a big base over the GPUs and the CPU),
        ``attn_implementation``, ``quantization_config`` (e.g. a 4-bit ``BitsAndBytesConfig``:
        live switching and per-row batches work, fusing does not), and for the Hub ``token``
        (a private bundle or base), ``cache_dir`` and ``local_files_only``; ``revision`` is the
        bundle's. Other keyword arguments go to the base's ``from_pretrained`` as they are
        (``max_memory``, ``offload_folder``...). ``device`` puts the whole model on one device
        (``device_map={"": device}``); ``torch_dtype`` is the deprecated name of ``dtype``.

        Adapters are checked against the loaded base (module names and shapes) before PEFT
        sees them, so one trained on another base fails with a :class:`BundleError` naming it.
        Starts at equal weights, alpha 0 (the uniform soup). ``exact_unfuse`` (default: only
        for half-precision weights) keeps a CPU copy of the adapted weights the first time a
        preference is fused, so unfusing restores them bitwise instead of subtracting.
        ``live_path`` is :attr:`live_path` (default ``$PEO_HUB_LIVE_PATH``, else ``"packed"``).
        """
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from peo_hub.bundle.pull import bundle_folder
        from peo_hub.family.loading import load_args
        from peo_hub.utils.hubio import TOKEN_HELP, hub_errors

        args = load_args(dtype=dtype, torch_dtype=torch_dtype, device=device, device_map=device_map, token=token,
                         cache_dir=cache_dir, local_files_only=local_files_only,
                         attn_implementation=attn_implementation, quantization_config=quantization_config,
                         **model_kwargs)
        bundle = open_bundle(bundle_folder(path_or_repo_id, revision=revision, **args.hub),
                             source=str(path_or_repo_id))
        base_revision = bundle.base_revision
        # A truncated, deleted or NaN base is one line naming the file, not a SafetensorError or a
        # model that answers empty strings (peo_hub.utils.weights: the one check of every reader).
        bundle.check_base(finite=True)
        try:
            with hub_errors(f"load the base model {bundle.base}", bundle.base, revision=base_revision):
                tokenizer = AutoTokenizer.from_pretrained(bundle.base, revision=base_revision, **args.hub)
                base = AutoModelForCausalLM.from_pretrained(bundle.base, revision=base_revision, **args.model)
        except OSError as exc:  # transformers' "not a local folder and not a valid model identifier"
            if bundle.base_is_local:
                raise
            raise HubError(f"cannot load the bundle's base model {bundle.base} ({first_line(exc)}); for a private "
                           f"base pass token= (or {TOKEN_HELP}), else check the id and its revision") from None
        if not bundle.base_is_local:  # a Hub base: its files were not ours to check first
            check_loaded_finite(base, bundle.base_reference)
        load_bundle_adapters(bundle, base_shapes=base_shapes_from_model(base))
        aspects = bundle.aspects
        peft_model = PeftModel.from_pretrained(base, str(bundle.adapter_dirs[aspects[0]]),
                                               adapter_name=aspects[0], is_trainable=False)
        for aspect in aspects[1:]:
            peft_model.load_adapter(str(bundle.adapter_dirs[aspect]), adapter_name=aspect,
                                    is_trainable=False)
        peft_model.base_model.set_adapter(list(aspects), inference_mode=True)  # all active at once
        peft_model.eval()
        return cls(bundle, peft_model, tokenizer, exact_unfuse=exact_unfuse, live_path=live_path)

    def to(self, *args: Any, **kwargs: Any) -> "PEOModel":
        """Move or cast the whole model, as ``torch.nn.Module.to`` (``m.to("cuda")``, ``m.to(torch.bfloat16)``).

        The preference and the mode are kept: a fused model is unfused, moved and fused again,
        and its kept copies for exact unfusing are taken anew in the new dtype. Per-row and
        live scales follow the weights (they are made on each layer's device when used).
        A model dispatched over several devices (``device_map="auto"``) or quantised cannot
        be moved as a whole: reload it with the device_map or dtype you want.
        """
        from peo_hub.family.loading import resolve_device

        placed = set((getattr(self.model, "hf_device_map", None) or {}).values())
        if len(placed) > 1:
            raise PEOError("this model was loaded with a device_map over several devices "
                           f"({', '.join(sorted(map(str, placed)))}); reload it with device_map= where you want it")
        if self.quantized:
            raise PEOError("a quantized base cannot be moved or cast; reload the bundle with the device_map "
                           "and quantization_config you want")
        for value in (*args, kwargs.get("device")):
            if isinstance(value, (str, torch.device)):
                resolve_device(value)  # "cuda" without CUDA: one line
        with self._lock, torch.no_grad():
            was_fused = self._fused
            if was_fused:
                self._unfuse()
            packed = self._multilora.installed
            if packed:
                self._multilora.remove()  # the stacked factors are taken again in the new device/dtype
            self.peft_model.to(*args, **kwargs)
            if packed:
                self._multilora.install()
            self._pristine.clear()  # copies of the old dtype: taken again on the next fuse
            if self._auto_exact_unfuse:
                self.exact_unfuse = self._half_precision()
            self._apply_scales(self.preference.coefficients)
            if was_fused:
                self._fuse(self.preference.coefficients)
        return self

    @property
    def quantized(self) -> bool:
        """Whether the base was loaded quantised (e.g. 4-bit bitsandbytes): live and per-row only, no fusing."""
        return getattr(self.model, "hf_quantizer", None) is not None or bool(
            getattr(self.model, "is_loaded_in_4bit", False) or getattr(self.model, "is_loaded_in_8bit", False))

    def _half_precision(self) -> bool:
        return any(layer.get_base_layer().weight.element_size() < 4 for layer in self._layers)

    # ------------------------------------------------------------------ state

    @property
    def manifest(self) -> Manifest:
        return self._bundle.manifest

    @property
    def aspects(self) -> list[str]:
        return self._bundle.aspects

    @property
    def bundle_dir(self) -> Path:
        return self._bundle.root

    @property
    def bundle(self) -> Bundle:
        return self._bundle

    @property
    def front(self) -> Front | None:
        """The bundle's evaluated front (``None`` before it was evaluated)."""
        return self._bundle.front

    @property
    def presets(self) -> dict[str, Preset]:
        """Named preferences from the front, e.g. ``m.set_preference(**m.preset("balanced"))``."""
        return self._bundle.presets

    def preset(self, name: str) -> dict[str, Any]:
        """Keyword arguments of :meth:`set_preference` for preset ``name`` (weights and alpha)."""
        presets = self.presets
        if name not in presets:
            known = ", ".join(presets) or "none (the bundle has no evaluated front)"
            raise PEOError(f"unknown preset {name!r}; this bundle's presets: {known}")
        entry = presets[name]
        if entry.weights is None:
            return {"coefficients": dict(entry.coefficients or {})}
        return {"weights": dict(entry.weights), "alpha": float(entry.alpha or 0.0)}

    @property
    def coefficients(self) -> dict[str, float]:
        return dict(self.preference.coefficients)

    @property
    def fused(self) -> bool:
        """Whether the current preference is merged into the base weights."""
        return self._fused

    @property
    def live_path(self) -> str:
        """``"packed"``: live LoRA layers run one product for all aspects (:mod:`peo_hub.family.multilora`);
        ``"peft"``: PEFT's per-adapter forward. Both give ``W + Σ cᵢ Δᵢ`` up to float rounding."""
        return "packed" if self._multilora.installed else "peft"

    @live_path.setter
    def live_path(self, path: str) -> None:
        if path not in LIVE_PATHS:
            raise PEOError(f"unknown live path {path!r} (PEO_HUB_LIVE_PATH or live_path=); use one of: "
                           + ", ".join(LIVE_PATHS))
        with self._lock:
            if path == "packed":
                self._multilora.install()
            else:
                self._multilora.remove()

    @property
    def _slot_devices(self) -> list[torch.device]:
        return [next(layer.get_base_layer().parameters()).device for layer in self._slot_layers]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        mode = "fused" if self._fused else "live"
        coefs = ", ".join(f"{a}={c:g}" for a, c in self.preference.coefficients.items())
        return f"PEOModel({self._bundle.source!r}, {mode}, coefficients: {coefs})"

    # ------------------------------------------------------------------ switching

    def _warn_range(self, coefficients: Mapping[str, float]) -> None:
        if self.range_warnings:
            warn_coefficients(self.manifest, coefficients)

    def _apply_scales(self, coefficients: Mapping[str, float]) -> None:
        for scaling, aspect, base_scale in self._slots:  # PEFT's scales: for merge and PEFT's forward
            scaling[aspect] = coefficients[aspect] * base_scale
        self._multilora.set_live(coefficients)  # the packed layers' c, written in place

    def _unfuse(self) -> None:
        # Either restore the pristine copy bitwise, or subtract exactly what _fuse added
        # (the scales are unchanged in between, so the deltas are the same numbers).
        for parent, name, layer in self._homes:
            setattr(parent, name, layer)  # the LoRA wrapper back into the forward pass
        for layer in self._layers:
            if not layer.merged:
                continue
            pristine = self._pristine.get(id(layer))
            if pristine is not None:
                layer.get_base_layer().weight.data.copy_(pristine)
                layer.merged_adapters.clear()  # PEFT's own record of what is merged
            else:
                layer.unmerge()
        self._fused = False

    def _fuse(self, coefficients: Mapping[str, float]) -> None:
        nonzero = [a for a in self.aspects if coefficients[a] != 0.0]
        for layer in self._layers:
            names = [a for a in nonzero if a in layer.scaling]
            if not names:
                continue
            if self.exact_unfuse and id(layer) not in self._pristine:
                self._pristine[id(layer)] = layer.get_base_layer().weight.detach().to("cpu", copy=True)
            layer.merge(adapter_names=names)
        for parent, name, layer in self._homes:
            setattr(parent, name, layer.get_base_layer())  # same tensors, no wrapper
        self._fused = True

    def set_preference(self, weights: Mapping[str, float] | None = None, alpha: float = 0.0,
                       fuse: bool = False, coefficients: Mapping[str, float] | None = None
                       ) -> Preference:
        """Switch to preference weights + alpha (or raw coefficients); returns the new point.

        ``fuse=False`` (live) only rescales the adapters. ``fuse=True`` also merges the
        combination into the weights for base-speed generation; the next call unmerges first.
        Invalid input raises :class:`~peo_hub.utils.errors.PreferenceError` and changes nothing.
        """
        preference = make_preference(self.aspects, weights=weights, alpha=alpha,
                                     coefficients=coefficients, formulation=self.manifest.formulation)
        if fuse and self.quantized:
            raise PreferenceError("fuse=True needs full-precision base weights, and this base is quantized "
                                  "(merging would re-quantize it); use live mode (fuse=False)")
        self._warn_range(preference.coefficients)
        with self._lock:
            if self._fused:
                self._unfuse()
            self._apply_scales(preference.coefficients)
            if fuse:
                with torch.no_grad():
                    self._fuse(preference.coefficients)
            self.preference = preference
        return preference

    # ------------------------------------------------------------------ generation

    def _generation_defaults(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.tokenizer.pad_token_id is not None:
            kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        return kwargs

    def generate(self, preferences: Sequence[PreferenceSpec] | None = None, **kwargs: Any) -> Any:
        """``transformers`` ``generate`` at the current preference, or one preference per row.

        With ``preferences`` (one per row of ``input_ids``: ``{"weights": {...}, "alpha": a}``,
        ``{"coefficients": {...}}`` or a :class:`Preference`), every row is generated at its
        own policy in the same forward passes: each packed layer's coefficients become a
        ``(rows, 1, Σr)`` tensor in ``B @ (c ⊙ (A @ x))`` (:mod:`peo_hub.family.multilora`),
        each PEFT scale a ``(rows, 1, 1)`` tensor that PEFT's ``lora_B(lora_A(x)) * scaling``
        broadcasts, so row b gets ``Σᵢ c_{b,i} sᵢ Bᵢ Aᵢ x``. A fused model is unfused for the
        call and fused again after (the merged weights cannot hold several policies); the
        model's own preference is restored either way.
        """
        if preferences is None:
            with self._lock, torch.inference_mode():
                return self.model.generate(**self._generation_defaults(kwargs))
        input_ids = kwargs.get("input_ids")
        for key in ("num_beams", "num_return_sequences"):
            if int(kwargs.get(key) or 1) != 1:
                raise PreferenceError(f"{key} > 1 is not supported with one preference per row; "
                                      "repeat the rows (and their preferences) instead")
        with self.row_preferences(preferences, rows=None if input_ids is None else len(input_ids)), \
                torch.inference_mode():
            return self.model.generate(**self._generation_defaults(kwargs))

    @contextmanager
    def row_preferences(self, preferences: Sequence[PreferenceSpec], rows: int | None = None
                        ) -> Iterator[list[Preference]]:
        """Within the block, every forward pass of :attr:`model` runs row b at ``preferences[b]``.

        What :meth:`generate` with ``preferences`` does around ``generate``, for code that
        runs the model's forward itself (e.g. a KV cache of shared prompts, computed once
        for many sampled rows). ``rows`` (when known) must equal the number of preferences.
        Yields the validated preferences; the model's own preference is restored after.
        """
        checked = self._row_preferences(preferences)
        if rows is not None and rows != len(checked):
            raise PreferenceError(f"{len(checked)} preferences for {rows} input rows; give one preference per row")
        with self._lock:
            was_fused = self._fused
            if was_fused:  # merged weights hold one policy: back to live for the batch
                with torch.no_grad():
                    self._unfuse()
            try:
                self._apply_row_scales([p.coefficients for p in checked])
                yield checked
            finally:
                self._apply_scales(self.preference.coefficients)
                if was_fused:
                    with torch.no_grad():
                        self._fuse(self.preference.coefficients)

    def _row_preferences(self, preferences: Sequence[PreferenceSpec]) -> list[Preference]:
        """Validate every row's preference (a :class:`PreferenceError` names the row)."""
        if isinstance(preferences, (Mapping, Preference)):
            raise PreferenceError("preferences must be a list with one preference per row, e.g. "
                                  "[{'weights': {...}, 'alpha': 0.5}, {'coefficients': {...}}]")
        if isinstance(preferences, (str, bytes)) or not isinstance(preferences, Sequence):
            raise PreferenceError(f"preferences must be a list with one preference per row, got {preferences!r}")
        rows = []
        for i, spec in enumerate(preferences):
            if isinstance(spec, Preference):
                if list(spec.coefficients) != list(self.aspects):
                    raise PreferenceError(f"row {i}: the Preference was made for the aspects "
                                          f"{', '.join(map(str, spec.coefficients))}, this model's are "
                                          f"{', '.join(self.aspects)}; make it with this model's aspects (or pass "
                                          "{'weights': {...}, 'alpha': a})")
                rows.append(spec)
                continue
            if not isinstance(spec, Mapping) or not set(spec) <= {"weights", "alpha", "coefficients"}:
                raise PreferenceError(f"preference of row {i} must be {{'weights': {{...}}, 'alpha': a}} or "
                                      f"{{'coefficients': {{...}}}}, got {spec!r}")
            alpha = spec.get("alpha")
            try:
                rows.append(make_preference(self.aspects, weights=spec.get("weights"),
                                            alpha=0.0 if alpha is None else alpha,
                                            coefficients=spec.get("coefficients"),
                                            formulation=self.manifest.formulation))
            except PreferenceError as exc:
                raise PreferenceError(f"row {i}: {exc}") from None
        if not rows:
            raise PreferenceError("no preferences given; give one preference per row")
        for coefficients in {tuple(row.coefficients.items()) for row in rows}:
            self._warn_range(dict(coefficients))
        return rows

    def _apply_row_scales(self, rows: Sequence[Mapping[str, float]]) -> None:
        """Set every LoRA scale to a ``(rows, 1, 1)`` float32 tensor: row b's ``c_{b,i} · sᵢ``.

        The products are taken in Python floats, exactly as :meth:`_apply_scales` does, so a
        row sees the very scale its single-preference run multiplies by. One tensor per
        (aspect, sᵢ, device), shared by every layer that has them. The packed layers get one
        ``(rows, 1, Σr)`` tensor per rank layout instead (:meth:`MultiLora.set_rows`).
        """
        tensors: dict[tuple[str, float, torch.device], torch.Tensor] = {}
        for (scaling, aspect, base_scale), device in zip(self._slots, self._slot_devices):
            key = (aspect, base_scale, device)
            if key not in tensors:
                values = [row[aspect] * base_scale for row in rows]
                tensors[key] = torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1, 1)
            scaling[aspect] = tensors[key]  # type: ignore[assignment]
        self._multilora.set_rows(rows)

    def _chat_inputs(self, messages: Messages) -> dict[str, torch.Tensor]:
        from peo_hub.data.chat import render_prompt

        # The same rendering as training and the sweep: the chat template when the base has
        # one, plain text otherwise (a GPT-2-style base has no template to apply).
        text = render_prompt(self.tokenizer, messages)
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        return {k: v.to(self.device) for k, v in inputs.items()}

    def chat(self, messages: Messages, max_new_tokens: int = 128, do_sample: bool = False,
             **gen_kwargs: Any) -> str:
        """Reply to a conversation (or one user message) at the current preference."""
        inputs = self._chat_inputs(messages)
        output = self.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample, **gen_kwargs)
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()

    def chat_batch(self, messages_list: Sequence[Messages], preferences: Sequence[PreferenceSpec],
                   max_new_tokens: int = 128, do_sample: bool = False, **gen_kwargs: Any) -> list[str]:
        """Reply to many conversations at once, each at its own preference, in one batch.

        Greedy replies equal what :meth:`set_preference` then :meth:`chat` gives each row
        alone (prompts are padded on the left; the KV cache works as usual). The model's
        own preference is unchanged afterwards.
        """
        from peo_hub.data.chat import render_prompt

        if len(messages_list) != len(preferences):
            raise PreferenceError(f"{len(preferences)} preferences for {len(messages_list)} conversations; "
                                  "give one preference per conversation")
        if not messages_list:
            return []
        if self.tokenizer.pad_token is None:  # GPT-2-style tokenizers have none; batching needs one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        texts = [render_prompt(self.tokenizer, m) for m in messages_list]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                               add_special_tokens=False).to(self.device)
        output = self.generate(preferences, **batch, max_new_tokens=max_new_tokens, do_sample=do_sample,
                               **gen_kwargs)
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        new_tokens = sequences[:, batch["input_ids"].shape[1]:]
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def stream_chat(self, messages: Messages, max_new_tokens: int = 128, do_sample: bool = False,
                    **gen_kwargs: Any) -> Iterator[str]:
        """Like :meth:`chat`, yielding text chunks as they are generated (for Gradio)."""
        from transformers import TextIteratorStreamer

        inputs = self._chat_inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                              streamer=streamer, **gen_kwargs)
            except BaseException as exc:  # surfaced in the caller's thread below
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        for chunk in streamer:
            if chunk:
                yield chunk
        worker.join()
        if failure:
            raise failure[0]

    # ------------------------------------------------------------------ files

    def export_adapter(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write the current policy as one standard PEFT LoRA adapter (exact; see peo_hub.merge)."""
        self._warn_range(self.preference.coefficients)
        return export_adapter(self._bundle, self.preference, out_dir)

    def to_mergekit_config(self, relative_to: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The current policy as a mergekit ``task_arithmetic`` config (dump it with ``yaml``)."""
        return mergekit_config(self._bundle, self.preference.coefficients, relative_to=relative_to)
