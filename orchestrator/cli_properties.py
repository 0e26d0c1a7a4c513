"""From potential to property: ``firegen finalize`` (the final model) and ``firegen properties run|show``.

Both queue Fireworks that gpu workers run (``firegen worker --gpu``); ``--now`` runs them here instead, one
Rocket after another, in a temporary folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional

import typer

from firegen.campaign.config import CampaignConfig
from firegen.campaign.errors import FiregenError
from firegen.db.properties import PropertyStore
from firegen.db.repository import ResultsStore
from firegen.orchestrator.database import cli_target, prepare_database

properties_app = typer.Typer(no_args_is_help=True, help="Properties computed with a stored model (density, RDF, "
                                                        "D, conductivity, Arrhenius).")


def _campaign(store: ResultsStore, name: str) -> dict:
    doc = store.get_campaign(name)
    if doc is None:
        raise FiregenError(f"campaign '{name}' is not in the database. Fix: use one of: "
                           f"{', '.join(store.campaign_names()) or '(none yet)'}")
    return doc


def run_here(lp, fw_ids: list[int]) -> None:
    """Run these Fireworks now, in order, each as a FireWorks Rocket in a temporary folder."""
    from fireworks import FWorker  # start-up: FireWorks' launcher loads only for --now
    from fireworks.core.rocket_launcher import launch_rocket  # start-up, as above

    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="firegen-now-") as folder:
        os.chdir(folder)
        try:
            for fw_id in fw_ids:
                launch_rocket(lp, FWorker(name="firegen-now", category=["gpu", "cpu"]), fw_id=fw_id, strm_lvl="ERROR")
                state = lp.get_fw_dict_by_id(fw_id)["state"]
                if state != "COMPLETED":
                    raise FiregenError(f"Firework {fw_id} ended {state}. Fix: see `lpad get_fws -i {fw_id} -d all` "
                                       f"for the traceback, then `lpad rerun_fws -i {fw_id}`")
        finally:
            os.chdir(here)


def _queue(lp, wf, campaign_doc: dict) -> list[int]:
    """Add ``wf`` at the campaign's ``priority``; its Fireworks' ids in the order they were built."""
    from firegen.workflows.builders import with_priority  # start-up: the CLI imports FireWorks when it queues

    with_priority(wf, (campaign_doc.get("config") or {}).get("priority", 0))
    before = [fw.fw_id for fw in wf.fws]  # add_wf gives the Fireworks their ids in place
    old_new = lp.add_wf(wf)
    return [old_new[i] for i in before]


def finalize_cmd(ctx: typer.Context, campaign: str = typer.Argument(..., help="Campaign name."),
                 force: bool = typer.Option(False, "--force", help="Train again when a final model is stored."),
                 now: bool = typer.Option(False, "--now", help="Run it here instead of queueing it for a gpu worker."),
                 numb_steps: Optional[int] = typer.Option(None, "--numb-steps", help="Training steps, over the "
                                                          "campaign's final.numb_steps (with --force: train again)."),
                 training: Optional[str] = typer.Option(None, "--training", help="deepmd-kit input.json parts as JSON, "
                                                        "merged over the campaign's final.training, e.g. "
                                                        "'{\"loss\": {\"limit_pref_v\": 10}}'.")):
    """Train the campaign's final model on every label (longer, `final:` settings), compress, validate, store."""
    from firegen.workflows.jobs.finalize import finalize_workflow, with_final  # start-up: the jobs import the science

    overrides: dict = {} if numb_steps is None else {"numb_steps": numb_steps}
    if training is not None:
        try:
            overrides["training"] = json.loads(training)
        except json.JSONDecodeError as exc:
            raise FiregenError(f"--training is not JSON ({exc.msg} at character {exc.pos}). Fix: give deepmd-kit "
                               """input.json parts, e.g. --training '{"loss": {"limit_pref_v": 10}}'""") from None
    lp = cli_target(ctx).connect()
    prepare_database(lp)
    store = ResultsStore.from_launchpad(lp)
    doc = _campaign(store, campaign)
    with_final(CampaignConfig.model_validate(doc["config"]), overrides, "firegen finalize --numb-steps/--training")
    ids = _queue(lp, finalize_workflow(campaign, force=force, overrides=overrides), doc)
    if not now:
        typer.echo(f"queued the final model of '{campaign}' (Firework {ids[0]}, category gpu); start a worker: "
                   "firegen worker --gpu")
        return
    run_here(lp, ids)
    typer.echo(final_summary(PropertyStore(lp.db).final_model(campaign)))


