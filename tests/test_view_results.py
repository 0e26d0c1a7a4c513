"""The report, the dashboard and `firegen status` show a campaign's final model and its properties as stored.

Real database, real documents: the final model is stored as ``workflows/jobs/finalize.py`` stores it
(``store_model``, ``mark_final``, ``store_heldout_predictions``), the property runs are analysed by the real
analysis (a random walk with a known Arrhenius D on an fcc lattice) and stored as ``md_property`` stores them
(``md_document``), the Arrhenius document by the real ``arrhenius_property``. Every number the views show is
checked against the stored document it came from.
"""

from __future__ import annotations

import json
import os
import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from bson import ObjectId

from firegen.campaign.records import HeldOutPredictions, TrainingRecord
from firegen.db.properties import FINAL_ITERATION, PropertyStore
from firegen.db.repository import ResultsStore
from firegen.orchestrator.cli_properties import properties_brief
from firegen.orchestrator.view.render import text_of
from firegen.orchestrator.view.report import write_report
from firegen.orchestrator.view.server import create_app
from firegen.orchestrator.view.source import CampaignSource
from firegen.workflows.jobs.properties import arrhenius_property, md_document
from firegen.workflows.steps.properties_analysis import AnalysisSettings, analyse_trajectory
from firegen.workflows.steps.properties_md import PropertyMD
from firegen.workflows.steps.properties_transport import BOLTZMANN_EV_K

CHROMIUM = Path("/usr/bin/chromium")  # Debian's, as tests/test_browser.py uses
SHOTS = Path(os.environ.get("FIREGEN_SCREENSHOTS", Path(__file__).resolve().parents[1] / "build" / "screenshots"))
EA_EV = 0.3  # the random walk's activation energy
TEMPERATURES = (600.0, 800.0, 1000.0)


def random_walk_frames(temperature: float, rng, n_frames: int = 150, dt_ps: float = 0.1) -> list:
    """fcc Cu (32 atoms) whose atoms random-walk with D = 10 Å²/ps · exp(-E_a / kT), in a cell whose volume
    fluctuates by about 0.5 % (an NPT run's)."""
    base = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(2)
    d = 10.0 * np.exp(-EA_EV / (BOLTZMANN_EV_K * temperature))  # Å²/ps
    steps = rng.normal(0.0, np.sqrt(2 * d * dt_ps), size=(n_frames, len(base), 3))
    steps[0] = 0.0
    paths = base.positions + np.cumsum(steps, axis=0)
    frames = []
    for k in range(n_frames):
        atoms = base.copy()
        atoms.set_cell(base.cell * (1 + 0.0017 * rng.normal()), scale_atoms=False)
        atoms.positions = paths[k]
        frames.append(atoms)
    return frames


def _metrics(scale: float) -> dict:
    return {"n_frames": 5, "rmse_e_per_atom": 0.0021 * scale, "mae_e_per_atom": 0.0017 * scale, "rmse_f": 0.0432 * scale,
            "mae_f": 0.0311 * scale, "rmse_v_per_atom": 0.0123 * scale, "mae_v_per_atom": 0.0098 * scale}


