"""The views' plots, drawn by Plotly from the rows of :mod:`.tables` (Plotly's own JavaScript renders them)."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from firegen.orchestrator.view.tables import FRACTIONS, LaunchBar, TaskRow

COLORS = {"accurate": "#2a9d8f", "candidate": "#e9c46a", "failed": "#e76f51", "labeled": "#2a9d8f"}
KIND_COLORS = {"init": "#6c757d", "label": "#e9c46a", "gate": "#adb5bd", "train": "#264653", "explore": "#2a9d8f",
               "select": "#e76f51"}
MEMBER_COLORS = ["#264653", "#e76f51", "#2a9d8f", "#8d5a97", "#e9c46a", "#577590", "#f4a261", "#43aa8b"]


def _layout(fig: go.Figure, height: int = 380, **layout) -> go.Figure:
    """The look every figure shares (white, legend below), then ``layout``."""
    fig.update_layout(**{"template": "plotly_white", "height": height + 40,
                         "legend": {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom"},
                         "margin": {"l": 60, "r": 20, "t": 30, "b": 90}, **layout})
    return fig


def fractions_figure(rows: list[dict]) -> go.Figure:
    """Accurate / candidate / failed share of the explored frames, per iteration (stacked, %)."""
    fig = go.Figure()
    for kind in FRACTIONS:
        fig.add_bar(name=kind, x=[r["iteration"] for r in rows], y=[100 * r[kind] for r in rows],
                    marker_color=COLORS[kind], customdata=[[r["stage"], r["total"]] for r in rows],
                    hovertemplate=f"iteration %{{x}} (stage %{{customdata[0]}}): {kind} %{{y:.1f}} % "
                                  "of %{customdata[1]} frames<extra></extra>")
    return _layout(fig, barmode="stack", xaxis_title="iteration", yaxis_title="frames (%)", yaxis_range=[0, 100],
                   xaxis={"dtick": 1})


def task_heatmap(rows: list[TaskRow]) -> go.Figure:
    """Accurate share per (stage, system, condition) task and iteration; a star where the task converged."""
    iterations = sorted({i for r in rows for i in r.ratios})
    z, text = [], []
    for r in rows:
        z.append([100 * r.ratios[i]["accurate"] if i in r.ratios else None for i in iterations])
        text.append([f"candidate {100 * r.ratios[i]['candidate']:.1f} %, failed {100 * r.ratios[i]['failed']:.1f} %"
                     f", {r.ratios[i]['total']} frames" if i in r.ratios else "" for i in iterations])
    labels = [r.label for r in rows]
    fig = go.Figure(go.Heatmap(x=iterations, y=labels, z=z, text=text, zmin=0, zmax=100, colorscale="Viridis",
                               colorbar={"title": "accurate %"}, xgap=2, ygap=2,
                               hovertemplate="%{y}<br>iteration %{x}: accurate %{z:.1f} %, %{text}<extra></extra>"))
    done = [r for r in rows if r.converged_at is not None]
    fig.add_scatter(x=[r.converged_at for r in done], y=[r.label for r in done], mode="markers", name="converged",
                    marker={"symbol": "star", "size": 14, "color": "white", "line": {"color": "black", "width": 1}},
                    hovertemplate="%{y}: converged after iteration %{x}<extra></extra>")
    return _layout(fig, height=max(260, 80 + 36 * len(rows)), xaxis_title="iteration", xaxis={"dtick": 1},
                   yaxis={"automargin": True, "autorange": "reversed"}, showlegend=True)


def _drawn_edges(edges: list[float]) -> list[float]:
    """Bin edges on a log axis: the open first bin [0, e1) and last bin [e_n, 1e10) are drawn one
    neighbouring bin wide."""
    drawn = list(edges)
    if drawn[0] <= 0 and len(drawn) > 2:
        drawn[0] = drawn[1] ** 2 / drawn[2]
    if drawn[-1] >= 1e9 and len(drawn) > 2:
        drawn[-1] = drawn[-2] ** 2 / drawn[-3]
    return drawn


def _density(edges: list[float], hist: list[int]) -> list[float]:
    """Share of the frames per decade of deviation in each bin (bins of any width compare)."""
    total = sum(hist) or 1
    return [n / total / max(math.log10(hi / lo), 1e-9) for n, lo, hi in zip(hist, edges, edges[1:])]


def _trust_lines(fig: go.Figure, trust: tuple[float, float], vertical: bool = True) -> None:
    """The trust levels as dashed lines across a log deviation axis, labelled (an annotation on a log axis
    takes the log of its position, a shape does not)."""
    for name, level in zip(("f_lo", "f_hi"), trust):
        line = {"dash": "dash", "color": "#e76f51" if name == "f_hi" else "#d4a017", "width": 2}
        text = f"{name} {level:g} eV/Å"
        if vertical:
            fig.add_shape(type="line", x0=level, x1=level, y0=0, y1=1, xref="x", yref="paper", line=line)
            fig.add_annotation(x=math.log10(level), y=1, xref="x", yref="paper", text=text, showarrow=False,
                               yanchor="bottom", xanchor="right" if name == "f_lo" else "left")
        else:
            fig.add_shape(type="line", x0=0, x1=1, y0=level, y1=level, xref="paper", yref="y", line=line)
            fig.add_annotation(x=0, y=math.log10(level), xref="paper", yref="y", text=text, showarrow=False,
                               xanchor="left", yanchor="top" if name == "f_lo" else "bottom",
                               bgcolor="rgba(255,255,255,0.7)")


def deviation_lines(histograms: list[tuple[int, list[float], list[int]]], trust: tuple[float, float],
                    last: int = 12) -> go.Figure:
    """The max-force-deviation distribution of each of the ``last`` iterations, early to late (light to dark),
    trust levels drawn (:func:`deviation_heatmap` shows every iteration)."""
    histograms = histograms[-last:]
    fig = go.Figure()
    n = len(histograms)
    shades = sample_colorscale("Blues", [0.3 + 0.7 * (k / (n - 1) if n > 1 else 1.0) for k in range(n)])
    for (index, edges, hist), color in zip(histograms, shades):
        drawn = _drawn_edges(edges)
        density = _density(drawn, hist)
        fig.add_scatter(x=drawn, y=density + density[-1:], mode="lines", line={"shape": "hv", "width": 2,
                        "color": color}, name=f"iteration {index}",
                        hovertemplate=f"iteration {index}: %{{y:.3f}} of frames per decade from %{{x:.3g}} eV/Å"
                                      "<extra></extra>")
    _trust_lines(fig, trust)
    return _layout(fig, xaxis={"type": "log", "title": "max force deviation (eV/Å)"},
                   yaxis_title="share of frames per decade", margin={"l": 60, "r": 20, "t": 40, "b": 50})


def deviation_heatmap(histograms: list[tuple[int, list[float], list[int]]], trust: tuple[float, float]) -> go.Figure:
    """The same distributions side by side, one column per iteration (log deviation axis)."""
    if not histograms:
        return _layout(go.Figure())
    edges = _drawn_edges(histograms[-1][1])
    columns = [_density(edges, hist) if len(hist) == len(edges) - 1 else [None] * (len(edges) - 1)
               for _, _, hist in histograms]
    z = [list(row) for row in zip(*columns)]
    fig = go.Figure(go.Heatmap(x=[h[0] for h in histograms], y=edges, z=z, colorscale="Blues",
                               colorbar={"title": "share / decade"},
                               hovertemplate="iteration %{x}, from %{y:.3g} eV/Å: %{z:.3f}<extra></extra>"))
    _trust_lines(fig, trust, vertical=False)
    return _layout(fig, xaxis={"title": "iteration", "dtick": 1},
                   yaxis={"type": "log", "title": "max force deviation (eV/Å)"})


def learning_curve(rows: list[dict]) -> go.Figure:
    """Held-out energy and force RMSE of every committee member per iteration (training RMSE faint)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("energy RMSE (eV/atom)", "force RMSE (eV/Å)"))
    members = sorted({r["member"] for r in rows})
    for col, quantity in ((1, "E"), (2, "F")):
        unit = "eV/atom" if quantity == "E" else "eV/Å"
        for member in members:
            mine = [r for r in rows if r["member"] == member]
            color = MEMBER_COLORS[member % len(MEMBER_COLORS)]
            for part, style in (("held-out", {"width": 2}), ("train", {"width": 1, "dash": "dot"})):
                fig.add_scatter(x=[r["iteration"] for r in mine], y=[r[f"{quantity} {part} ({unit})"] for r in mine],
                                mode="lines+markers", line={**style, "color": color}, opacity=1 if part == "held-out" else 0.5,
                                name=f"member {member} {part}", legendgroup=f"m{member}{part}",
                                showlegend=col == 1, row=1, col=col,
                                hovertemplate=f"member {member}, iteration %{{x}}: {part} %{{y:.4g}} {unit}<extra></extra>")
        fig.update_yaxes(type="log", row=1, col=col)
        fig.update_xaxes(title="iteration", dtick=1, row=1, col=col)
    return _layout(fig, height=400)


