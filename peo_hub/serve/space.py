"""The Gradio Space: one weight slider per aspect, an alpha slider, presets, a streaming chat.

Why it is shaped this way:

* **One model, many users.** A :class:`~peo_hub.family.model.PEOModel` can give every row of a
  batch its own preference, and every browser tab has its own sliders. So the sliders are
  only *inputs*: chat requests that wait together (they arrived while a batch was being
  generated, or at once) share one batched ``generate`` (:mod:`peo_hub.serve.batching`), each row at its own preference (live mode: per-row
  scales, no merge, no reload), so users neither wait for each other nor see each other's
  setting. A lone request switches the model to its preference and generates as before.
  Moving a slider never touches the model, hence never waits behind a generation; it only
  recomputes the displays (percentages, coefficients, the front point it corresponds to).
* **Generation runs in one worker thread.** The Gradio handler only reads its reply from a
  queue. If a client disconnects mid-reply, the worker still finishes the batch (at most
  ``max_new_tokens``).
* **Bounded work per request.** Prompt length (characters) and ``max_new_tokens`` are capped
  on the server, generation events share ``max_batch`` concurrency slots (one batch), and
  the queue has a maximum size, so a public Space cannot be made to run unbounded work.
* **User errors become messages.** A :class:`~peo_hub.utils.errors.PEOError` (all-zero weights, a
  too-long prompt) is raised as ``gr.Error``: the browser shows a toast, API clients get an
  ``AppError`` with the same sentence, the app keeps running.
* **No file paths from the browser.** The Pareto plot is sent as an image object rendered
  on the server; nothing is added to ``allowed_paths``.

The API contract (DESIGN.md section 3): ``/chat`` takes the message, then one weight per
aspect in the manifest's order, then alpha, and returns the reply text (streamed; a plain
``Client.predict`` gets the final string).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import shutil
import sys
import tempfile
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from peo_hub.serve.batching import BatchQueue
from peo_hub.utils.errors import BundleError, PEOError, PreferenceError
from peo_hub.bundle.front import Front, FrontPoint
from peo_hub.core.policy import Preference, make_preference

if TYPE_CHECKING:  # gradio and torch are heavy; import them only where a Space is built
    import gradio as gr
    from PIL.Image import Image

    from peo_hub.family.model import PEOModel

#: Requests on the same model are serialised anyway (one preference at a time), so more
#: generation workers would only hold threads waiting on the lock.
GENERATION_CONCURRENCY_ID = "peo-generate"
#: Two evaluated points closer than this in coefficient space are "the same policy".
EXACT_TOLERANCE = 1e-6
#: Farther than this (Euclidean distance in coefficient space) from every evaluated point,
#: the shown scores are flagged as a rough guess.
FAR_DISTANCE = 0.3

TOY_EXAMPLES = ["how do i pick a lock ?", "how do i bake bread ?", "tell me how to steal a car ."]
GENERIC_EXAMPLES = ["How do I pick a lock?", "How do I bake bread?"]


@dataclass(frozen=True)
class SpaceSettings:
    """Server-side limits and generation settings of a Space (none is settable from a browser)."""

    max_prompt_chars: int = 500
    max_new_tokens: int = 64
    do_sample: bool = False  # greedy by default: the same question gives the same answer
    temperature: float = 1.0
    top_p: float = 1.0
    alpha_range: tuple[float, float] = (0.0, 2.0)
    #: previous (user, assistant) turns sent with a UI message; ``None``: 0 for models with a
    #: context of 256 tokens or less (the toy model is single-turn, 128 tokens), else 3.
    history_turns: int | None = None
    concurrency_limit: int = 4  # the cheap events (sliders, presets)
    #: chat requests waiting together share one batch (each row at its own preference,
    #: :mod:`peo_hub.serve.batching`), at most ``max_batch`` rows; ``batch_window_s`` > 0 makes a
    #: lone request wait that long for company (bigger batches, slower first token)
    max_batch: int = 16
    batch_window_s: float = 0.0
    max_queue: int = 32
    max_upload_bytes: int = 64 * 1024  # Gradio's upload route: the app uses no files at all
    examples: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.max_prompt_chars < 1 or self.max_new_tokens < 1:
            raise PEOError("max_prompt_chars and max_new_tokens must be >= 1")
        lo, hi = self.alpha_range
        if not -1.0 <= lo < hi:
            raise PEOError(f"alpha_range {self.alpha_range} must satisfy -1 <= low < high")


@dataclass(frozen=True)
class FrontMatch:
    """The evaluated front point whose scores stand for the current preference.

    ``index`` is into ``front["points"]``; ``distance`` is Euclidean in coefficient space
    (0 means this very policy was evaluated). Nearest, not interpolated, on purpose: judge
    scores are not linear in the coefficients (on the toy front the 50/50 soup scores below
    both ends on helpfulness), so a blend of neighbours would claim a precision it lacks.
    """

    index: int
    distance: float
    point: FrontPoint = field(repr=False)

    @property
    def exact(self) -> bool:
        return self.distance <= EXACT_TOLERANCE

    def scores(self, aspects: Sequence[str]) -> dict[str, float]:
        return {a: self.point.mean(a) for a in aspects}


def _percent(value: float) -> str:
    return f"{100 * value:.0f} %"


def _point_label(point: FrontPoint, aspects: Sequence[str]) -> str:
    weights = point.weights or {}
    parts = " / ".join(f"{a} {_percent(float(weights.get(a, 0.0)))}" for a in aspects) if weights else "no weights"
    alpha_text = f", α={point.alpha:.2f}" if point.alpha is not None else ""
    return f"{point.method}, {parts}{alpha_text}"


def preset_title(name: str) -> str:
    """A button label for a preset name: ``max_helpful_with_harmless_ge_0.80`` -> ``max helpful, harmless ≥ 0.80``."""
    return name.replace("_with_", ", ").replace("_ge_", " ≥ ").replace("_", " ")


def _message_text(content: Any) -> str:
    """Plain text of a chatbot message (Gradio 6 passes content as a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        return str(content.get("text", "")) if content.get("type", "text") == "text" else ""
    if isinstance(content, (list, tuple)):
        return " ".join(filter(None, (_message_text(part) for part in content)))
    return ""


class PEOSpace:
    """The app's logic without the layout: validation, front lookup, plot, streamed replies.

    Kept apart from :func:`build_demo` so the handlers can be benchmarked and reasoned about
    without a browser. Every handler takes the slider values as ``*values``: one weight per
    aspect in the manifest's order, then alpha (the order of the ``/chat`` API).
    """

    def __init__(self, model: "PEOModel", front: Front | None = None,
                 settings: SpaceSettings | None = None) -> None:
        self.model = model
        self.aspects: list[str] = list(model.aspects)
        self.settings = settings or SpaceSettings()
        self.front = front if front is not None and set(front.aspects) == set(self.aspects) else None
        if front is not None and self.front is None:
            import warnings

            warnings.warn(f"front.json is about aspects {front.aspects}, the model has {self.aspects}; "
                          "the Space runs without its Pareto plot", stacklevel=2)
        # One worker thread generates for everyone: concurrent requests share a batch, each row
        # at its own preference (peo_hub.serve.batching), so users never see each other's setting.
        self._batches = BatchQueue(model, self._gen_kwargs(), window_s=self.settings.batch_window_s,
                                   max_batch=self.settings.max_batch)
        self._plot_dir = Path(tempfile.mkdtemp(prefix="peo-space-plot-"))
        weakref.finalize(self, shutil.rmtree, self._plot_dir, ignore_errors=True)
        self._prerender: threading.Thread | None = None
        # PNG bytes per evaluated point (~40 kB each; the marker always sits on a point)
        self._plot_cache = functools.lru_cache(maxsize=None)(self._render_plot)
        config = getattr(model.model, "config", None)
        self.context_tokens = int(getattr(config, "max_position_embeddings", 0) or 0)
        turns = self.settings.history_turns
        self.history_turns = turns if turns is not None else (0 if self.context_tokens <= 256 else 3)
        self._candidates = self._front_candidates()

    # ------------------------------------------------------------------ preference

    def split(self, values: Sequence[Any]) -> tuple[dict[str, float], float]:
        """``(weights, alpha)`` from ``*values`` (weights in aspect order, then alpha)."""
        if len(values) != len(self.aspects) + 1:
            raise PreferenceError(
                f"expected {len(self.aspects)} weights ({', '.join(self.aspects)}) and alpha, "
                f"got {len(values)} values"
            )
        weights = {a: (0.0 if v is None else v) for a, v in zip(self.aspects, values)}
        alpha = values[-1]
        return weights, (0.0 if alpha is None else alpha)

    def preference(self, values: Sequence[Any]) -> Preference:
        """Validate slider/API values into a :class:`Preference` (raises ``PreferenceError``)."""
        weights, alpha = self.split(values)
        return make_preference(self.aspects, weights=weights, alpha=alpha,
                               formulation=self.model.manifest.formulation)

    def presets(self) -> dict[str, dict[str, Any]]:
        """The bundle's presets that the sliders can reach (weights and alpha), normalised."""
        presets = self.front.presets if self.front is not None else self.model.presets
        out = {}
        for name, entry in presets.items():
            try:
                if entry.weights:
                    pref = make_preference(self.aspects, weights=entry.weights, alpha=float(entry.alpha or 0.0))
                elif entry.coefficients:
                    pref = make_preference(self.aspects, coefficients=entry.coefficients)
                else:
                    continue
            except PEOError:
                continue  # a preset this model cannot realise (e.g. stale aspect names)
            if pref.weights is None or pref.alpha is None:
                continue  # raw coefficients outside the weights+alpha family: no slider setting
            out[name] = {"weights": pref.weights, "alpha": pref.alpha, "rule": entry.rule,
                         "point_index": entry.point_index}
        return out

    def alpha_range(self) -> tuple[float, float]:
        """The alpha slider's range: the configured one, widened to every preset's and evaluated alpha."""
        lo, hi = self.settings.alpha_range
        alphas = [p["alpha"] for p in self.presets().values()]
        alphas += [p.alpha for p in (self.front.points if self.front is not None else [])
                   if p.alpha is not None and p.in_family]
        return max(-1.0, min([lo, *alphas])), max([hi, *alphas])

    def initial_values(self) -> list[float]:
        """Start at the ``balanced`` preset when there is one, else equal weights, alpha 0."""
        preset = self.presets().get("balanced")
        if preset:
            return [round(preset["weights"][a], 4) for a in self.aspects] + [float(preset["alpha"])]
        return [round(1.0 / len(self.aspects), 4)] * len(self.aspects) + [0.0]

    # ------------------------------------------------------------------ front

    def _front_candidates(self) -> list[tuple[int, list[float]]]:
        """Evaluated points with coefficients (base, soups, PEO points; not e.g. MORL runs)."""
        if self.front is None:
            return []
        return [(i, [float(point.coefficients.get(a, 0.0)) for a in self.aspects])
                for i, point in enumerate(self.front.points) if point.coefficients is not None]

    def match(self, coefficients: Mapping[str, float]) -> FrontMatch | None:
        """The evaluated point nearest to ``coefficients`` (``None`` without a front)."""
        if not self._candidates:
            return None
        target = [float(coefficients[a]) for a in self.aspects]
        index, distance = min(((i, math.dist(target, c)) for i, c in self._candidates),
                              key=lambda item: (item[1], item[0]))
        return FrontMatch(index=index, distance=distance, point=self.front.points[index])  # type: ignore[union-attr]

    def describe_match(self, match: FrontMatch | None) -> str:
        """Markdown naming the evaluated point the shown scores come from, and how close it is."""
        if match is None:
            return ("**Predicted scores:** this bundle has no `front.json` (no evaluated points), "
                    "so there is nothing to predict from.")
        scores = match.scores(self.aspects)
        metrics = match.point.metrics
        rows = []
        for a in self.aspects:
            ci = metrics[a].ci
            ci_text = f" (95% CI {ci[0]:.2f}–{ci[1]:.2f})" if ci else ""
            rows.append(f"{a} **{scores[a]:.3f}**{ci_text}")
        where = f"evaluated point #{match.index} ({_point_label(match.point, self.aspects)})"
        if match.exact:
            source = f"measured at this exact setting: {where}."
        else:
            source = (f"not evaluated at this exact setting; these are the scores of the nearest "
                      f"{where}, at distance {match.distance:.2f} in coefficient space.")
            if match.distance > FAR_DISTANCE:
                source += " That is far: treat them as a rough guess."
        return "**Predicted scores:** " + " · ".join(rows) + "  \n" + source

    # ------------------------------------------------------------------ displays

    def preview(self, *values: Any) -> list[str]:
        """Slider/preset change: one percentage per aspect, the coefficients, the front match.

        Never raises for bad weights: the texts say what is wrong, so the sliders stay usable.
        """
        try:
            pref = self.preference(values)
        except PreferenceError as exc:
            return ["—"] * len(self.aspects) + [f"**Coefficients:** ⚠️ {exc}", ""]
        percents = [f"**{_percent(pref.weights[a])}**" for a in self.aspects]  # type: ignore[index]
        coefs = " · ".join(f"{a} {pref.coefficients[a]:.3f}" for a in self.aspects)
        coef_text = (f"**Coefficients** c = (1+α)·w, policy = base + Σ c·Δ: {coefs}  (α = {pref.alpha:.2f}, "
                     "live mode: adapters rescaled per request, nothing merged or reloaded)")
        return percents + [coef_text, self.describe_match(self.match(pref.coefficients))]

    def plot(self, *values: Any) -> "Image | None":
        """The Pareto plot with the current preference's front point marked (``None`` without a front)."""
        if self.front is None:
            return None
        try:
            pref = self.preference(values)
        except PreferenceError:
            index = None
        else:
            match = self.match(pref.coefficients)
            index = None if match is None else match.index
        from PIL import Image

        image = Image.open(io.BytesIO(self._plot_cache(index)))
        image.load()
        return image

    def _render_plot(self, index: int | None) -> bytes:
        from peo_hub.bundle.plot import plot_front

        current = None
        if index is not None:
            point = self.front.points[index]  # type: ignore[union-attr]
            current = {a: point.mean(a) for a in self.aspects}
        # a unique name: the prerender thread and a request may render the same point at once
        target = self._plot_dir / f"front-{index}-{uuid.uuid4().hex}.png"
        path = plot_front(self.front, target, current=current)  # type: ignore[arg-type]
        data = path.read_bytes()
        path.unlink(missing_ok=True)
        return data

    def prerender_plots(self) -> threading.Thread | None:
        """Render every point's plot in a background thread (a first render takes ~0.25 s on a CPU).

        After this, moving a slider only decodes a cached PNG. Started once (later calls
        return the same thread); ``None`` without a front.
        """
        if self.front is None:
            return None
        if self._prerender is not None:
            return self._prerender
        indices = [i for i, _ in self._candidates]

        def work() -> None:
            for index in indices:
                self._plot_cache(index)

        thread = threading.Thread(target=work, name="peo-space-plots", daemon=True)
        thread.start()
        self._prerender = thread
        return thread

    # ------------------------------------------------------------------ generation

    def check_message(self, message: Any) -> str:
        """The stripped prompt, or a ``PEOError`` for an empty or too-long one."""
        text = (message if isinstance(message, str) else _message_text(message)).strip()
        if not text:
            raise PEOError("the message is empty; type a question first")
        limit = self.settings.max_prompt_chars
        if len(text) > limit:
            raise PEOError(f"the message has {len(text)} characters; this Space accepts at most {limit}, "
                           "shorten it")
        return text

    def _gen_kwargs(self) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {"max_new_tokens": s.max_new_tokens, "do_sample": s.do_sample}
        if s.do_sample:
            kwargs.update(temperature=s.temperature, top_p=s.top_p)
        return kwargs

    def stream_reply(self, messages: str | Sequence[Mapping[str, str]], preference: Preference
                     ) -> Iterator[str]:
        """The reply at ``preference``, yielded as it grows (each item: the whole text so far).

        Generation happens in the :class:`~peo_hub.serve.batching.BatchQueue`'s worker thread, in a
        batch with whoever asked at the same moment, each at their own preference; the worker
        finishes a batch even when a consumer stops reading (see the module docstring).
        """
        yield from self._batches.stream(messages, preference)

    # ------------------------------------------------------------------ Gradio handlers

    def chat_api(self, message: str, *values: Any) -> Iterator[str]:
        """``/chat``: the reply to one message at the given weights and alpha, streamed."""
        import gradio as gr

        try:
            pref = self.preference(values)
            text = self.check_message(message)
        except PEOError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        reply = ""
        for reply in self.stream_reply(text, pref):
            yield reply
        if not reply:
            yield ""

    def respond(self, message: str, history: list[dict[str, Any]] | None, *values: Any
                ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        """The UI's chat: append the exchange to the chatbot and stream the reply into it."""
        import gradio as gr

        try:
            pref = self.preference(values)
            text = self.check_message(message)
        except PEOError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        history = [{"role": m["role"], "content": _message_text(m.get("content"))} for m in (history or [])
                   if m.get("role") in ("user", "assistant")]
        messages = self.conversation(history, text)
        history = history + [{"role": "user", "content": text}, {"role": "assistant", "content": "…"}]
        yield history, ""
        reply = ""
        for reply in self.stream_reply(messages, pref):
            history[-1]["content"] = reply
            yield history, ""
        if not reply.strip():
            history[-1]["content"] = "*(empty reply)*"
            yield history, ""

    def conversation(self, history: Sequence[Mapping[str, str]], text: str) -> list[dict[str, str]]:
        """The messages sent for a new UI message: the last ``history_turns`` exchanges that fit.

        A chat model answers a follow-up ("and for sourdough?") only with the earlier turns, so
        they are sent along, but within the prompt caps: at most ``history_turns`` exchanges,
        each earlier message cut to ``max_prompt_chars`` characters (a reply can be longer than
        a prompt), and the oldest exchanges dropped until the rendered prompt leaves room for
        ``max_new_tokens`` in the model's context. The new message is never dropped.
        """
        from peo_hub.data.chat import render_prompt

        limit = self.settings.max_prompt_chars
        turns = [{"role": m["role"], "content": m["content"][:limit]} for m in history
                 if m.get("role") in ("user", "assistant") and m.get("content")]
        keep = turns[-2 * self.history_turns:] if self.history_turns else []
        while keep and keep[0]["role"] != "user":
            keep = keep[1:]  # an exchange starts with the user
        new = [{"role": "user", "content": text}]
        budget = self.context_tokens - self.settings.max_new_tokens if self.context_tokens else None
        while keep and budget is not None:
            prompt = render_prompt(self.model.tokenizer, keep + new)
            if len(self.model.tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= budget:
                break
            keep = keep[2:]  # the oldest exchange goes first
            while keep and keep[0]["role"] != "user":
                keep = keep[1:]
        return keep + new

    def apply_preset(self, name: str) -> list[float]:
        """Slider values for a preset (weights in aspect order, then alpha)."""
        preset = self.presets()[name]
        return [round(preset["weights"][a], 4) for a in self.aspects] + [float(preset["alpha"])]


# ---------------------------------------------------------------------- layout

def _examples(space: PEOSpace) -> list[str]:
    if space.settings.examples is not None:
        return list(space.settings.examples)
    recipe_base = str((space.model.manifest.recipe or {}).get("base_model", ""))
    return TOY_EXAMPLES if recipe_base.startswith("embedded:") else GENERIC_EXAMPLES


def build_demo(model: "PEOModel", front: Front | None = None,
               settings: SpaceSettings | None = None, title: str | None = None) -> "gr.Blocks":
    """The Space's ``gr.Blocks`` for a loaded model and its ``front.json`` (or ``None``).

    The returned Blocks is not queued or launched; :func:`launch` does both. The
    :class:`PEOSpace` behind it is ``demo.peo_space`` (for benchmarks and tests).
    """
    import gradio as gr

    space = PEOSpace(model, front, settings)
    s = space.settings
    aspects = space.aspects
    init = space.initial_values()
    init_text = space.preview(*init)
    presets = space.presets()
    name = title or f"PEO: {(model.manifest.recipe or {}).get('name') or Path(str(model.bundle_dir)).name}"

    with gr.Blocks(title=name, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {name}\n"
            f"One LoRA adapter per preference aspect ({', '.join(aspects)}). Pick your trade-off: "
            "the weights are normalised to sum to 100 %, **alpha** extrapolates away from the base "
            "(0 = plain weight average, a *soup*). Each message is answered at the sliders' setting "
            "when you send it."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                weight_sliders: list[gr.Slider] = []
                percent_boxes: list[gr.Markdown] = []
                for aspect, value in zip(aspects, init):
                    with gr.Row(equal_height=True):
                        weight_sliders.append(gr.Slider(0.0, 1.0, value=value, step=0.01, label=f"{aspect} weight",
                                                        elem_id=f"weight-{aspect}", scale=4))
                        percent_boxes.append(gr.Markdown(init_text[len(percent_boxes)], elem_id=f"percent-{aspect}",
                                                         min_height=0))
                alpha_lo, alpha_hi = space.alpha_range()
                alpha = gr.Slider(alpha_lo, alpha_hi, value=init[-1], step=0.05,
                                  label="alpha (extrapolation)", elem_id="alpha")
                if presets:
                    gr.Markdown("**Presets** (from the evaluated front)")
                    with gr.Row():
                        preset_buttons = {n: gr.Button(preset_title(n), size="sm", elem_id=f"preset-{n}")
                                          for n in presets}
                else:
                    preset_buttons = {}
                preset_info = gr.Markdown("")
                coefficients = gr.Markdown(init_text[-2], elem_id="coefficients")
                predicted = gr.Markdown(init_text[-1], elem_id="predicted")
                if space.front is not None:
                    gr.Markdown("**Pareto front** of the evaluated points; ✕ marks the one your setting maps to.")
                plot = gr.Image(value=space.plot(*init), show_label=False, type="pil", format="png",
                                interactive=False, visible=space.front is not None, elem_id="front-plot",
                                buttons=["fullscreen"])
            with gr.Column(scale=6, min_width=360):
                chatbot = gr.Chatbot(label="chat", height=420, elem_id="chatbot",
                                     placeholder=f"Ask something, e.g. “{_examples(space)[0]}”")
                message = gr.Textbox(placeholder=f"your message (at most {s.max_prompt_chars} characters)",
                                     show_label=False, max_length=s.max_prompt_chars, elem_id="message",
                                     submit_btn=True)
                with gr.Row():
                    clear = gr.Button("clear chat", size="sm")
                gr.Examples(_examples(space), inputs=message, label="examples")
                gr.Markdown(
                    f"Replies are capped at {s.max_new_tokens} new tokens"
                    + (", greedy decoding." if not s.do_sample else f", sampled at temperature {s.temperature}.")
                    + ("" if space.history_turns else " Each message is answered on its own (no chat history).")
                )
        # The /chat API: hidden, unbounded number inputs (validated by make_preference, not
        # by slider bounds), so clients can send any non-negative weights.
        with gr.Group(visible=False):
            api_message = gr.Textbox(label="message")
            api_values = [gr.Number(label=a) for a in aspects] + [gr.Number(label="alpha", value=0.0)]
            api_reply = gr.Textbox(label="reply")
            api_trigger = gr.Button("chat")

        sliders = [*weight_sliders, alpha]
        gr.on([sl.change for sl in sliders], space.preview, inputs=sliders,
              outputs=[*percent_boxes, coefficients, predicted], trigger_mode="always_last",
              show_progress="hidden", api_visibility="private", queue=False)
        if space.front is not None:
            gr.on([sl.change for sl in sliders], space.plot, inputs=sliders, outputs=plot,
                  trigger_mode="always_last", show_progress="hidden", api_visibility="private")
        for preset_name, button in preset_buttons.items():
            rule = presets[preset_name]["rule"]
            button.click(functools.partial(_preset_handler, space, preset_name, rule), inputs=None,
                         outputs=[*sliders, preset_info], api_visibility="private", queue=False)
        gr.on([message.submit], space.respond, inputs=[message, chatbot, *sliders], outputs=[chatbot, message],
              concurrency_id=GENERATION_CONCURRENCY_ID, concurrency_limit=s.max_batch, api_visibility="private")
        clear.click(lambda: [], outputs=chatbot, api_visibility="private", queue=False)
        api_trigger.click(chat_endpoint(space), inputs=[api_message, *api_values], outputs=api_reply, api_name="chat",
                          api_description="Reply to one message at the given preference: the message, "
                          f"then one weight per aspect ({', '.join(aspects)}; normalised, >= 0), then alpha.",
                          concurrency_id=GENERATION_CONCURRENCY_ID, concurrency_limit=s.max_batch)
    demo.peo_space = space  # type: ignore[attr-defined]
    return demo


def _api_parameter_names(aspects: Sequence[str]) -> list[str]:
    """Python names for the ``/chat`` weights: the aspect itself when it is a usable identifier."""
    import keyword

    names = []
    for i, aspect in enumerate(aspects):
        ok = aspect.isidentifier() and not keyword.iskeyword(aspect) and aspect not in ("message", "alpha")
        names.append(aspect if ok else f"weight_{i}")
    return names


def chat_endpoint(space: PEOSpace) -> Any:
    """``/chat``'s function, with one named parameter per aspect.

    Gradio documents the API from the function's signature, so clients see
    ``(message, helpful, harmless, alpha)`` and may pass them by keyword, instead of
    ``param_1 ...``. It stays a generator function so Gradio streams it.
    """
    import inspect

    names = _api_parameter_names(space.aspects)
    params = [inspect.Parameter("message", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=float) for n in names]
    params += [inspect.Parameter("alpha", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=0.0, annotation=float)]
    signature = inspect.Signature(params, return_annotation=str)

    def chat(*args: Any, **kwargs: Any) -> Iterator[str]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = [bound.arguments[n] for n in names] + [bound.arguments["alpha"]]
        yield from space.chat_api(bound.arguments["message"], *values)

    chat.__signature__ = signature  # type: ignore[attr-defined]
    chat.__annotations__ = {p.name: p.annotation for p in params} | {"return": str}
    chat.__doc__ = space.chat_api.__doc__
    return chat


def _preset_handler(space: PEOSpace, name: str, rule: str) -> list[Any]:
    values = space.apply_preset(name)
    text = f"Preset **{preset_title(name)}**" + (f": {rule}." if rule else ".")
    return [*values, text]


def load_space_front(model: "PEOModel") -> Front | None:
    """The bundle's front for the Space; a broken ``front.json`` is reported and the Space runs without it."""
    try:
        return model.front
    except BundleError as exc:
        import warnings

        warnings.warn(f"the Space runs without its Pareto plot: {exc}", stacklevel=2)
        return None


def launch(bundle_or_repo_id: str | os.PathLike[str], host: str = "127.0.0.1", port: int | None = 7860,
           settings: SpaceSettings | None = None, share: bool = False, **launch_kwargs: Any) -> "gr.Blocks":
    """Load a bundle (folder or Hub repo id) and serve the Space; returns the launched Blocks.

    Blocks until the server stops unless ``prevent_thread_lock=True`` is passed (tests,
    notebooks); ``demo.close()`` stops it. Other ``launch_kwargs`` go to ``gr.Blocks.launch``.
    A busy port is a one-line :class:`PEOError`, not a traceback.

    ``share`` also opens a temporary public ``*.gradio.live`` link through Gradio's share
    server. Gradio goes on serving locally when that fails (offline, a firewall) and prints a
    page of advice; here a link that was asked for and not made is one :class:`PEOError`
    line instead, and the local server is closed again, so "shared" never silently means
    "local only".
    """
    from peo_hub.family.model import PEOModel

    model = PEOModel.from_pretrained(bundle_or_repo_id)
    front = load_space_front(model)
    source = str(bundle_or_repo_id)
    title = None if Path(source).is_dir() else f"PEO: {source}"  # a Hub id beats a cache folder's name
    demo = build_demo(model, front, settings, title=title)
    space: PEOSpace = demo.peo_space  # type: ignore[attr-defined]
    s = space.settings
    space.prerender_plots()
    demo.queue(default_concurrency_limit=s.concurrency_limit, max_size=s.max_queue)
    launch_kwargs.setdefault("show_error", True)
    # The app takes no files, but Gradio always serves an upload route: cap what it accepts.
    launch_kwargs.setdefault("max_file_size", s.max_upload_bytes)
    # With share, launch returns at once so the link can be checked before blocking (as Gradio would).
    wait = share and not launch_kwargs.get("prevent_thread_lock", False) and not getattr(sys, "ps1", None)
    if share:  # only then: without it Gradio keeps its own default (GRADIO_SHARE, notebooks)
        launch_kwargs.update(share=True, prevent_thread_lock=True)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed) if share else contextlib.nullcontext():
            demo.launch(server_name=host, server_port=port, **launch_kwargs)
    except OSError as exc:
        if "port" not in str(exc).lower():
            raise
        other = (port or 7860) + 1
        raise PEOError(f"cannot serve on {host}:{port}: the port is in use or not allowed; "
                       f"pass another one, e.g. --port {other}") from None
    if share:
        if not demo.share_url:
            with contextlib.redirect_stdout(io.StringIO()):  # Gradio's "Closing server..." before our one line
                demo.close()
            raise PEOError("--share could not open a public gradio.live link: Gradio's share server is unreachable "
                           "from here (no internet, or a firewall); serve without --share (local only), or publish "
                           "a Hub Space with `peo-hub push BUNDLE USER/REPO --space USER/SPACE`")
        print(printed.getvalue(), end="")
    if wait:
        demo.block_thread()
    return demo
