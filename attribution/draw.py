"""Pictures of attributions: atom-coloured molecules with a colour bar, grids, an HTML report.

Everything runs headless: molecules are drawn by RDKit (``MolDraw2DCairo`` / ``MolDraw2DSVG``),
colour bars and grids by matplotlib's object API on an Agg canvas (``pyplot`` is never imported,
the global backend is left alone).  matplotlib is imported lazily, inside the functions.

Colours: a diverging colour map (default ``"bwr"``: blue negative, white zero, red positive),
symmetric around zero with ``vmax = max |atom score|`` unless given.  ``style="atoms"`` fills
each atom with the colour of its score (the colour bar reads exactly); ``style="similarity"``
draws RDKit's similarity map (Gaussians around atoms, contour-shaded), whose colour bar gives the
atom-score scale of the centres.
"""
from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from rdkit.Chem import rdDepictor
from rdkit.Chem.Draw import SimilarityMaps, rdMolDraw2D

from bartsmiles.core.chem import parse_smiles

__all__ = ["atom_colors", "molecule_image", "draw_attribution", "draw_grid", "write_html_report"]

STYLES = ("atoms", "similarity")


def _cmap(name: str):
    import matplotlib  # lazy: matplotlib is optional (the viz extra)

    return matplotlib.colormaps[name]


def _scale(scores, vmax: Optional[float]) -> float:
    if vmax is not None and vmax > 0:
        return float(vmax)
    m = float(np.max(np.abs(scores))) if len(scores) else 0.0
    return m if m > 0 else 1.0


def atom_colors(scores: Sequence[float], cmap: str = "bwr", vmax: Optional[float] = None) -> dict[int, tuple]:
    """``{atom index: (r, g, b)}`` for ``scores`` on a symmetric ``[-vmax, vmax]`` scale."""
    scores = np.asarray(scores, dtype=float)
    v, cm = _scale(scores, vmax), _cmap(cmap)
    return {i: tuple(float(c) for c in cm(0.5 + 0.5 * np.clip(s / v, -1, 1))[:3]) for i, s in enumerate(scores)}


def _unpack(item, scores):
    """(mol, scores, title) from an Attribution (its environment scores) or a (mol/SMILES, scores) pair."""

    if scores is None and hasattr(item, "atom_scores"):
        title = f"{item.smiles}\n{item.quantity}: {item.output:.3g} (baseline {item.baseline_output:.3g})"
        return parse_smiles(item.smiles), np.asarray(item.environment_scores, dtype=float), title
    mol = parse_smiles(item) if isinstance(item, str) else item
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (mol.GetNumAtoms(),):
        raise ValueError(f"{scores.size} atom scores for a molecule of {mol.GetNumAtoms()} atoms")
    return mol, scores, ""


def _label(item, scores) -> str:
    """The colour bar's label for what :func:`_unpack` draws."""
    radius = getattr(item, "environment_radius", 0) if scores is None else 0
    return f"environment score (radius {radius})" if radius else "atom score"