@pytest.fixture
def finished(launchpad, tmp_path):
    """A campaign with a final model (shaped as finalize stores it) and properties at three temperatures."""
    store = ResultsStore.from_launchpad(launchpad)
    store.init()
    store.create_campaign("cu-fin", {"name": "cu-fin", "stages": [{"name": "warm"}], "committee": {"numb_steps": 500}},
                          ["Cu"])
    frozen = tmp_path / "final.pb"
    frozen.write_bytes(b"a frozen model: not read by the views")
    record = TrainingRecord("cu-fin", FINAL_ITERATION, 0, seed=1234, backend="tf", dataset_id=ObjectId(),
                            input={"training": {"numb_steps": 8000}},  # not 4 x committee.numb_steps: warm starts
                            metrics={"train": _metrics(0.7), "validation": {k: v for k, v in _metrics(1.1).items()
                                                                            if k != "n_frames"}},
                            train_seconds=84.25, n_train=40, n_validation=10)
    model_id = store.store_model(record, frozen)
    compressed = tmp_path / "compressed.pb"
    compressed.write_bytes(b"a compressed model")
    file_id, sha = store.blobs.put(compressed, filename="cu-fin-final-compressed.pb", metadata={"campaign": "cu-fin"})
    props = PropertyStore(store.db)
    props.mark_final(model_id, {"validation_groups": {"per_system": {"fcc": _metrics(1.0)},
                                                      "per_condition": {"fcc | nvt 600 K": _metrics(1.3),
                                                                        "fcc | initial data": _metrics(0.8)}},
                                "final_settings": {"numb_steps": None, "training": {}, "validation_fraction": 0.2,
                                                   "compress": True, "at_end": False},
                                "compress_error": None, "finalize_seconds": 90.5, "compressed_file_id": file_id,
                                "compressed_sha256": sha})
    rng = np.random.default_rng(7)
    energies = rng.normal(-3.7, 0.01, 10).tolist()
    forces = rng.normal(0.0, 0.5, 60).tolist()
    store.store_heldout_predictions(model_id, HeldOutPredictions(
        "cu-fin", FINAL_ITERATION, 0, energy_label=energies, energy_model=[e + 0.002 for e in energies],
        force_label=forces, force_model=[f * 0.98 for f in forces]))
    model = props.final_model("cu-fin")
    settings = AnalysisSettings(charges={"Cu": 1})
    keys = []
    for t in TEMPERATURES:
        protocol = PropertyMD(temperature_K=t, pressure_bar=1.0, production_ps=15.0, sample_fs=100.0, seed=int(t))
        results = analyse_trajectory(random_walk_frames(t, rng), 0.1, t, settings)
        keys.append(props.store(md_document("cu-fin", model, "fcc", protocol, settings, results, "lammps", 12.0, 13.0)))
    arrhenius_property(store, "cu-fin", str(model_id), "fcc", keys)
    return store, model_id


def _figure(html: str, section: str) -> dict:
    found = re.search(rf'<script type="application/json" class="figure" data-for="plot-{section}">(.*?)</script>',
                      html, re.S)
    assert found, f"no figure in section {section}"
    return json.loads(found.group(1).replace("<\\/", "</"))


def _shown(html: str, field: str) -> str:
    found = re.search(rf'data-field="{re.escape(field)}">(?:<a [^>]*>)?([^<]*)<', html)
    assert found, f"no cell {field}"
    return found.group(1)


