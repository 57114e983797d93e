"""Small fixes to the HTML that Jupyter Book 1 produces, so that pages load cleanly offline.

* sphinx-thebe registers its configuration script once per environment read, and with the
  notebook cache the environment can be read twice, which declares ``THEBE_JS_URL`` twice and raises
  a JavaScript error on every page (sphinx-togglebutton's selector is doubled the same way). Each
  page's script list is de-duplicated here, keeping the first occurrence.
* The single-page build behind ``make pdf`` (Sphinx's ``singlehtml`` builder) looks up node
  visitors under its own name first and falls back to ``html`` only when no extension registered
  any ``singlehtml`` visitor; one does, so sphinx-proof's theorem nodes had none. Every ``html``
  visitor missing for ``singlehtml`` is copied over.
* ``book/_static/book.css`` (the book's own style: a column wide enough for 80 characters of code)
  is added to every page.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "_static"


def _script_key(script) -> tuple:
    # the same file or inline body (filename None and "" both mean inline), whatever its priority
    attributes = getattr(script, "attributes", {}) or {}
    return str(getattr(script, "filename", script) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items()))


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def share_html_visitors(app) -> None:
    handlers = app.registry.translation_handlers
    if app.builder.name == "singlehtml" and "html" in handlers:
        single = handlers.setdefault("singlehtml", {})
        for node, visitors in handlers["html"].items():
            single.setdefault(node, visitors)


def add_book_css(app, config) -> None:
    config.html_static_path = [*config.html_static_path, str(STATIC)]


def setup(app):
    app.connect("config-inited", add_book_css)
    app.add_css_file("book.css")
    app.connect("builder-inited", share_html_visitors)
    app.connect("html-page-context", dedupe_scripts, priority=1)  # before any handler that returns a template and stops the event
    return {"parallel_read_safe": True, "parallel_write_safe": True}