def molecule_image(mol, scores, *, fmt: str = "png", style: str = "atoms", size=(400, 300), cmap: str = "bwr",
                   vmax: Optional[float] = None) -> bytes | str:
    """The RDKit drawing alone: PNG bytes or SVG text, atoms coloured by ``scores``."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', got {fmt!r}")
    w, h = int(size[0]), int(size[1])
    drawer = rdMolDraw2D.MolDraw2DCairo(w, h) if fmt == "png" else rdMolDraw2D.MolDraw2DSVG(w, h)
    mol = rdMolDraw2D.PrepareMolForDrawing(mol, addChiralHs=False)
    if mol.GetNumConformers() == 0:
        rdDepictor.Compute2DCoords(mol)
    v = _scale(scores, vmax)
    if style == "atoms":
        colors = atom_colors(scores, cmap, v)
        opts = drawer.drawOptions()
        opts.fillHighlights = True
        opts.atomHighlightsAreCircles = True
        radii = {i: 0.45 for i in colors}
        drawer.DrawMolecule(mol, highlightAtoms=list(colors), highlightAtomColors=colors,
                            highlightAtomRadii=radii, highlightBonds=[])
    else:
        weights = [float(np.clip(s / v, -1, 1)) for s in scores]
        SimilarityMaps.GetSimilarityMapFromWeights(mol, weights, draw2d=drawer, colorMap=_cmap(cmap),
                                                   contourLines=6, scale=1.0)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


def _svg_colorbar(x: int, y: int, height: int, v: float, cmap: str, label: str) -> str:
    cm = _cmap(cmap)
    stops = "".join(
        f'<stop offset="{k / 10:.1f}" stop-color="rgb({int(255 * c[0])},{int(255 * c[1])},{int(255 * c[2])})"/>'
        for k in range(11) for c in [cm(1.0 - k / 10)])
    ticks = "".join(
        f'<text x="{x + 18}" y="{y + int(height * f) + 4}" font-size="10" font-family="sans-serif">{val:+.2g}</text>'
        for f, val in ((0.0, v), (0.5, 0.0), (1.0, -v)))
    return (f'<defs><linearGradient id="bartsmiles_cbar" x1="0" y1="0" x2="0" y2="1">{stops}</linearGradient></defs>'
            f'<rect x="{x}" y="{y}" width="14" height="{height}" fill="url(#bartsmiles_cbar)" stroke="black" '
            f'stroke-width="0.5"/>{ticks}' + "".join(
                f'<text x="{x}" y="{y + height + 14 + 12 * i}" font-size="10" font-family="sans-serif">'
                f'{html.escape(line)}</text>' for i, line in enumerate(_label_lines(label))))


def _label_lines(label: str) -> list[str]:
    """A colour bar label on one line, or two when long (``"environment score"``, ``"(radius 2)"``)."""
    head, sep, tail = label.partition(" (")
    return [head, "(" + tail] if sep and len(label) > 20 else [label]


def draw_attribution(item, path: Optional[str | os.PathLike] = None, *, scores=None, fmt: Optional[str] = None,
                     style: str = "atoms", size=(400, 300), cmap: str = "bwr", vmax: Optional[float] = None,
                     title: Optional[str] = None, colorbar: bool = True, label: Optional[str] = None) -> bytes | str:
    """One molecule with atom colours and a colour bar; written to ``path`` if given, returned anyway.

    ``item``: an :class:`~bartsmiles.attribution.Attribution` (drawn by its ``environment_scores``;
    pass ``scores=a.atom_scores`` with ``item=a.smiles`` for the atom scores alone), or a Mol /
    SMILES with ``scores``.  ``label``: the colour bar's; default from the scores drawn.
    ``fmt``: ``"png"`` (matplotlib figure: the RDKit image plus a colour bar) or ``"svg"`` (the
    RDKit vector drawing with an SVG colour bar); default from ``path``'s suffix, else png.
    """
    label = _label(item, scores) if label is None else label
    mol, scores, default_title = _unpack(item, scores)
    title = default_title if title is None else title
    if fmt is None:
        fmt = Path(path).suffix.lstrip(".").lower() if path is not None and Path(path).suffix else "png"
    v = _scale(scores, vmax)
    if fmt == "svg":
        body = molecule_image(mol, scores, fmt="svg", style=style, size=size, cmap=cmap, vmax=v)
        w, h = int(size[0]), int(size[1])
        inner = body[body.index("<svg"):]
        inner = inner[inner.index(">") + 1: inner.rindex("</svg>")]
        extra_w = 95 if colorbar else 0
        top = 30 if title else 0
        head = "".join(f'<text x="5" y="{12 + 12 * i}" font-size="11" font-family="sans-serif">{html.escape(line)}'
                       f'</text>' for i, line in enumerate(title.splitlines()[:2])) if title else ""
        out = (f'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
               f'xmlns:xlink="http://www.w3.org/1999/xlink" width="{w + extra_w}" height="{h + top + 20}" '
               f'viewBox="0 0 {w + extra_w} {h + top + 20}"><rect width="100%" height="100%" fill="white"/>{head}'
               f'<g transform="translate(0,{top})">{inner}</g>'
               + (_svg_colorbar(w + 8, top + 10, h - 40, v, cmap, label) if colorbar else "") + "</svg>\n")
        if path is not None:
            Path(path).write_text(out)
        return out
    if fmt != "png":
        raise ValueError(f"format must be png or svg, got {fmt!r}")
    png = molecule_image(mol, scores, fmt="png", style=style, size=size, cmap=cmap, vmax=v)
    width = size[0] / 100 + (1.3 if colorbar else 0.2)  # inches; the last 1.3 hold the colour bar, ticks and label
    fig = _figure(width, size[1] / 100 + (0.6 if title else 0.2))
    ax = fig.add_axes([0.02, 0.02, 1 - 1.25 / width if colorbar else 0.96, 0.86 if title else 0.96])
    _show(ax, png, title)
    if colorbar:
        _colorbar(fig, [1 - 1.05 / width, 0.1, 0.15 / width, 0.75], v, cmap, label)
    return _save(fig, path, "png")


def _figure(w_in: float, h_in: float):
    # lazy: matplotlib is optional (the viz extra)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w_in, h_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _show(ax, png: bytes, title: str) -> None:
    import matplotlib.image as mpimg  # lazy: matplotlib is optional (the viz extra)

    ax.imshow(mpimg.imread(io.BytesIO(png), format="png"))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=7)


def _colorbar(fig, rect, v: float, cmap: str, label: str) -> None:
    # lazy: matplotlib is optional (the viz extra)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = fig.add_axes(rect)
    # a long label ("environment score (radius 2)") on two lines, so that the figure's edge keeps it
    fig.colorbar(ScalarMappable(norm=Normalize(-v, v), cmap=_cmap(cmap)), cax=cax).set_label(
        "\n".join(_label_lines(label)), fontsize=8)
    cax.tick_params(labelsize=7)


def _save(fig, path, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, facecolor="white")
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def draw_grid(items: Sequence, path: Optional[str | os.PathLike] = None, *, n_cols: int = 4, fmt: Optional[str] = None,
              style: str = "atoms", size=(300, 220), cmap: str = "bwr", shared_scale: bool = True,
              titles: Optional[Sequence[str]] = None, label: Optional[str] = None) -> bytes:
    """Many molecules in one PNG/SVG figure (matplotlib), one colour bar; ``items``: Attributions
    or ``(mol or SMILES, atom scores)`` pairs; ``shared_scale``: one
    ``vmax`` for all (comparable colours), else each molecule on its own scale."""
    items = list(items)
    if not items:
        raise ValueError("draw_grid needs at least one attribution")
    unpacked = [_unpack(it, None) if hasattr(it, "atom_scores") else _unpack(it[0], it[1]) for it in items]
    if label is None:
        labels = {_label(it, None) if hasattr(it, "atom_scores") else "atom score" for it in items}
        label = labels.pop() if len(labels) == 1 else "score"
    v = max(_scale(s, None) for _, s, _ in unpacked) if shared_scale else None
    n_cols = max(1, min(int(n_cols), len(items)))
    n_rows = (len(items) + n_cols - 1) // n_cols
    cw, ch = size[0] / 100, size[1] / 100 + 0.4
    width = n_cols * cw + 1.3  # inches; the last 1.3 hold the colour bar, its ticks and its label
    fig = _figure(width, n_rows * ch)
    for k, (mol, scores, title) in enumerate(unpacked):
        r, c = divmod(k, n_cols)
        ax = fig.add_axes([c * cw / width, 1 - (r + 1) * ch / (n_rows * ch), cw / width * 0.97,
                           ch / (n_rows * ch) * 0.85])
        png = molecule_image(mol, scores, fmt="png", style=style, size=size, cmap=cmap, vmax=v)
        text = titles[k] if titles is not None else (title.splitlines()[0] if title else "")
        _show(ax, png, text[:60])
    if shared_scale:
        _colorbar(fig, [1 - 1.0 / width, 0.15, 0.15 / width, 0.7], v, cmap, label)
    if fmt is None:
        fmt = Path(path).suffix.lstrip(".").lower() if path is not None and Path(path).suffix else "png"
    return _save(fig, path, fmt)


#: how the report describes each attribution method
METHOD_TEXT = {
    "ig": "Integrated gradients at the encoder's input token embeddings; token scores mapped to atoms through "
          "the tokenizer's atom alignment",
    "gradient_x_input": "Gradient x input at the encoder's input token embeddings; token scores mapped to atoms "
                        "through the tokenizer's atom alignment",
    "mask_occlusion": "Mask occlusion: an atom's score is the drop in the output when its token(s) are replaced "
                      "by <mask>",
    "shapley": "Shapley values (Captum sampling) of the encoder's input tokens or atoms with a <mask> baseline; "
               "token scores mapped to atoms through the tokenizer's atom alignment",
    "edit_occlusion": "Edit occlusion: an atom's score is the drop in the output when the atom is edited out of "
                      "the molecule (a terminal atom deleted, a heteroatom made carbon, a chain carbon cut out; "
                      "repeated terminal heteroatoms such as two chlorines also deleted together, sharing the joint "
                      "drop; a branch carbon outside rings, which has no edit, scores the sum of its edited "
                      "neighbours by default, a ring carbon without an edit 0)",
    "edit_gradient": "Edit occlusion plus gradient: an atom's score is the drop in the output when the atom is "
                     "edited out of the molecule (a branch carbon outside rings, which has no edit, the sum of its "
                     "edited neighbours' drops by default), plus its gradient x input at the encoder's input token "
                     "embeddings (taken part of the way from a zero baseline, halfway by default; token scores "
                     "mapped to atoms)",
}


def _methods_text(attributions: Sequence) -> str:
    """One sentence per attribution method present in ``attributions``."""
    methods = dict.fromkeys(getattr(a, "attribution_method", "ig") for a in attributions)
    return "; ".join(METHOD_TEXT.get(m, m) for m in methods) + "."


def _environment_text(attributions: Sequence) -> str:
    """What the pictures show: environment scores (which radius) or the atom scores themselves."""
    radii = sorted({int(getattr(a, "environment_radius", 0)) for a in attributions})
    if radii == [0]:
        return "Pictures show the atom scores."
    return (f"Pictures show environment scores (radius {', '.join(map(str, radii))}): each atom's score plus "
            "the mean score of the atoms d bonds away, weighted 1/d; the tables use the atom scores.")


def write_html_report(attributions: Sequence, path: str | os.PathLike, *, tables: Optional[Sequence] = None,
                      title: str = "BARTSmiles attribution report", style: str = "atoms", top: int = 10,
                      images: Optional[Sequence[str]] = None) -> Path:
    """A self-contained HTML page: per molecule its picture (embedded PNG), prediction, baseline,
    convergence delta and the ``top`` rows of its substructure table (``tables[i]``, a DataFrame;
    computed with defaults when not given).  ``images``: relative links to use instead of
    embedding pictures."""
    attributions = list(attributions)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:20px} table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px} .mol{margin-bottom:32px} code{font-size:13px}</style>",
             f"</head><body><h1>{html.escape(title)}</h1>",
             f"<p>{html.escape(_methods_text(attributions))} (red: raises the attributed quantity, "
             "blue: lowers it). "
             f"{html.escape(_environment_text(attributions))} Substructure score = sum of its atoms' scores.</p>"]
    for i, a in enumerate(attributions):
        table = tables[i] if tables is not None else a.substructures()
        if images is not None:
            img = f"<img src='{html.escape(str(images[i]))}' alt='molecule {i}'>"
        else:
            png = draw_attribution(a, None, fmt="png", style=style)
            img = f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}' alt='molecule {i}'>"
        shown = table.head(top).copy()
        if "atoms" in shown:
            shown["atoms"] = shown["atoms"].map(lambda t: " ".join(map(str, t)))
        flag = " <b style='color:#b00'>(above tolerance)</b>" if a.converged is False else ""
        gap = "convergence delta" if a.converged is not None else "completeness gap (not additive)"
        parts.append(
            f"<div class='mol'><h2>{i}: <code>{html.escape(a.smiles)}</code></h2>{img}"
            f"<p>{html.escape(a.quantity)}: <b>{a.output:.4g}</b>; baseline ({html.escape(a.baseline)}): "
            f"{a.baseline_output:.4g}; sum of scores {a.total:.4g}; {gap} {a.delta:.2g}{flag}; "
            f"remainder (specials, '.') {a.remainder:.3g}; {html.escape(getattr(a, 'attribution_method', 'ig'))} "
            f"({html.escape(str(a.method))}, {a.n_steps} evaluation(s) per feature)</p>"
            + shown.to_html(index=False, float_format=lambda x: f"{x:.4g}", escape=True) + "</div>")
    parts.append("</body></html>\n")
    out = Path(path)
    out.write_text("".join(parts), encoding="utf-8")
    return out
