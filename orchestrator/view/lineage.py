"""The dashboard's lineage pages: one model, one dataset snapshot, one configuration, each with its links to
the others (where a configuration came from, what was trained on it)."""

from __future__ import annotations

from firegen.db.provenance import configuration_provenance
from firegen.orchestrator.view import tables
from firegen.orchestrator.view.render import fragment, table
from firegen.orchestrator.view.sections import MEMBER_COLUMNS, PAGE_ROWS, Section, empty_html, facts_html, pager
from firegen.orchestrator.view.source import CampaignSource


def model_page(src: CampaignSource, links, model_id) -> list[Section]:
    model = src.store.get_model(model_id)
    if model is None or model.get("campaign") != src.name:
        return [Section("model", "model", html=empty_html(f"no model {model_id} in campaign {src.name}"))]
    metrics = model.get("metrics") or {}
    facts = [{"name": "iteration", "value": model["iteration"], "href": links.iteration(model["iteration"])},
             {"name": "member", "value": model["member"]}, {"name": "seed", "value": model.get("seed")},
             {"name": "backend", "value": model.get("backend")},
             {"name": "dataset snapshot", "value": "snapshot", "href": links.dataset(model.get("dataset_id"))},
             {"name": "parent", "value": str(model["parent"]) if model.get("parent") else None,
              "href": links.model(model["parent"]) if model.get("parent") else None},
             *([{"name": "restarted because", "value": model["restarted_because"]}]
               if model.get("restarted_because") else []),
             {"name": "frames train", "value": model.get("n_train")},
             {"name": "frames held out", "value": model.get("n_validation")},
             {"name": "train s", "value": model.get("train_seconds")},
             *[{"name": f"{part} {name}", "value": value} for part in ("validation", "train")
               for name, value in sorted((metrics.get(part) or {}).items()) if name.startswith("rmse")],
             {"name": "sha256", "value": (model.get("sha256") or "")[:16]}]
    return [Section("model", f"model {model_id}", "RMSE: energy in eV/atom, force in eV/Å, virial in eV/atom.",
                    html=facts_html(facts))]


def dataset_page(src: CampaignSource, links, dataset_id, skip: int = 0, limit: int = PAGE_ROWS) -> list[Section]:
    snapshot = next((d for d in src.snapshots if str(d["_id"]) == str(dataset_id)), None)
    if snapshot is None:
        return [Section("dataset", "dataset", html=empty_html(f"no dataset snapshot {dataset_id} in campaign {src.name}"))]
    facts = [{"name": "iteration", "value": snapshot["iteration"], "href": links.iteration(snapshot["iteration"])},
             {"name": "size", "value": snapshot.get("size")}, {"name": "hash", "value": snapshot.get("hash", "")[:16]},
             *[{"name": f"labeler {k[:8] if k else '?'}", "value": f"{v.get('code')} {v.get('version') or ''} ×{v.get('n')}"}
               for k, v in (snapshot.get("labelers") or {}).items()]]
    trained = [{"model": f"iteration {m.get('iteration')} member {m.get('member')}", "_id": mid, "seed": m.get("seed")}
               for mid, m in sorted((snapshot.get("models") or {}).items(),
                                    key=lambda kv: (kv[1].get("iteration", 0), kv[1].get("member", 0)))]
    members = src.store.snapshot_members_page(snapshot, skip, limit)
    rows = tables.member_rows(members, tables.explore_conditions(src))
    for r in rows:
        r["configuration"] = str(r["_id"])
    member_table = table(rows, MEMBER_COLUMNS, "members", links={
        "configuration": lambda r: links.configuration(r["_id"]), "iteration": lambda r: links.iteration(r["iteration"])})
    return [Section("dataset", f"dataset snapshot of iteration {snapshot['iteration']}", html=facts_html(facts)),
            Section("trained", "models trained on it", html=fragment("table.html", table=table(
                trained, ["model", "seed"], "trained", links={"model": lambda r: links.model(r["_id"])}),
                note="", empty="no model trained on it yet", pager=None)),
            Section("members", "its configurations", "Origin and label of each member as the snapshot took them; "
                    "energy in eV, label time in s.", html=fragment(
                        "table.html", table=member_table, note="", empty="no member",
                        pager=pager(skip, limit, snapshot.get("size", 0), lambda s: links.dataset(snapshot["_id"], s))))]


def configuration_page(src: CampaignSource, links, config_id) -> list[Section]:
    answer = configuration_provenance(src.store.db, config_id)
    doc = answer["configuration"]
    origin, label = doc.get("origin") or {}, doc.get("label") or {}
    facts = [{"name": "status", "value": doc.get("status")}, {"name": "origin", "value": origin.get("kind")},
             {"name": "iteration", "value": origin.get("iteration"), "href": links.iteration(origin.get("iteration"))},
             {"name": "stage", "value": origin.get("stage_name", origin.get("stage"))},
             {"name": "system", "value": origin.get("system")},
             {"name": "condition", "value": tables.condition_label(origin["condition"]) if origin.get("condition") else None},
             {"name": "frame", "value": origin.get("frame")}, {"name": "MD step", "value": origin.get("step")},
             {"name": "Firework", "value": origin.get("fw_id")}, {"name": "atoms", "value": doc.get("natoms")},
             {"name": "max force deviation (eV/Å)", "value": (doc.get("model_deviation") or {}).get("max_f")},
             {"name": "energy (eV)", "value": label.get("energy")}, {"name": "labeler", "value": label.get("code")},
             {"name": "host", "value": label.get("host")}, {"name": "label s", "value": label.get("walltime")},
             {"name": "hash", "value": (doc.get("hash") or "")[:16]}]
    models = [{"model": f"iteration {m.get('iteration')} member {m.get('member')}", "_id": m["_id"], "seed": m.get("seed"),
               "role": role} for role, group in (("explored with", answer["explored_with"]),
                                                 ("trained on it", answer["trained_models"])) for m in group]
    attempts = [{"reason": a.get("reason"), "error": a.get("error_type"), "Firework": a.get("fw_id"), "at": a.get("at")}
                for a in doc.get("label_attempts") or []]
    return [Section("configuration", f"configuration {config_id}", html=facts_html(facts)),
            Section("related", "models", "The committee whose deviation picked it, and the models later trained on it.",
                    html=fragment("table.html", table=table(models, ["role", "model", "seed"], "related",
                                                            links={"model": lambda r: links.model(r["_id"])}),
                                  note="", empty="none", pager=None)),
            Section("attempts", "failed label attempts", html=fragment(
                "table.html", table=table(attempts, ["reason", "error", "Firework", "at"], "attempts"), note="",
                empty="none", pager=None))]
