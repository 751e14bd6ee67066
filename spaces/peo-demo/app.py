"""The PEO demo Space: preference sliders + chat over one PEO bundle.

Thin on purpose; the app lives in ``peo_hub.serve.space``. Which bundle it serves, first match wins:

1. the ``PEO_BUNDLE`` environment variable (a Hub repo id or a local folder);
2. ``peo_space.json`` next to this file (``{"bundle": "user/repo"}``, written by
   ``peo-hub push BUNDLE REPO --space SPACE`` / ``peo_hub.publish.hub.push_space``);
3. the offline default: the toy bundle ``runs/toy`` (of the current folder or of the
   peo-hub checkout this file lives in).

It binds ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` when set (Hugging Face Spaces set
them), else 127.0.0.1:7860.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG_NAME = "peo_space.json"
NO_BUNDLE = ("no PEO bundle to serve: set PEO_BUNDLE=<hub repo id or folder>, add peo_space.json "
             '({"bundle": "user/repo"}) next to app.py, or build the offline toy bundle with '
             "`peo-hub recipe run recipes/toy.yaml` (it writes runs/toy)")


def resolve_bundle(environ: dict[str, str] | None = None, here: Path = HERE, cwd: Path | None = None) -> str:
    """The bundle to serve (see the module docstring); ``SystemExit`` with the fix when none."""
    environ = dict(os.environ) if environ is None else environ
    bundle = environ.get("PEO_BUNDLE", "").strip()
    if bundle:
        return bundle
    config = here / CONFIG_NAME
    if config.is_file():
        try:
            bundle = str(json.loads(config.read_text(encoding="utf-8")).get("bundle") or "").strip()
        except (OSError, ValueError, AttributeError) as exc:
            raise SystemExit(f"error: cannot read {config} ({exc}); it should hold {{\"bundle\": \"user/repo\"}}")
        if not bundle:
            raise SystemExit(f"error: {config} names no bundle; it should hold {{\"bundle\": \"user/repo\"}}")
        return bundle
    for root in (cwd or Path.cwd(), here.parent.parent):  # the current folder, the checkout
        toy = root / "runs" / "toy"
        if (toy / "peo_config.json").is_file():
            return str(toy)
    raise SystemExit(f"error: {NO_BUNDLE}")


def main() -> None:
    bundle = resolve_bundle()
    try:
        from peo_hub.utils.errors import PEOError
        from peo_hub.serve.space import launch
    except ImportError as exc:
        raise SystemExit(f"error: peo-hub is not importable ({exc}); deploy with `peo-hub push --space` (it uploads the package) or `pip install -e .` in a checkout")
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    print(f"serving PEO bundle {bundle} on http://{host}:{port}", file=sys.stderr)
    try:
        launch(bundle, host=host, port=port)
    except PEOError as exc:
        raise SystemExit(f"error: {exc}")


if __name__ == "__main__":
    main()
