"""The page's files as shipped: nothing fetched from elsewhere, every import resolves, no
HTML built from strings."""

from __future__ import annotations

import re
from pathlib import Path

from tidings.web import STATIC_DIR

IMPORT = re.compile(
    r"""(?:^|\n)\s*import\s[^;]*?from\s+["']([^"']+)["']"""  # import {x} from "./y.js"
    r"""|import\(\s*["']([^"']+)["']"""  # import("./y.js")
)


def _files(suffix: str) -> list[Path]:
    return sorted(STATIC_DIR.rglob(f"*{suffix}"))


def test_nothing_is_loaded_from_another_origin() -> None:
    for path in [*_files(".html"), *_files(".js"), *_files(".css")]:
        text = path.read_text()
        assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", text), path
        assert "@import" not in text, path
        assert not re.search(r"""from\s+["']https?:""", text), path


def test_every_module_import_resolves() -> None:
    modules = _files(".js")
    assert len(modules) >= 10
    for path in modules:
        for match in IMPORT.finditer(path.read_text()):
            target = match.group(1) or match.group(2)
            assert target.startswith("./") or target.startswith("../"), (path, target)
            assert (path.parent / target).resolve().is_file(), (path, target)


def test_no_html_from_strings() -> None:
    for path in _files(".js"):
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (path, sink)
