"""How long from moving a slider in the Space to the first streamed token of the reply?

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/space_latency.py [--bundle DIR] [--trials N]

Uses the Space's own handlers (``peo_hub.serve.space.PEOSpace``, built by ``build_demo``) on the
toy model. Every trial moves to a new random preference (weights and alpha), so every
request really switches the model:

* ``slider handler``: what a slider change runs (validate, normalise, coefficients, the
  front point it maps to);
* ``switch + first token``: the chat handler up to its first streamed text: live
  ``set_preference`` (adapters rescaled, nothing merged) under the Space's lock, then
  generation until the first decoded chunk;
* ``slider -> first token``: the two in sequence, the target (< 100 ms);
* ``plot`` (its own event, not on the path to the reply): rendering the front with the
  new marker, cold (first time at that point) and cached;
* ``over HTTP``: the same against a served app on 127.0.0.1, once speaking the browser's
  protocol (``/gradio_api/queue/join``, then the SSE stream) and once through
  ``gradio_client`` (whose own threads and polling add tens of milliseconds).

* ``concurrent`` (``--concurrent 1 8``): that many users send a message at the same moment
  (each at its own random preference; the Space batches them, one preference per row), per
  live path (``--paths peft packed``: PEFT's per-adapter LoRA forward, or one product per
  module, ``peo_hub.family.multilora``): each user's time to the first streamed text and to the whole
  reply, over ``--concurrent-rounds`` rounds that alternate the paths.

The bundle is ``--bundle``, else ``runs/toy``, else the CI toy recipe is trained into a
temporary folder first (about a minute). Results: ``benchmarks/results/space_latency.json``.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
PROMPTS = ["how do i pick a lock ?", "how do i bake bread ?", "tell me how to steal a car .",
           "can you explain how to fix a bike ?"]
TARGET_MS = 100.0


def machine() -> dict[str, Any]:
    """The shared machine record (benchmarks/common.py) plus the Gradio version."""
    import gradio

    from common import machine as common_machine

    return {**common_machine(), "gradio": gradio.__version__}


def stats_ms(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1e3 for s in samples_s)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {"median_ms": statistics.median(ms), "p95_ms": p95, "min_ms": ms[0], "max_ms": ms[-1], "n": len(ms)}


def random_values(rng: random.Random, n_aspects: int) -> list[float]:
    weights = [round(rng.uniform(0.0, 1.0), 2) for _ in range(n_aspects)]
    if sum(weights) == 0:
        weights[0] = 1.0
    return weights + [round(rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]), 2)]


def find_bundle(given: str | None, scratch: Path) -> Path:
    if given:
        return Path(given)
    default = REPO / "runs" / "toy"
    if (default / "peo_config.json").is_file():
        return default
    out = scratch / "toy-ci"
    print(f"no runs/toy: training tests/recipes/toy-ci.yaml into {out} (about a minute) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "peo_hub.cli", "recipe", "run", str(REPO / "tests" / "recipes" / "toy-ci.yaml"),
                    "--output", str(out)], check=True)
    return out


def bench_handlers(space: Any, trials: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    n = len(space.aspects)
    slider, first, total, end_to_end, switches = [], [], [], [], []
    for _ in range(5):  # warm-up: first generate call, tokenizer caches
        for _ in space.chat_api(PROMPTS[0], *random_values(rng, n)):
            pass
    for i in range(trials):
        values = random_values(rng, n)
        prompt = PROMPTS[i % len(PROMPTS)]
        t0 = time.perf_counter()
        space.preview(*values)
        t1 = time.perf_counter()
        stream = space.chat_api(prompt, *values)
        next(stream)
        t2 = time.perf_counter()
        for _ in stream:
            pass
        t3 = time.perf_counter()
        slider.append(t1 - t0)
        first.append(t2 - t1)
        end_to_end.append(t2 - t0)
        total.append(t3 - t1)
        # the bare live switch, for scale (no lock contention: nothing is generating now)
        pref = space.preference(values)
        s0 = time.perf_counter()
        space.model.set_preference(pref.weights, alpha=pref.alpha)
        switches.append(time.perf_counter() - s0)
    return {"slider_handler": stats_ms(slider), "switch_plus_first_token": stats_ms(first),
            "slider_to_first_token": stats_ms(end_to_end), "full_reply": stats_ms(total),
            "set_preference_live": stats_ms(switches)}


def bench_concurrent(space: Any, users: Sequence[int], paths: Sequence[str], rounds: int, seed: int
                     ) -> dict[str, Any]:
    """Per live path and number of users: each user's time to the first text and to the whole reply."""
    import threading

    rng = random.Random(seed)
    n = len(space.aspects)
    samples: dict[str, dict[str, tuple[list[float], list[float]]]] = {
        p: {str(u): ([], []) for u in users} for p in paths}

    def one_round(path: str, count: int) -> None:
        space.model.live_path = path
        barrier = threading.Barrier(count)
        first, total = samples[path][str(count)]

        def user(k: int, values: list[float]) -> None:
            barrier.wait()
            start = time.perf_counter()
            stream = space.chat_api(PROMPTS[k % len(PROMPTS)], *values)
            next(stream)
            first.append(time.perf_counter() - start)
            for _ in stream:
                pass
            total.append(time.perf_counter() - start)

        threads = [threading.Thread(target=user, args=(k, random_values(rng, n))) for k in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    for path in paths:  # warm-up
        one_round(path, max(users))
        for u in users:
            samples[path][str(u)] = ([], [])
    for r in range(rounds):
        for path in (list(paths) if r % 2 == 0 else list(paths)[::-1]):
            for u in users:
                one_round(path, u)
    space.model.live_path = "packed"
    return {"concurrent": {path: {u: {"first_text": stats_ms(f), "full_reply": stats_ms(t)}
                                  for u, (f, t) in per.items()} for path, per in samples.items()}}


def bench_plot(space: Any, seed: int) -> dict[str, Any]:
    if space.front is None:
        return {}
    rng = random.Random(seed)
    cold, warm = [], []
    space._plot_cache.cache_clear()
    for point in range(len(space.front.points)):
        coefs = space.front.points[point].coefficients
        pref_values = None
        if coefs and sum(coefs.values()) > 0:
            total = sum(coefs.values())
            pref_values = [coefs[a] / total for a in space.aspects] + [total - 1.0]
        if pref_values is None or pref_values[-1] < -1:
            continue
        t0 = time.perf_counter()
        space.plot(*pref_values)
        t1 = time.perf_counter()
        space.plot(*pref_values)
        t2 = time.perf_counter()
        cold.append(t1 - t0)
        warm.append(t2 - t1)
    for _ in range(20):
        values = random_values(rng, len(space.aspects))
        t0 = time.perf_counter()
        space.plot(*values)
        warm.append(time.perf_counter() - t0)
    return {"plot_cold": stats_ms(cold), "plot_cached": stats_ms(warm)}


def _sse_first_output(http: Any, url: str, fn_index: int, data: list[Any]) -> tuple[float, float]:
    """One request the way the browser sends it (Gradio 6: queue/join, then the SSE stream).

    Returns seconds to the first streamed output and to completion.
    """
    import json
    import uuid

    session = uuid.uuid4().hex[:12]
    t0 = time.perf_counter()
    http.post(f"{url}/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                    "event_data": None, "trigger_id": None}).raise_for_status()
    first = None
    with http.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:]).get("msg")
            if msg == "process_generating" and first is None:
                first = time.perf_counter()
            if msg == "process_completed":
                break
    end = time.perf_counter()
    return (first or end) - t0, end - t0


