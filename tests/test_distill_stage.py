"""The Table 2 study's distill stage: the plain and distilled retrains from the same
search weights, chosen once per task on the first seed's dev, paired by seed."""
import json

from experiments import runner, table2_distill, table2_runs
from experiments.distill_results import distill_summary, distill_table
from experiments.results_table import Start, load

# dev spearman of a fake retrain by (arm flag, epochs); seed s adds s / 1000
DEV = {("none", 3): 0.80, ("none", 10): 0.82, ("logits", 3): 0.83, ("logits", 10): 0.81,
       ("logits+ranking", 3): 0.83, ("logits+ranking", 10): 0.84}


def _fake_run_glue(calls):
    def run_glue(folder, task, phase, flags, log, resume=True):
        values = dict(f[2:].split("=", 1) for f in flags if "=" in f)
        calls.append((folder.name, phase, values))
        phase_dir = folder / task / phase
        phase_dir.mkdir(parents=True, exist_ok=True)
        if phase == "search":
            record = {"target_speedup": float(values["target_speedup"])}
        else:
            dev = DEV[(values.get("distill", "none"), int(values["retrain_epochs"]))]
            dev += int(values["seed"]) / 1000
            record = {"history": [{"epoch": 1, "dev": {"spearman": dev}, "seconds": 2.0,
                                   "train_loss": 0.5}], "wall_seconds": 3.0,
                      "comparison": {"metric": "spearman",
                                     "baseline": {"dev": {"spearman": 0.85}},
                                     "power_bert": {"dev": {"spearman": dev}},
                                     "retention": [40, 20], "flop_bound": 2.2,
                                     "speedup": 2.1, "speedup_spread": {"min": 2.0},
                                     "served": {"bucketed_sorted": {
                                         "speedup": {"median": 1.6}, "flop_bound": 1.7}}}}
        (phase_dir / "run.json").write_text(json.dumps(record))
        return 1.0
    return run_glue


def test_the_distill_stage_pairs_both_arms_on_the_same_search(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "run_glue", _fake_run_glue(calls))
    base = tmp_path / "base"
    (base / "STS-B" / "finetune").mkdir(parents=True)
    monkeypatch.setattr(table2_runs, "baseline", lambda study, task, start, seed: base)
    study = table2_runs.Study(tmp_path / "runs", tmp_path / "results", quick=False)
    start, plan = Start(1e-4, None, 10), table2_runs.PLANS["STS-B"]
    assert plan.retrain_grid == (3, 10)

    table2_distill.distill(study, "STS-B", start, plan.seeds)
    retrains = [(name, values["seed"]) for name, phase, values in calls if phase == "retrain"]
    first = [name for name, seed in retrains if seed == "1"]
    assert first == [start.retrain_name(arm, e, 1) for e in (3, 10)
                     for arm in ("plain", "logits", "ranking")]  # every setting and schedule
    # the other seeds: the plain arm at its best schedule (10), the distilled at its best
    # (setting, schedule), ranking at 10 epochs
    assert [name for name, seed in retrains if seed != "1"] == [
        start.retrain_name("plain", 10, 2), start.retrain_name("ranking", 10, 2),
        start.retrain_name("plain", 10, 3), start.retrain_name("ranking", 10, 3)]
    searches = [(name, values["seed"]) for name, phase, values in calls if phase == "search"]
    assert searches == [(start.power_name(s), str(s)) for s in (1, 2, 3)]  # once a seed
    for arm in ("plain", "ranking"):  # both arms retrain from the seed's one search
        folder = study.runs("STS-B") / start.retrain_name(arm, 10, 2) / "STS-B"
        assert (folder / "search").resolve() == (
            study.runs("STS-B") / start.power_name(2) / "STS-B" / "search").resolve()
        assert (folder / "finetune").resolve() == (base / "STS-B" / "finetune").resolve()

    runs = load(study.results("STS-B"))
    record = runs[start.retrain_name("ranking", 10, 2)]
    assert record["distill_flags"][0] == "--distill=logits+ranking"
    assert "--retrain_epochs=10" in record["command"] and record["git_commit"]
    assert record["cpu"]["name"] and record["wall_seconds"] >= 0
    assert record["power_bert_dev"] == 0.842 and record["search"].startswith("power_")
    assert record["served"]["bucketed_sorted"] == {"speedup": {"median": 1.6}, "flop_bound": 1.7}

    calls.clear()
    table2_distill.distill(study, "STS-B", start, plan.seeds)
    assert calls == []  # every run's JSON exists: skipped

    row = distill_summary("STS-B", runs, start, plan.seeds, plan.distill_candidates,
                          plan.retrain_grid)
    assert (row["setting"], row["schedule"], row["plain_schedule"]) == ("ranking", 10, 10)
    assert row["seeds"] == [1, 2, 3]
    assert abs(row["change"][0] - 0.02) < 1e-9 and row["change"][1] < 1e-9  # paired
    table = distill_table([row])
    assert "| STS-B | spearman | 3 | 85.0 ± 0.0 | 82.2 ± 0.1 (10) | 84.2 ± 0.1 (ranking, 10) " \
           "| +2.0 ± 0.0 | -2.8 ± 0.1 | -0.8 ± 0.1 | " in table
    assert row["speedup_sorted_buckets"] == 1.6 and "| 2.2x / 2.10x | 1.60x |" in table


def test_the_other_seeds_wait_for_the_first_seeds_choice(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(runner, "run_glue", _fake_run_glue(calls))
    base = tmp_path / "base"
    (base / "STS-B" / "finetune").mkdir(parents=True)
    monkeypatch.setattr(table2_runs, "baseline", lambda study, task, start, seed: base)
    study = table2_runs.Study(tmp_path / "runs", tmp_path / "results", quick=False)
    table2_distill.distill(study, "STS-B", Start(1e-4, None, 10), (2, 3))
    assert calls == [] and "wait for seed 1's choice" in capsys.readouterr().out