def _check_numbers_shown(html: str, db, model_id) -> None:
    model = db.models.find_one({"_id": model_id})
    groups = model["validation_groups"]
    for name, metrics in [("held-out, fcc", groups["per_system"]["fcc"]),
                          *[(f"held-out, {g}", m) for g, m in groups["per_condition"].items()],
                          ("held-out, all", model["metrics"]["validation"]), ("training frames", model["metrics"]["train"])]:
        for column, key in (("E RMSE (eV/atom)", "rmse_e_per_atom"), ("E MAE (eV/atom)", "mae_e_per_atom"),
                            ("F RMSE (eV/Å)", "rmse_f"), ("F MAE (eV/Å)", "mae_f"),
                            ("V RMSE (eV/atom)", "rmse_v_per_atom"), ("V MAE (eV/atom)", "mae_v_per_atom")):
            assert _shown(html, f"final.{name}.{column}") == text_of(metrics[key]), (name, column)
    assert _shown(html, "final.held-out, all.frames") == "10"
    assert 'data-value="final-n-train">40<' in html and 'data-value="final-compressed">yes<' in html
    assert 'data-value="final-steps">8000<' in html  # what it ran, not what final.numb_steps' default would be

    parity = db.heldout_predictions.find_one({"_id": model_id})
    traces = [t for t in _figure(html, "final-parity")["data"] if t.get("name") == "final model"]
    assert [t["x"] for t in traces] == [parity["energy_label"], parity["force_label"]]
    assert [t["y"] for t in traces] == [parity["energy_model"], parity["force_model"]]

    runs = list(db.properties.find({"campaign": "cu-fin", "kind": "md"}))
    assert len(runs) == 3
    for run in runs:
        row = f"fcc/{run['md']['label']}"
        r = run["results"]
        assert _shown(html, f"properties.{row}.density (g/cm³)") == text_of(r["density"]["density_g_cm3"])
        assert _shown(html, f"properties.{row}.density ± (g/cm³)") == text_of(r["density"]["error_g_cm3"])
        assert _shown(html, f"properties.{row}.σ (S/cm)") == text_of(r["conductivity"]["sigma_S_cm"])
        assert _shown(html, f"properties.{row}.σ ± (S/cm)") == text_of(r["conductivity"]["error_S_cm"])
        assert _shown(html, f"properties.{row}.T (K)") == text_of(run["md"]["temperature_K"])
        assert _shown(html, f"diffusion.{row}/Cu.D (cm²/s)") == text_of(r["diffusion"]["Cu"]["D_cm2_s"])
        assert _shown(html, f"diffusion.{row}/Cu.D ± (cm²/s)") == text_of(r["diffusion"]["Cu"]["error_cm2_s"])
        assert _shown(html, f"diffusion.{row}/Cu.diffusive") == "yes"  # a random walk
        assert _shown(html, f"diffusion.{row}/Cu.MSD log-log slope") == text_of(r["diffusion"]["Cu"]["msd_exponent"])
    fit = db.properties.find_one({"campaign": "cu-fin", "kind": "arrhenius"})["results"]
    for quantity, stored in (("σ", fit["conductivity"]), ("D(Cu)", fit["diffusion"]["Cu"])):
        assert _shown(html, f"arrhenius.fcc/{quantity}.E_a (eV)") == text_of(stored["activation_energy_eV"])
        assert _shown(html, f"arrhenius.fcc/{quantity}.E_a ± (eV)") == text_of(stored["activation_energy_error_eV"])
        assert _shown(html, f"arrhenius.fcc/{quantity}.value") == text_of(stored["extrapolated"])
        assert _shown(html, f"arrhenius.fcc/{quantity}.value ±") == text_of(stored["extrapolated_error"])
    assert _shown(html, "arrhenius.fcc/σ.unit") == "S/cm" and _shown(html, "arrhenius.fcc/D(Cu).unit") == "cm²/s"
    # the walk's own activation energy comes back from the fit the views show
    assert fit["diffusion"]["Cu"]["activation_energy_eV"] == pytest.approx(EA_EV, abs=0.06)

    rdf = _figure(html, "rdf-fcc")
    by_run = {run["md"]["label"]: run["results"]["rdf"] for run in runs}
    lines = [t for t in rdf["data"] if t.get("name") in by_run]
    assert len(lines) == 2 * 3  # total and Cu-Cu, one line per run
    for t in lines:
        stored = by_run[t["name"]]
        assert t["x"] == stored["r_A"] and t["y"] in (stored["total"], stored["partial"]["Cu-Cu"])
    assert [a["text"] for a in rdf["layout"]["annotations"]] == ["g(r) total", "g(r) Cu-Cu"]
    arrhenius = _figure(html, "arrhenius-fcc")
    points = next(t for t in arrhenius["data"] if t["name"] == "D(Cu) (MD)")
    ordered = sorted(runs, key=lambda d: d["md"]["temperature_K"])
    assert points["y"] == [d["results"]["diffusion"]["Cu"]["D_cm2_s"] for d in ordered]
    assert points["error_y"]["array"] == [d["results"]["diffusion"]["Cu"]["error_cm2_s"] for d in ordered]


def test_report_shows_the_final_model_and_the_properties_as_stored(launchpad, finished, tmp_path):
    store, model_id = finished
    html = write_report(CampaignSource(store, launchpad, "cu-fin"), tmp_path / "cu-fin.html").read_text()
    _check_numbers_shown(html, store.db, model_id)
    assert '<a href="#sec-final">final model</a>' in html and '<a href="#sec-properties">' in html
    # the final model links to its row in the models table; the committee's learning curve leaves it out
    assert f'href="#model-{model_id}"' in html and f'id="model-{model_id}"' in html
    learning = re.search(r'<section id="sec-learning">.*?</section>', html, re.S).group(0)
    assert "no model trained yet" in learning  # only the final model is stored: no committee to draw