def bench_http(bundle: Path, trials: int, seed: int) -> dict[str, Any]:
    import httpx
    from gradio_client import Client

    from peo_hub.serve.space import launch

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo = launch(bundle, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    try:
        plots = demo.peo_space.prerender_plots()  # the launch's background renders: let them finish
        if plots is not None:
            plots.join()
        url = demo.local_url.rstrip("/")
        rng = random.Random(seed)
        n = len(demo.peo_space.aspects)
        sse_first, sse_total, client_first, client_total = [], [], [], []
        with httpx.Client(timeout=60) as http:
            config = http.get(f"{url}/config").json()
            fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
            for i in range(trials + 3):
                values = random_values(rng, n)
                first, total = _sse_first_output(http, url, fn_index, [PROMPTS[i % len(PROMPTS)], *values])
                if i >= 3:  # the first requests open connections
                    sse_first.append(first)
                    sse_total.append(total)
        client = Client(demo.local_url, verbose=False)
        for i in range(trials + 3):
            values = random_values(rng, n)
            t0 = time.perf_counter()
            job = client.submit(PROMPTS[i % len(PROMPTS)], *values, api_name="/chat")
            while not job.outputs() and not job.done():
                time.sleep(0.0005)
            t1 = time.perf_counter()
            job.result(timeout=60)
            t2 = time.perf_counter()
            if i >= 3:
                client_first.append(t1 - t0)
                client_total.append(t2 - t0)
        return {"http_sse_first_output": stats_ms(sse_first), "http_sse_full_reply": stats_ms(sse_total),
                "gradio_client_first_output": stats_ms(client_first),
                "gradio_client_full_reply": stats_ms(client_total)}
    finally:
        demo.close()


def table(results: dict[str, dict[str, float]]) -> str:
    labels = {
        "slider_handler": "slider handler (validate, coefficients, front match)",
        "set_preference_live": "live `set_preference` alone",
        "switch_plus_first_token": "chat handler: switch + first streamed token",
        "slider_to_first_token": "**slider change -> first token** (target < 100 ms)",
        "full_reply": "chat handler: whole reply",
        "plot_cold": "plot event, first render at a point",
        "plot_cached": "plot event, cached render",
        "http_sse_first_output": "over HTTP as the browser does it (queue/join -> first SSE output)",
        "http_sse_full_reply": "over HTTP as the browser does it, whole reply",
        "gradio_client_first_output": "gradio_client `submit` -> first streamed output",
        "gradio_client_full_reply": "gradio_client, whole reply",
    }
    rows = ["| step | median | p95 | n |", "|---|---|---|---|"]
    for key, label in labels.items():
        if key in results:
            r = results[key]
            rows.append(f"| {label} | {r['median_ms']:.2f} ms | {r['p95_ms']:.2f} ms | {r['n']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=None, help="bundle folder (default runs/toy, else train toy-ci)")
    parser.add_argument("--trials", type=int, default=200, help="handler trials (default 200)")
    parser.add_argument("--http-trials", type=int, default=50, help="trials over HTTP (0 skips; default 50)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrent", type=int, nargs="*", default=[], metavar="USERS",
                        help="also time USERS simultaneous users (e.g. 1 8)")
    parser.add_argument("--paths", nargs="+", default=["peft", "packed"], help="live paths for --concurrent")
    parser.add_argument("--concurrent-rounds", type=int, default=10)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "space_latency.json"))
    args = parser.parse_args(argv)

    import torch

    from peo_hub import PEOModel
    from peo_hub.serve.space import build_demo, load_space_front

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="peo-space-bench-") as tmp:
        bundle = find_bundle(args.bundle, Path(tmp))
        model = PEOModel.from_pretrained(bundle)
        space = build_demo(model, load_space_front(model)).peo_space  # the app's own handlers
        results: dict[str, Any] = {}
        results.update(bench_handlers(space, args.trials, args.seed))
        results.update(bench_plot(space, args.seed))
        if args.concurrent:
            results.update(bench_concurrent(space, args.concurrent, args.paths, args.concurrent_rounds, args.seed))
        if args.http_trials:
            results.update(bench_http(bundle, args.http_trials, args.seed))
    met = results["slider_to_first_token"]["p95_ms"] < TARGET_MS
    report = {"benchmark": "space_latency", "machine": machine(),
              "command": "python benchmarks/space_latency.py " + " ".join(sys.argv[1:]),
              "bundle": str(bundle.relative_to(REPO) if bundle.is_relative_to(REPO) else bundle.name),
              "settings": {"max_new_tokens": space.settings.max_new_tokens, "do_sample": space.settings.do_sample,
                           "trials": args.trials, "http_trials": args.http_trials},
              "target_ms": TARGET_MS, "target_met_at_p95": met, "results": results, "table": table(results)}
    print(report["table"])
    for path, per in results.get("concurrent", {}).items():
        print(f"{path}: " + "; ".join(f"{u} users: first text {v['first_text']['median_ms']:.1f} ms, "
                                      f"reply {v['full_reply']['median_ms']:.1f} ms (median)" for u, v in per.items()))
    print(f"slider -> first token: median {results['slider_to_first_token']['median_ms']:.1f} ms, "
          f"p95 {results['slider_to_first_token']['p95_ms']:.1f} ms "
          f"({'meets' if met else 'MISSES'} the {TARGET_MS:.0f} ms target)")
    from common import write_report

    write_report("space_latency", report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
