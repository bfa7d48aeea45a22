"""Shared labels of the L-DUFM figures: settings lines and the DNC / SRG caption."""

from __future__ import annotations

from matplotlib.ticker import MaxNLocator

DNC_SRG_CAPTION = (
    "DNC: deep neural collapse (every layer's class means orthogonal, rank K); "
    "L_DNC its best loss (closed form). SRG: the paper's strongly-regular-graph "
    "construction (K = C(r, 2) classes = edges of the complete graph K_r; rank r "
    "up to the last ReLU, rank K after it); L_SRG the best loss of SRG/DNC "
    "block networks (closed form)."
)


def setting_lines(ds, width: int = 150) -> str:
    """Two caption lines: what the paper fixes and what svflow chose, plus the size."""
    a = ds.attrs
    paper = a.get("paper_figure", "")
    fixed = a.get("paper_settings", "")
    chosen = a.get("chosen_settings", "")
    setting = a.get("setting", "")
    lines = []
    if paper and not paper.startswith("none"):
        lines.append(f"{paper} of Sukenik, Lampert & Mondelli (2024): {fixed}")
    elif fixed:
        lines.append(f"L-DUFM of Sukenik, Lampert & Mondelli (2024), no figure of theirs: {fixed}")
    if chosen:
        size = f" [{setting} setting]" if setting else ""
        if "seed" in ds.dims:
            size += f"; {ds.sizes['seed']} seeds (runs) per init scale here"
        lines.append(f"not fixed by the paper, chosen here: {chosen}{size}")
    return "\n".join(lines)


def integer_axis(axis) -> None:
    axis.set_major_locator(MaxNLocator(integer=True))


def wrap_caption(text: str, width: int = 190) -> str:
    """Wrap every paragraph of ``text`` at ``width`` characters (matplotlib's own
    wrapping is lost with ``bbox_inches="tight"``)."""
    import textwrap

    return "\n".join("\n".join(textwrap.wrap(p, width)) if p else "" for p in text.split("\n"))


def add_caption(fig, ds, extra: str = "", y: float = -0.02, width: int = 230) -> None:
    """The caption under a figure: the study's settings, what DNC and SRG are, ``extra``."""
    text = setting_lines(ds) + "\n" + DNC_SRG_CAPTION
    if extra:
        text += "\n" + extra
    fig.text(0.01, y, wrap_caption(text, width), ha="left", va="top", fontsize=7)
