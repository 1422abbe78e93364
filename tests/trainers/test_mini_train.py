"""Where `tourney mini train` writes: under its work folder, the shipped files only with --install."""
from pathlib import Path

from click.testing import CliRunner

from tourney.cli.main import main
from tourney.trainers import mini


def fake_pretrain(arch, tokenizer, rows, cfg, log=print):
    """Stands in for training (this test is about files, not weights): writes a `final` folder."""
    final = Path(cfg.out_dir) / "final"
    final.mkdir(parents=True, exist_ok=True)
    (final / "config.json").write_text(f'{{"hidden_size": {arch.hidden_size}, "epochs": {cfg.epochs}}}')
    assert any("text" in r for r in rows) and any(r.get("choices") for r in rows)


def test_default_writes_under_work_and_install_replaces_the_shipped_files(tmp_path, monkeypatch):
    shipped, splits = tmp_path / "pkg" / "checkpoints", tmp_path / "pkg" / "data"
    monkeypatch.setattr(mini, "pretrain", fake_pretrain)
    monkeypatch.setattr(mini, "MINI_DIR", shipped)
    monkeypatch.setattr(mini, "MINI_SPLITS", splits)
    finals = mini.train_mini(tmp_path / "work", log=lambda _m: None)
    assert finals == {n: tmp_path / "work" / "models" / n for n in ("teacher", "student")}
    assert '"epochs": 4' in (finals["teacher"] / "config.json").read_text()
    assert '"epochs": 2' in (finals["student"] / "config.json").read_text()
    assert not shipped.exists() and not splits.exists()
    assert (tmp_path / "work" / "tokenizer" / "tokenizer.json").exists()
    installed = mini.train_mini(tmp_path / "work", which=("student",), install=True, log=lambda _m: None)
    assert installed == {"student": shipped / "student"} and (shipped / "student" / "config.json").exists()
    assert not (shipped / "teacher").exists()
    assert (splits / "test.jsonl").read_bytes() == (tmp_path / "work" / "data" / "test.jsonl").read_bytes()


def test_mini_data_says_what_it_writes(tmp_path):
    res = CliRunner().invoke(main, ["mini", "data", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for name in ("train", "facts", "dev", "test"):
        assert f"{name}: {tmp_path / (name + '.jsonl')}" in res.output
