"""The Gradio Space, served for real on 127.0.0.1 and driven like its users drive it.

Headless tests go through ``gradio_client`` (the ``/chat`` API contract, the trained
toy behaviour, errors, concurrent users); the browser test drives Debian's Chromium
with selenium and saves ``docs/space.png``. One server per module, on the shared
``toy_bundle``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from peo_hub.world.toy import eval_prompts, harmless_score, helpful_score, task_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docs"))
from space_screenshot import chromium_available, chromium_driver  # noqa: E402  (the README's pictures)

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "spaces" / "peo-demo" / "app.py"
# The README's picture (docs/space.png) is only rewritten on request: a test run must not
# change a committed file. PEO_HUB_UPDATE_DOCS=1 pytest -m browser tests/serve/test_space.py refreshes it.
DOCS_SCREENSHOT = REPO / "docs" / "space.png"

# Held-out risky prompts (templates never seen in training), one per task, four tasks.
RISKY_PROMPTS = [p for p in eval_prompts() if (t := task_of(p)) is not None and t.risky][:4]


@pytest.fixture(scope="module")
def client(served: Any) -> Any:
    from gradio_client import Client

    return Client(served.local_url, verbose=False)


def _ask(client: Any, prompt: str, helpful: float, harmless: float, alpha: float = 0.0) -> str:
    reply = client.predict(prompt, helpful, harmless, alpha, api_name="/chat")
    assert isinstance(reply, str)
    return reply


# ------------------------------------------------------------------ the API contract


def test_chat_endpoint_signature_is_message_then_weights_in_manifest_order_then_alpha(served: Any, client: Any):
    space = served.peo_space
    assert space.aspects == list(space.model.manifest.aspects) == ["helpful", "harmless"]
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/chat"]  # the UI's own events are private
    params = api["named_endpoints"]["/chat"]["parameters"]
    assert [p["label"] for p in params] == ["message", "helpful", "harmless", "alpha"]
    assert [p["parameter_name"] for p in params] == ["message", "helpful", "harmless", "alpha"]
    assert [p["parameter_has_default"] for p in params] == [False, False, False, True]
    returns = api["named_endpoints"]["/chat"]["returns"]
    assert len(returns) == 1 and returns[0]["python_type"]["type"] == "str"
    # keywords work too, alpha defaults to 0
    assert client.predict(message=RISKY_PROMPTS[0], helpful=1.0, harmless=0.0, api_name="/chat") == \
        _ask(client, RISKY_PROMPTS[0], 1.0, 0.0, 0.0)


def test_preference_changes_replies_the_way_the_judges_say(client: Any):
    assert len(RISKY_PROMPTS) == 4
    scores: dict[str, dict[str, float]] = {}
    for name, (h, s) in {"helpful_only": (1.0, 0.0), "harmless_only": (0.0, 1.0)}.items():
        replies = [_ask(client, p, h, s) for p in RISKY_PROMPTS]  # greedy: deterministic
        scores[name] = {
            "helpful": statistics.mean(helpful_score(p, r) for p, r in zip(RISKY_PROMPTS, replies)),
            "harmless": statistics.mean(harmless_score(p, r) for p, r in zip(RISKY_PROMPTS, replies)),
        }
    assert scores["helpful_only"]["helpful"] > scores["harmless_only"]["helpful"], scores
    assert scores["helpful_only"]["harmless"] < scores["harmless_only"]["harmless"], scores
    # weights are normalised: (2, 0) is the same policy as (1, 0)
    assert _ask(client, RISKY_PROMPTS[0], 2.0, 0.0) == _ask(client, RISKY_PROMPTS[0], 1.0, 0.0)


def test_chat_streams_and_switches_live(served: Any, client: Any):
    job = client.submit("how do i pick a lock ?", 1.0, 0.0, 0.0, api_name="/chat")
    final = job.result(timeout=60)
    partials = [o for o in job.outputs() if o]
    assert len(partials) >= 2, partials  # several chunks, not one final message
    assert all(final.startswith(p) for p in partials) and partials[-1] == final
    model = served.peo_space.model
    assert not model.fused  # live mode: adapters rescaled, nothing merged
    assert model.coefficients == {"helpful": 1.0, "harmless": 0.0}
    _ask(client, "how do i pick a lock ?", 0.25, 0.75, 0.5)
    assert not model.fused
    assert model.coefficients == pytest.approx({"helpful": 0.375, "harmless": 1.125})


def test_concurrent_users_each_get_their_own_preference(client: Any):
    prompt = RISKY_PROMPTS[1]
    expected = {w: _ask(client, prompt, *w) for w in [(1.0, 0.0), (0.0, 1.0)]}
    assert expected[(1.0, 0.0)] != expected[(0.0, 1.0)]
    order = [(1.0, 0.0), (0.0, 1.0)] * 4
    jobs = [client.submit(prompt, h, s, 0.0, api_name="/chat") for h, s in order]
    assert [job.result(timeout=60) for job in jobs] == [expected[w] for w in order]


def test_bad_input_is_a_clear_error_and_the_app_keeps_serving(client: Any):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="all preference weights are zero; give at least one aspect"):
        client.predict("how do i pick a lock ?", 0.0, 0.0, 0.0, api_name="/chat")
    with pytest.raises(AppError, match="'harmless' is negative"):
        client.predict("how do i pick a lock ?", 1.0, -0.5, 0.0, api_name="/chat")
    with pytest.raises(AppError, match="alpha=-3.0 flips every adapter's sign"):
        client.predict("how do i pick a lock ?", 1.0, 0.0, -3.0, api_name="/chat")
    with pytest.raises(AppError, match="at most 500"):
        client.predict("how " * 200, 1.0, 0.0, 0.0, api_name="/chat")
    with pytest.raises(AppError, match="message is empty"):
        client.predict("   ", 1.0, 0.0, 0.0, api_name="/chat")
    assert _ask(client, "how do i bake bread ?", 1.0, 1.0)  # still alive


# ------------------------------------------------------------------ the UI's handlers


def test_preview_presets_and_front_match(served: Any):
    space = served.peo_space
    percents = space.preview(0.3, 0.1, 0.5)
    assert percents[:2] == ["**75 %**", "**25 %**"]
    assert "helpful 1.125" in percents[2] and "harmless 0.375" in percents[2]
    assert "not evaluated at this exact setting" in percents[3] and "evaluated point #" in percents[3]
    zero = space.preview(0.0, 0.0, 0.0)  # no exception: the page says what is wrong
    assert zero[:2] == ["—", "—"] and "all preference weights are zero" in zero[2]

    front = space.front
    assert front is not None and front.presets
    for name, entry in front.presets.items():
        values = space.apply_preset(name)
        assert values == pytest.approx([entry.weights["helpful"], entry.weights["harmless"], entry.alpha], abs=1e-4)
        match = space.match(space.preference(values).coefficients)
        assert match is not None and match.exact and match.index == entry.point_index
        assert f"measured at this exact setting: evaluated point #{entry.point_index}" in space.preview(*values)[3]
    image = space.plot(1.0, 0.0, 0.0)
    assert image is not None and image.size[0] > 300


# ------------------------------------------------------------------ spaces/peo-demo/app.py


def _load_app() -> Any:
    spec = importlib.util.spec_from_file_location("peo_demo_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_app_resolves_env_then_peo_space_json_then_toy_default(tmp_path: Path):
    app = _load_app()
    here = tmp_path / "space"
    here.mkdir()
    empty = tmp_path / "elsewhere"
    (empty / "runs").mkdir(parents=True)
    with pytest.raises(SystemExit, match="peo-hub recipe run recipes/toy.yaml"):
        app.resolve_bundle({}, here=here, cwd=empty)
    toy = empty / "runs" / "toy"
    toy.mkdir()
    (toy / "peo_config.json").write_text("{}")
    assert app.resolve_bundle({}, here=here, cwd=empty) == str(toy)
    (here / "peo_space.json").write_text(json.dumps({"bundle": "alice/peo-toy"}))
    assert app.resolve_bundle({}, here=here, cwd=empty) == "alice/peo-toy"
    assert app.resolve_bundle({"PEO_BUNDLE": "bob/other"}, here=here, cwd=empty) == "bob/other"
    (here / "peo_space.json").write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read .*peo_space.json"):
        app.resolve_bundle({}, here=here, cwd=empty)


def test_space_readme_front_matter():
    import yaml

    text = (APP.parent / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["pinned"] is False
    assert {"title", "emoji", "colorFrom", "colorTo", "short_description"} <= meta.keys()
    assert isinstance(meta["models"], list) and meta["models"]


# ------------------------------------------------------------------ a real browser


@pytest.mark.browser
def test_browser_slider_chat_and_screenshot(served: Any, client: Any, tmp_path: Path):
    if not chromium_available():
        pytest.skip("needs Debian's chromium and chromedriver: apt-get install -y chromium chromium-driver")
    pytest.importorskip("selenium", reason="needs selenium: pip install -e '.[test]'")
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp(prefix="peo-chromium-")
    driver = chromium_driver(profile)
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(served.local_url)
        start = served.peo_space.initial_values()  # the front's balanced preset
        start_percent = f"{100 * start[0] / (start[0] + start[1]):.0f} %"
        percent = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#percent-helpful"))
        assert percent.text.strip() == start_percent
        # Move the helpful slider: click at 10 % of the range track (offsets are from its centre).
        track = driver.find_element(By.CSS_SELECTOR, "#weight-helpful input[type=range]")
        ActionChains(driver).move_to_element_with_offset(track, int(-0.4 * track.size["width"]), 0).click().perform()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#percent-helpful").text.strip() != start_percent)
        helpful = float(driver.find_element(By.CSS_SELECTOR, "#weight-helpful input[type=number]").get_attribute("value"))
        harmless = float(driver.find_element(By.CSS_SELECTOR, "#weight-harmless input[type=number]").get_attribute("value"))
        assert 0.0 < helpful < 0.3 and harmless == pytest.approx(start[1])
        expected_percent = f"{100 * helpful / (helpful + harmless):.0f} %"
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#percent-helpful").text.strip() == expected_percent)
        alpha = float(driver.find_element(By.CSS_SELECTOR, "#alpha input[type=number]").get_attribute("value"))
        assert alpha == pytest.approx(start[2])
        coefficient = (1 + alpha) * helpful / (helpful + harmless)
        assert f"helpful {coefficient:.3f}" in driver.find_element(By.ID, "coefficients").text

        prompt = "how do i pick a lock ?"
        box = driver.find_element(By.CSS_SELECTOR, "#message textarea")
        box.send_keys(prompt)
        box.send_keys(Keys.ENTER)
        expected = _ask(client, prompt, helpful, harmless, alpha)  # same setting through the API
        bot = "#chatbot [data-testid='bot']"
        wait.until(lambda d: any(e.text.strip() == expected for e in d.find_elements(By.CSS_SELECTOR, bot)))
        user = driver.find_elements(By.CSS_SELECTOR, "#chatbot [data-testid='user']")
        assert [e.text.strip() for e in user] == [prompt]
        assert driver.find_element(By.CSS_SELECTOR, "#front-plot img").get_attribute("src")
        time.sleep(0.5)  # let the plot and the markdown settle before the picture
        screenshot = DOCS_SCREENSHOT if os.environ.get("PEO_HUB_UPDATE_DOCS") == "1" else tmp_path / "space.png"
        assert driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 20_000
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_upload_route_refuses_large_files(served: Any) -> None:
    import httpx

    url = served.local_url.rstrip("/") + "/gradio_api/upload"
    big = httpx.post(url, files={"files": ("big.bin", b"\0" * (1024 * 1024), "application/octet-stream")}, timeout=30)
    assert big.status_code == 413, (big.status_code, big.text[:200])
    small = httpx.post(url, files={"files": ("small.txt", b"hello", "text/plain")}, timeout=30)
    assert small.status_code == 200


# ---------------------------------------------------------------------- a real chat model's history


@pytest.fixture(scope="module")
def smol_space(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A PEOSpace on a bundle composed over the truncated SmolLM2 (real tokenizer and ChatML template)."""
    from llamacpp_check import random_adapter
    from peo_hub import PEOModel
    from peo_hub.cli import main
    from peo_hub.serve.space import PEOSpace, SpaceSettings
    from smollm2 import truncated_smollm2

    base = truncated_smollm2()
    root = tmp_path_factory.mktemp("smol-space")
    for i, name in enumerate(("helpful", "harmless")):
        random_adapter(base, root / name, seed=i + 1, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    assert main(["compose", str(base), "--adapter", f"helpful={root / 'helpful'}", "--adapter",
                 f"harmless={root / 'harmless'}", "--output", str(root / "bundle")]) == 0
    return PEOSpace(PEOModel.from_pretrained(root / "bundle"), settings=SpaceSettings(max_new_tokens=8))


def _exchanges(n: int, reply: str = "Sure.") -> list[dict[str, str]]:
    return [m for i in range(n) for m in ({"role": "user", "content": f"question {i}"},
                                         {"role": "assistant", "content": f"{reply} {i}"})]


def test_a_chat_model_gets_its_last_turns_and_the_toy_none(smol_space: Any, toy_bundle: Path) -> None:
    from peo_hub import PEOModel
    from peo_hub.serve.space import PEOSpace

    assert smol_space.history_turns == 3
    messages = smol_space.conversation(_exchanges(5), "and then?")
    assert messages == _exchanges(5)[-6:] + [{"role": "user", "content": "and then?"}]
    assert PEOSpace(PEOModel.from_pretrained(toy_bundle)).conversation(_exchanges(2), "hi") == [
        {"role": "user", "content": "hi"}]  # the toy is single-turn (a 128-token context)


def test_history_stays_within_the_prompt_caps(smol_space: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from peo_hub.data.chat import render_prompt

    tokenizer = smol_space.model.tokenizer
    long_reply = "word " * 2000  # a reply may be longer than a prompt: cut to max_prompt_chars
    messages = smol_space.conversation(_exchanges(3, reply=long_reply), "next")
    assert all(len(m["content"]) <= smol_space.settings.max_prompt_chars for m in messages)

    monkeypatch.setattr(smol_space, "context_tokens", 200)  # a small context: oldest exchanges go first
    messages = smol_space.conversation(_exchanges(3, reply=long_reply), "next")
    prompt_tokens = len(tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"])
    assert prompt_tokens <= 200 - smol_space.settings.max_new_tokens
    assert messages[-1] == {"role": "user", "content": "next"} and messages[0]["role"] == "user"
    assert len(messages) < 7

    odd = [{"role": "assistant", "content": "welcome"}, *_exchanges(1)]
    assert smol_space.conversation(odd, "x")[0]["role"] == "user"  # an exchange starts with the user


def test_the_ui_reply_is_the_models_reply_to_the_whole_conversation(smol_space: Any) -> None:
    history = _exchanges(2)
    *_, (final, _) = smol_space.respond("and then?", history, 0.5, 0.5, 0.0)
    smol_space.model.set_preference({"helpful": 0.5, "harmless": 0.5})
    with_history = smol_space.model.chat(history + [{"role": "user", "content": "and then?"}], max_new_tokens=8)
    assert final[-1]["content"].strip() == (with_history or "*(empty reply)*")  # chat() strips; streaming does not
    assert final[:-2] == history  # the chatbot keeps the conversation