def parity_figure(predictions: list[dict], names: list[str] | None = None) -> go.Figure:
    """Model against label on the held-out frames of one committee: energy per atom and force components
    (``names``: each prediction's legend name, default ``member <k>``)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("energy (eV/atom)", "force components (eV/Å)"))
    for col, (label, model, unit) in enumerate((("energy_label", "energy_model", "eV/atom"),
                                                ("force_label", "force_model", "eV/Å")), start=1):
        lo = min((min(p[label] + p[model]) for p in predictions if p[label]), default=0.0)
        hi = max((max(p[label] + p[model]) for p in predictions if p[label]), default=1.0)
        pad = 0.05 * (hi - lo or 1.0)
        lo, hi = lo - pad, hi + pad
        fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"color": "#999", "dash": "dash"},
                        name="model = label", showlegend=col == 1, hoverinfo="skip", row=1, col=col)
        for k, p in enumerate(predictions):
            color = MEMBER_COLORS[p["member"] % len(MEMBER_COLORS)]
            name = names[k] if names else f"member {p['member']}"
            fig.add_scatter(x=p[label], y=p[model], mode="markers", marker={"size": 4, "color": color, "opacity": 0.6},
                            name=name, legendgroup=f"m{k}", showlegend=col == 1,
                            row=1, col=col, hovertemplate=f"{name}: label %{{x:.4g}}, model %{{y:.4g}} "
                                                          f"{unit}<extra></extra>")
        fig.update_xaxes(title=f"label ({unit})", range=[lo, hi], row=1, col=col)  # same range: y = x is the diagonal
        fig.update_yaxes(title=f"model ({unit})", range=[lo, hi], row=1, col=col)
    return _layout(fig, height=420)


def label_budget_figure(rows: list[dict]) -> go.Figure:
    """Labels stored and failed, and labeler seconds, by the iteration that picked them."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = [r["picked by"] for r in rows]
    fig.add_bar(x=x, y=[r["labeled"] for r in rows], name="labeled", marker_color=COLORS["labeled"],
                hovertemplate="picked by %{x}: %{y} labeled<extra></extra>")
    fig.add_bar(x=x, y=[r["failed"] for r in rows], name="failed", marker_color=COLORS["failed"],
                hovertemplate="picked by %{x}: %{y} failed<extra></extra>")
    fig.add_scatter(x=x, y=[r["labeler s"] for r in rows], name="labeler s", mode="lines+markers",
                    line={"color": "#264653"}, secondary_y=True,
                    hovertemplate="picked by %{x}: %{y:.1f} s of labeler time<extra></extra>")
    fig.update_yaxes(title="labels", secondary_y=False)
    fig.update_yaxes(title="labeler time (s)", secondary_y=True, rangemode="tozero")
    return _layout(fig, barmode="stack", xaxis={"title": "picked by iteration", "type": "category"})


