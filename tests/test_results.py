"""Tidy result rows are appended atomically and read back exactly."""

from pathlib import Path

import pytest

from discrete_priors.results import COLUMNS, append_rows, has_cell, make_rows, read_rows


def test_rows_round_trip_and_cells_are_found(tmp_path):
    path = tmp_path / "results.csv"
    append_rows(path, make_rows(experiment="steps", variant="bernoulli/S=16", seed=0, metrics={"fd": 1.5, "recall": 0.25}))
    append_rows(path, make_rows(experiment="steps", variant="bernoulli/S=32", seed=1, metrics={"fd": 1.25}))
    df = read_rows(path)
    assert list(df.columns) == list(COLUMNS)
    assert df["value"].tolist() == [1.5, 0.25, 1.25]
    assert has_cell(path, experiment="steps", variant="bernoulli/S=32", seed=1)
    assert not has_cell(path, experiment="steps", variant="bernoulli/S=32", seed=0)


def test_a_crash_mid_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    append_rows(path, make_rows(experiment="e", variant="v", seed=0, metrics={"m": 1.0}))
    before = path.read_text()

    def write_half_then_crash(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[: len(text) // 2])
        raise OSError("simulated crash mid-write")

    monkeypatch.setattr(Path, "write_text", write_half_then_crash)
    with pytest.raises(OSError, match="simulated"):
        append_rows(path, make_rows(experiment="e", variant="w", seed=0, metrics={"m": 2.0}))
    monkeypatch.undo()
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary file left behind
    with pytest.raises(ValueError, match="unknown result columns"):
        append_rows(path, [{"experiment": "e", "bogus": 1}])


def test_nan_metric_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        make_rows(experiment="e", variant="v", seed=0, metrics={"fd": float("nan")})


OLD_COLUMNS = ("experiment", "variant", "seed", "metric", "value", "extractor", "num_samples", "config_hash",
               "code_version", "machine", "timestamp")


def test_a_csv_from_before_train_step_reads_with_it_empty_and_refuses_appends(tmp_path):
    from analysis.tables import load_results

    path = tmp_path / "results.csv"
    path.write_text(",".join(OLD_COLUMNS) + "\nsamplers,bernoulli,0,fd,12.5,clf,1000,abc,v,m,t\n")
    df = read_rows(path)
    assert list(df.columns) == list(COLUMNS) and df["train_step"].tolist() == [""]
    loaded = load_results(path)
    assert loaded["train_step"].isna().all() and loaded["value"].tolist() == [12.5]
    assert has_cell(path, experiment="samplers", variant="bernoulli", seed=0)  # a row not from a curve
    assert not has_cell(path, experiment="samplers", variant="bernoulli", seed=0, train_step=1500)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"results\.csv has columns .* new --out"):
        append_rows(path, make_rows(experiment="samplers", variant="absorbing", seed=0, metrics={"fd": 1.0}))
    assert path.read_bytes() == before  # nothing misaligned was written


def test_cells_are_keyed_on_train_step(tmp_path):
    from discrete_priors.results import cell_values

    path = tmp_path / "results.csv"
    for step, fd in ((750, 20.0), (1500, 10.0)):
        append_rows(path, make_rows(experiment="samplers", variant="bernoulli", seed=0, metrics={"fd": fd},
                                    train_step=step, config_hash="h"))
    assert read_rows(path)["train_step"].tolist() == [750, 1500]
    assert cell_values(path, experiment="samplers", variant="bernoulli", seed=0, train_step=1500) == {"fd": 10.0}
    assert cell_values(path, experiment="samplers", variant="bernoulli", seed=0, train_step=750) == {"fd": 20.0}
    assert not has_cell(path, experiment="samplers", variant="bernoulli", seed=0)  # no row without a step
    with pytest.raises(ValueError, match="step 750 from another configuration"):
        has_cell(path, experiment="samplers", variant="bernoulli", seed=0, train_step=750, config_hash="other")
