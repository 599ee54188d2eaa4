"""The dashboard served at ``/ui``: Jinja2 templates, static files and the browser session.

The router lives in ``routes/ui.py``; this package owns what it renders (``templates/``,
``static/``), how values are shown (:mod:`.present`), the cookie session and CSRF tokens
(:mod:`.session`) and the few read-only listings the API has no service for (:mod:`.queries`).
"""

from __future__ import annotations

from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