def test_dashboard_page_shows_them_too_and_status_lists_them(launchpad, finished):
    store, model_id = finished
    client = create_app(launchpad, background=False).test_client()
    page = client.get("/c/cu-fin/results")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    _check_numbers_shown(html, store.db, model_id)
    assert '<a href="/c/cu-fin/results" class="current">final model &amp; properties</a>' in html
    live = client.get("/c/cu-fin/results?format=json").get_json()
    ids = [s["id"] for s in live["sections"]]
    assert ids == ["final", "final-parity", "properties", "diffusion", "arrhenius", "arrhenius-fcc", "rdf-fcc"]
    assert f'href="/c/cu-fin/model/{model_id}"' in live["sections"][0]["html"]

    brief = properties_brief(store.db, "cu-fin")
    assert brief.startswith(f"final model {model_id}: 40 training + 10 held-out frames, compressed: yes")
    for run in store.db.properties.find({"campaign": "cu-fin", "kind": "md"}):
        dens = run["results"]["density"]
        assert f"{run['md']['label']}" in brief and f"{dens['density_g_cm3']:.4f}±{dens['error_g_cm3']:<7.4f}" in brief
    ea = store.db.properties.find_one({"kind": "arrhenius"})["results"]["conductivity"]
    assert f"σ: Ea {ea['activation_energy_eV']:.3f}±{ea['activation_energy_error_eV']:.3f} eV" in brief


def test_a_campaign_without_final_model_or_properties_says_how_to_get_them(launchpad):
    store = ResultsStore.from_launchpad(launchpad)
    store.init()
    store.create_campaign("cu-new", {"name": "cu-new", "stages": [{"name": "warm"}]}, ["Cu"])
    html = create_app(launchpad, background=False).test_client().get("/c/cu-new/results").get_data(as_text=True)
    assert "no final model yet: `firegen finalize cu-new`" in html
    assert "no property computed yet: `firegen properties run cu-new" in html
    assert properties_brief(store.db, "cu-new") is None