def timeline_figure(bars: list[LaunchBar]) -> go.Figure:
    """Every launch as a bar on its worker's row, coloured by kind; the space between bars is idle time."""
    fig = go.Figure()
    for kind in sorted({b.kind for b in bars}, key=lambda k: list(KIND_COLORS).index(k) if k in KIND_COLORS else 99):
        mine = [b for b in bars if b.kind == kind]
        fig.add_bar(orientation="h", y=[b.worker for b in mine], base=[b.start_s for b in mine],
                    x=[max(b.seconds, 0.05) for b in mine], name=kind, marker_color=KIND_COLORS.get(kind, "#999"),
                    marker_line={"width": 0.5, "color": "white"},
                    customdata=[[b.name, b.state, b.seconds, b.fw_id] for b in mine],
                    hovertemplate="%{customdata[0]} (Firework %{customdata[3]}, %{customdata[1]}): "
                                  "%{customdata[2]:.1f} s from %{base:.1f} s<extra></extra>")
    workers = sorted({b.worker for b in bars})
    return _layout(fig, height=max(220, 120 + 60 * len(workers)), barmode="overlay",
                   xaxis_title="seconds since the campaign's first launch", yaxis={"automargin": True})


def rdf_figure(runs: list[dict]) -> go.Figure:
    """The RDFs of one system's property runs: one panel per element pair (and the total), one line per run."""
    pairs = ["total"] + list(((runs[0].get("results") or {}).get("rdf") or {}).get("partial") or {})
    cols = min(3, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"g(r) {p}" for p in pairs],
                        horizontal_spacing=0.06, vertical_spacing=0.5 / rows)
    shades = sample_colorscale("Plasma", [0.1 + 0.75 * (k / (len(runs) - 1) if len(runs) > 1 else 0.0)
                                          for k in range(len(runs))])
    for run, color in zip(runs, shades):
        rdf = (run.get("results") or {}).get("rdf") or {}
        name = (run.get("md") or {}).get("label", "run")
        for k, pair in enumerate(pairs):
            g = rdf.get("total") if pair == "total" else (rdf.get("partial") or {}).get(pair)
            if not g:
                continue
            fig.add_scatter(x=rdf["r_A"], y=g, mode="lines", line={"color": color, "width": 1.5}, name=name,
                            legendgroup=name, showlegend=k == 0, row=k // cols + 1, col=k % cols + 1,
                            hovertemplate=f"{name} {pair}: g(%{{x:.2f}} Å) = %{{y:.3f}}<extra></extra>")
    fig.update_xaxes(title="r (Å)")
    return _layout(fig, height=260 * rows)


