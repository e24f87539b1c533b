"""Build each example notebook (``ppo_gaussian_bump.ipynb``, ``torch_significance.ipynb``)
from the ``# %%`` cells of the script of the same name.

Usage: ``python examples/build_notebook.py`` (the notebook is regenerated, never edited).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).parent


def cells(source: str) -> list[tuple[str, str]]:
    """Split a percent-format script into (kind, text) cells."""
    out: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("# %%"):
            out.append(("markdown" if "[markdown]" in line else "code", []))
        elif out:
            out[-1][1].append(line)
    result = []
    for kind, lines in out:
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        text = "\n".join(lines).strip("\n")
        if text:
            result.append((kind, text))
    return result


def build(script: Path = HERE / "ppo_gaussian_bump.py") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(t) if k == "markdown" else nbformat.v4.new_code_cell(t)
        for k, t in cells(script.read_text())
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


EXAMPLES = ("ppo_gaussian_bump", "torch_significance")

if __name__ == "__main__":
    for name in EXAMPLES:
        target = HERE / f"{name}.ipynb"
        nbformat.write(build(HERE / f"{name}.py"), target)
        print(f"wrote {target}")