def test_the_sections_draw_in_chromium(launchpad, finished, tmp_path):
    """The report's final-model and property sections in Debian's headless Chromium: every plot draws (a
    screenshot of them goes to build/screenshots/report-results.png)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    if not CHROMIUM.is_file():
        pytest.skip("Chromium is missing: apt-get install chromium")
    store, _ = finished
    _decided_iteration(store, "cu-fin")
    path = write_report(CampaignSource(store, launchpad, "cu-fin"), tmp_path / "cu-fin.html")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(Path(path).as_uri())
            ids = ["plot-final-parity", "plot-arrhenius-fcc", "plot-rdf-fcc"]
            page.wait_for_function("ids => ids.every(id => document.getElementById(id).querySelector('.main-svg'))",
                                   arg=ids, timeout=30000)
            traces = page.eval_on_selector_all(".js-plotly-plot", "els => Object.fromEntries(els.map(e => "
                                               "[e.id, (e.data || []).length]))")
            assert all(traces.get(i, 0) > 0 for i in ids), traces
            top = page.eval_on_selector("#sec-final", "e => e.getBoundingClientRect().top + window.scrollY")
            bottom = page.eval_on_selector("#sec-rdf-fcc", "e => e.getBoundingClientRect().bottom + window.scrollY")
            page.set_viewport_size({"width": 1400, "height": int(bottom - top) + 20})
            page.evaluate(f"window.scrollTo(0, {top - 10})")
            page.screenshot(path=SHOTS / "report-results.png")
            page.set_viewport_size({"width": 1400, "height": 900})
            page.locator("#sec-observables").screenshot(path=SHOTS / "report-observables.png")
        finally:
            browser.close()


def _decided_iteration(store, campaign: str) -> None:
    """Iteration 0 of ``campaign`` with a decision on one observable, as select stores it."""
    from firegen.campaign.config_observables import ObservableConfig
    from firegen.campaign.observable_rule import observable_status

    obs = ObservableConfig(property="density", temperature=600, pressure=1.0, tolerance=0.02)
    now = {"m0": {"value": 8.9123, "error": 0.01}, "m1": {"value": 8.7011, "error": 0.01}}
    status = observable_status(obs, "density-fcc-600K-1bar", now, {"m0": {"value": 8.5}, "m1": {"value": 8.6}}, 2)
    store.update_iteration(campaign, 0, 0, stage_name="warm", decision={"action": "continue", "reason": status["why"],
                                                                         "observables": [status]})


def test_the_overview_lists_each_iterations_observables_as_its_decision_stored_them(launchpad, tmp_path):
    store = ResultsStore.from_launchpad(launchpad)
    store.init()
    store.create_campaign("cu-obs", {"name": "cu-obs", "stages": [{"name": "warm"}]}, ["Cu"])
    _decided_iteration(store, "cu-obs")
    html = write_report(CampaignSource(store, launchpad, "cu-obs"), tmp_path / "r.html").read_text()
    stored = store.get_iteration("cu-obs", 0)["decision"]["observables"][0]
    row = "observables.0/density-fcc-600K-1bar"
    assert _shown(html, f"{row}.members") == "m0 8.912, m1 8.701"
    for column in ("mean", "spread", "change", "tolerance"):
        assert _shown(html, f"{row}.{column}") == text_of(stored[column]), column
    assert _shown(html, f"{row}.met") == "no" and _shown(html, f"{row}.unit") == "g/cm³"
    assert unescape(_shown(html, f"{row}.why")) == stored["why"] and "members' spread 0.024 > 0.02" in stored["why"]


def test_runs_without_diffusion_show_their_values_and_why_no_fit_but_no_empty_plot(launchpad, finished):
    """A crystal: D and σ at or below zero (no diffusion within the run) are shown as stored, the Arrhenius
    fits say why they were not made, and no log-scale plot is drawn with nothing on it."""
    store, model_id = finished
    props = PropertyStore(store.db)
    keys = []
    for doc in store.db.properties.find({"campaign": "cu-fin", "kind": "md"}):
        doc["_id"] = doc["_id"].replace("/fcc/", "/crystal/")
        doc["system"] = "crystal"
        doc["results"]["diffusion"]["Cu"]["D_cm2_s"] = -abs(doc["results"]["diffusion"]["Cu"]["D_cm2_s"])
        del doc["results"]["conductivity"]
        keys.append(props.store(doc))
    arrhenius_property(store, "cu-fin", str(model_id), "crystal", keys)
    client = create_app(launchpad, background=False).test_client()
    sections = {s["id"]: s for s in client.get("/c/cu-fin/results?format=json").get_json()["sections"]}
    assert "arrhenius-fcc" in sections and "arrhenius-crystal" not in sections and "rdf-crystal" in sections
    html = sections["arrhenius"]["html"]
    assert _shown(html, "arrhenius.crystal/D(Cu).note").startswith("no fit: Arrhenius temperatures (K) and values "
                                                                     "must be positive")
    stored = store.db.properties.find_one({"_id": keys[0]})["results"]["diffusion"]["Cu"]["D_cm2_s"]
    run = store.db.properties.find_one({"_id": keys[0]})["md"]["label"]
    assert _shown(sections["diffusion"]["html"], f"diffusion.crystal/{run}/Cu.D (cm²/s)") == text_of(stored) and stored < 0


def test_the_arrhenius_fit_leaves_out_a_species_whose_msd_was_flagged_not_diffusive(finished):
    """One temperature of the ladder where Cu did not diffuse within the run (its MSD flagged by the analysis):
    neither the fit of D(Cu) nor that of the conductivity Cu carries is made, and both say which temperature
    and why; the same ladder with every run diffusive is fitted (the fixture's)."""
    store, model_id = finished
    fitted = store.db.properties.find_one({"campaign": "cu-fin", "kind": "arrhenius", "system": "fcc"})["results"]
    assert "Cu" in fitted["diffusion"] and "conductivity" in fitted and fitted["skipped"] == {}
    props = PropertyStore(store.db)
    keys = []
    for doc in store.db.properties.find({"campaign": "cu-fin", "kind": "md", "system": "fcc"}):
        assert doc["results"]["diffusion"]["Cu"]["diffusive"] is True  # a random walk
        doc["_id"] = doc["_id"].replace("/fcc/", "/cold/")
        doc["system"] = "cold"
        if doc["md"]["temperature_K"] == TEMPERATURES[0]:
            doc["results"]["diffusion"]["Cu"].update(diffusive=False, msd_exponent=0.08)
            frozen = doc["md"]["label"]
        keys.append(props.store(doc))
    arrhenius_property(store, "cu-fin", str(model_id), "cold", keys)
    results = store.db.properties.find_one({"campaign": "cu-fin", "kind": "arrhenius", "system": "cold"})["results"]
    assert results["diffusion"] == {} and "conductivity" not in results
    why = f"Cu does not diffuse within the run at {TEMPERATURES[0]:g} K (MSD log-log slope 0.08)"
    assert results["skipped"]["Cu"].startswith(why) and results["skipped"]["conductivity"].startswith(why)
    runs = [line for line in properties_brief(store.db, "cu-fin").splitlines() if line.strip().startswith("cold ")
            and "Arrhenius" not in line]  # `firegen status`: the flagged run says so, the others do not
    assert sorted((frozen in line, "(not diffusive)" in line) for line in runs) == [(False, False)] * 2 + [(True, True)]