def arrhenius_figure(runs: list[dict], fits: list[dict]) -> go.Figure:
    """σ (S/cm) and each species' D (cm²/s) of one system's runs against 1000/T (K⁻¹), log scale, with error
    bars and the stored Arrhenius fit drawn through them."""
    from firegen.workflows.steps.properties_transport import BOLTZMANN_EV_K  # the fit's own constant

    fig = make_subplots(rows=1, cols=2, subplot_titles=("conductivity σ (S/cm)", "diffusion coefficient D (cm²/s)"))
    runs = sorted(runs, key=lambda d: d["md"]["temperature_K"])
    x = [1000.0 / d["md"]["temperature_K"] for d in runs]
    conds = [(d.get("results") or {}).get("conductivity") for d in runs]
    if all(conds):
        fig.add_scatter(x=x, y=[c["sigma_S_cm"] for c in conds], mode="markers", name="σ (MD)",
                        marker={"color": MEMBER_COLORS[0], "size": 8},
                        error_y={"type": "data", "array": [c["error_S_cm"] for c in conds]}, row=1, col=1,
                        hovertemplate="1000/T %{x:.3f} K⁻¹: σ %{y:.3g} S/cm<extra></extra>")
    species = list(((runs[0].get("results") or {}).get("diffusion") or {})) if runs else []
    for k, s in enumerate(species):
        ds = [d["results"]["diffusion"][s] for d in runs]
        fig.add_scatter(x=x, y=[v["D_cm2_s"] for v in ds], mode="markers", name=f"D({s}) (MD)",
                        marker={"color": MEMBER_COLORS[(k + 1) % len(MEMBER_COLORS)], "size": 8},
                        error_y={"type": "data", "array": [v["error_cm2_s"] for v in ds]}, row=1, col=2,
                        hovertemplate=f"1000/T %{{x:.3f}} K⁻¹: D({s}) %{{y:.3g}} cm²/s<extra></extra>")
    for doc in fits:
        r = doc.get("results") or {}
        lines = ([("σ", r["conductivity"], 1, 0)] if r.get("conductivity") else []) + [
            (f"D({s})", f, 2, species.index(s) + 1 if s in species else 0) for s, f in (r.get("diffusion") or {}).items()]
        for name, fit, col, color in lines:
            temps = sorted(set(fit["temperatures_K"]) | {fit["extrapolated_T_K"]})
            grid = [temps[0] + (temps[-1] - temps[0]) * i / 40 for i in range(41)]
            y = [math.exp(fit["ln_prefactor"] - fit["activation_energy_eV"] / (BOLTZMANN_EV_K * t))
                 / (t if fit["times_T"] else 1.0) for t in grid]
            fig.add_scatter(x=[1000.0 / t for t in grid], y=y, mode="lines",
                            line={"dash": "dot", "color": MEMBER_COLORS[color % len(MEMBER_COLORS)]},
                            name=f"{name} fit: E_a {fit['activation_energy_eV']:.3f} ± "
                                 f"{fit['activation_energy_error_eV']:.3f} eV", row=1, col=col, hoverinfo="skip")
    for col in (1, 2):
        fig.update_xaxes(title="1000 / T (K⁻¹)", row=1, col=col)
        fig.update_yaxes(type="log", exponentformat="power", row=1, col=col)
    return _layout(fig, height=400)
