"""Messages for the visitor: no server paths, no library wording, first letter upper case."""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

# parenthesised details from image libraries, e.g. "(image file is truncated (85 bytes not processed))"
# or "(SyntaxError: not a JPEG file)": they mean nothing to a visitor
_LIBRARY_DETAIL = re.compile(r"\s*\((?:[^()]|\([^()]*\))*(?:Error|not processed|cannot identify|broken|image file)"
                             r"(?:[^()]|\([^()]*\))*\)")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+)")


def sentence(text: str) -> str:
    text = str(text).strip()
    return text[:1].upper() + text[1:] if text else text


def user_message(error: Exception | str, path: str | os.PathLike | None = None) -> str:
    """``error`` as a sentence for the visitor: ``path`` (a server temp file) becomes its file name,
    any other absolute path its last part, library details in parentheses are dropped."""
    text = str(error)
    if path is not None:
        text = text.replace(str(path), Path(path).name)
    text = _ABSOLUTE_PATH.sub(r"\1", text)
    while (shorter := _LIBRARY_DETAIL.sub("", text)) != text:
        text = shorter
    return sentence(text)


def display_path(path: str | os.PathLike) -> str:
    """A path for the model card: relative to the repository or the shared folder (shown as ../shared),
    else just its last two parts. Compared as given and with links resolved (../shared may be a link)."""
    from viewdiff.paths import REPO_ROOT, shared_dir
    path = Path(path)
    for root, prefix in ((REPO_ROOT, ""), (shared_dir(), "../shared/")):
        for inner, outer in ((path, root), (path.resolve(), root.resolve())):
            try:
                return prefix + str(inner.relative_to(outer))
            except (ValueError, OSError):
                continue
    return str(Path(*path.parts[-2:])) if path.is_absolute() else str(path)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]#!|~>])")


def markdown_text(text: str) -> str:
    """``text`` (a visitor's name, a file name) shown literally in gradio Markdown, which renders HTML and
    Markdown: HTML escaped, Markdown's special characters backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))