def final_summary(model: dict | None) -> str:
    """A few lines on a final model: id, data, validation RMSEs, compression."""
    if model is None:
        return "no final model"
    val = (model.get("metrics") or {}).get("validation") or {}
    lines = [f"final model {model['_id']}: {model.get('n_train')} training + {model.get('n_validation')} held-out "
             f"frames, compressed: "
             + ("yes" if model.get("compressed_file_id") else f"no ({model.get('compress_error')})")]
    if val:
        lines.append(f"  held-out RMSE: energy {val['rmse_e_per_atom'] * 1000:.2f} meV/atom, force "
                     f"{val['rmse_f']:.3f} eV/Å" + (f", virial {val['rmse_v_per_atom'] * 1000:.2f} meV/atom"
                                                   if "rmse_v_per_atom" in val else ""))
    for system, m in sorted(((model.get("validation_groups") or {}).get("per_system") or {}).items()):
        lines.append(f"  {system}: {m['n_frames']} frames, energy RMSE {m['rmse_e_per_atom'] * 1000:.2f} / MAE "
                     f"{m['mae_e_per_atom'] * 1000:.2f} meV/atom, force RMSE {m['rmse_f']:.3f} / MAE {m['mae_f']:.3f} eV/Å")
    return "\n".join(lines)


def _pairs(values: list[str], what: str) -> dict[str, float]:
    out = {}
    for item in values:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise FiregenError(f"{what} '{item}' is not ELEMENT=NUMBER. Fix: e.g. {what} Na=1") from None
    return out


@properties_app.command("run")
def run_cmd(ctx: typer.Context, campaign: str = typer.Argument(..., help="Campaign name."),
            system: str = typer.Option(..., "--system", help="The campaign system to simulate (its starting structure)."),
            temperatures: str = typer.Option(..., "--temperatures", help="Temperature ladder (K), comma-separated."),
            model: Optional[str] = typer.Option(None, "--model", help="A stored model id (default: the final model)."),
            ensemble: str = typer.Option("npt", "--ensemble", help="npt (density from the volumes) or nvt."),
            pressure: float = typer.Option(1.0, "--pressure", help="Pressure (bar), npt."),
            dt: float = typer.Option(1.0, "--dt", help="Time step (fs)."),
            equilibration: float = typer.Option(10.0, "--equilibration-ps", help="Equilibration, not sampled (ps)."),
            production: float = typer.Option(50.0, "--production-ps", help="Sampled production run (ps)."),
            sample: float = typer.Option(50.0, "--sample-fs", help="Time between saved frames (fs)."),
            charge: list[str] = typer.Option([], "--charge", help="Formal charge of a conducting species, e.g. "
                                             "--charge Na=1 (repeat); none: no conductivity."),
            haven: float = typer.Option(1.0, "--haven-ratio", help="Haven ratio of the Nernst–Einstein conductivity."),
            blocks: int = typer.Option(5, "--blocks", help="Blocks of the error bars."),
            fit_window: Optional[str] = typer.Option(None, "--fit-window", help="MSD fit window START:END (ps); "
                                                     "default from 1 ps (past the vibrational "
                                                     "transient) to half a block; 10–50 %% of one block in "
                                                     "long runs."),
            now: bool = typer.Option(False, "--now", help="Run here instead of queueing for gpu/cpu workers.")):
    """Queue production MD at each temperature with a stored model, then the Arrhenius fit over them."""
    from firegen.workflows.jobs.properties import properties_workflow, resolve_model  # start-up, as above
    from firegen.workflows.steps.properties_md import PropertyMD  # start-up, as above

    lp = cli_target(ctx).connect()
    prepare_database(lp)
    store = ResultsStore.from_launchpad(lp)
    doc = _campaign(store, campaign)
    if system not in (doc.get("systems") or {}):
        raise FiregenError(f"--system '{system}' is not a system of campaign '{campaign}'. Fix: use one of: "
                           f"{', '.join(sorted(doc.get('systems') or {}))}")
    try:
        temps = [float(t) for t in temperatures.split(",") if t.strip()]
        window = [float(x) for x in fit_window.split(":")] if fit_window else None
    except ValueError:
        raise FiregenError("--temperatures takes numbers like 600,800,1000 (K) and --fit-window START:END (ps). "
                           "Fix: write them so") from None
    if not temps or (window is not None and len(window) != 2):
        raise FiregenError("--temperatures needs at least one temperature (K), --fit-window two numbers. Fix: e.g. "
                           "--temperatures 600,800,1000 --fit-window 2:10")
    model_doc = resolve_model(store, campaign, model)
    md = {"ensemble": ensemble, "pressure_bar": pressure if ensemble == "npt" else None, "dt_fs": dt,
          "equilibration_ps": equilibration, "production_ps": production, "sample_fs": sample}
    try:
        for t in temps:
            PropertyMD(temperature_K=t, **md)
    except ValueError as exc:
        raise FiregenError(f"{exc}. Fix: check --ensemble, --dt, --sample-fs and the run lengths") from None
    analysis = {"charges": _pairs(charge, "--charge"), "haven_ratio": haven, "n_blocks": blocks,
                "fit_window_ps": window}
    ids = _queue(lp, properties_workflow(campaign, str(model_doc["_id"]), system, temps, md, analysis), doc)
    if not now:
        typer.echo(f"queued {len(ids)} property Firework(s) of '{campaign}/{system}' with model {model_doc['_id']}; "
                   "start workers: firegen worker --gpu / --cpu")
        return
    run_here(lp, ids)
    typer.echo(properties_table(PropertyStore(lp.db).of_campaign(campaign)))


