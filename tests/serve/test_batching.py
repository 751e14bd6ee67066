"""The Space's batching (peo_hub.serve.batching): 20 concurrent ``/chat`` clients with different sliders
get exactly their solo replies, and they really were generated together, in shared batches."""

from __future__ import annotations

import threading
from typing import Any


from peo_hub.world.toy import eval_prompts, task_of

PROMPTS = [p for p in eval_prompts() if task_of(p) is not None][:10]
CLIENTS = 20


def _settings(i: int) -> tuple[str, float, float, float]:
    """Client i's message and sliders: 20 different (helpful, harmless, alpha) over 10 prompts."""
    helpful = (i % 5) / 4
    return PROMPTS[i % len(PROMPTS)], helpful, 1.0 - helpful + (0.5 if helpful == 1.0 else 0.0), [0.0, 0.5, 1.0][i % 3]


def test_concurrent_clients_get_their_solo_replies_in_shared_batches(served: Any) -> None:
    from gradio_client import Client

    space = served.peo_space
    model = space.model
    url = served.local_url
    solo_client = Client(url, verbose=False)
    settings = [_settings(i) for i in range(CLIENTS)]
    assert len(set(settings)) == CLIENTS
    solo = [solo_client.predict(*s, api_name="/chat") for s in settings]  # one at a time: batches of one
    for (message, helpful, harmless, alpha), reply in zip(settings, solo):  # = the model's own chat
        model.set_preference({"helpful": helpful, "harmless": harmless}, alpha=alpha)
        assert reply == model.chat(message, max_new_tokens=space.settings.max_new_tokens)
    assert len(set(solo)) >= 5  # the sliders really change the replies: cross-talk would show

    clients = [Client(url, verbose=False) for _ in range(CLIENTS)]
    before = len(space._batches.batch_sizes)
    start = threading.Barrier(CLIENTS)
    replies: list[Any] = [None] * CLIENTS

    def ask(i: int) -> None:
        start.wait()
        replies[i] = clients[i].predict(*settings[i], api_name="/chat")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert replies == solo
    batches = space._batches.batch_sizes[before:]
    assert sum(batches) == CLIENTS and max(batches) > 1, batches  # generated together, not one by one