def properties_table(docs: list[dict]) -> str:
    """The properties of a campaign as a text table (one line per run, one per Arrhenius fit)."""
    if not docs:
        return "no properties"
    lines = [f"{'system':<12} {'run':<22} {'density g/cm³':>18} {'D cm²/s (species)':>34} {'σ S/cm':>22}"]
    for d in docs:
        r = d["results"]
        if d["kind"] == "md":
            dens = r["density"]
            diff = "; ".join(f"{s} {x['D_cm2_s']:.2e}±{x['error_cm2_s']:.1e}"
                             + (" (not diffusive)" if x.get("diffusive") is False else "")
                             for s, x in r["diffusion"].items())
            cond = r.get("conductivity")
            sigma = f"{cond['sigma_S_cm']:.2e}±{cond['error_S_cm']:.1e}" if cond else "-"
            lines.append(f"{d['system']:<12} {d['md']['label']:<22} "
                         f"{dens['density_g_cm3']:>10.4f}±{dens['error_g_cm3']:<7.4f} {diff:>34} {sigma:>22}")
        else:
            parts = [f"{s}: Ea {f['activation_energy_eV']:.3f}±{f['activation_energy_error_eV']:.3f} eV"
                     for s, f in r.get("diffusion", {}).items()]
            if r.get("conductivity"):
                c = r["conductivity"]
                parts.append(f"σ: Ea {c['activation_energy_eV']:.3f}±{c['activation_energy_error_eV']:.3f} eV, "
                             f"σ(300 K) {c['extrapolated']:.2e}±{c['extrapolated_error']:.1e} S/cm")
            lines.append(f"{d['system']:<12} {'Arrhenius':<22} " + "; ".join(parts or ["no fit"]))
    return "\n".join(lines)


def properties_brief(db, campaign: str) -> str | None:
    """What ``firegen status`` adds under a campaign's table: its final model and properties (None: neither)."""
    props = PropertyStore(db)
    model, docs = props.final_model(campaign), props.of_campaign(campaign)
    if model is None and not docs:
        return None
    lines = [final_summary(model).splitlines()[0]] if model is not None else []
    if docs:
        lines.append(f"properties ({len(docs)}; `firegen properties show {campaign}`):")
        lines += ["  " + line for line in properties_table(docs).splitlines()]
    return "\n".join(lines) + "\n"


@properties_app.command("show")
def show_cmd(ctx: typer.Context, campaign: str = typer.Argument(..., help="Campaign name."),
             as_json: bool = typer.Option(False, "--json", help="Every document in full, as JSON.")):
    """Print a campaign's final model and properties."""
    lp = cli_target(ctx).connect()
    store = ResultsStore.from_launchpad(lp)
    _campaign(store, campaign)
    props = PropertyStore(lp.db)
    if as_json:
        typer.echo(json.dumps({"final_model": props.final_model(campaign),
                               "properties": props.of_campaign(campaign, brief=False)}, indent=1, default=str))
        return
    typer.echo(final_summary(props.final_model(campaign)))
    typer.echo(properties_table(props.of_campaign(campaign)))


def register(app: typer.Typer) -> None:
    app.command("finalize")(finalize_cmd)
    app.add_typer(properties_app, name="properties")
