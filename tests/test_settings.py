from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.errors import ConfigError
from smartmeter.secrets import get_secret
from smartmeter.settings import Settings, load_settings, parse_settings

GOOD = """\
store:
  backend: local
  local:
    root: /tmp/photos
meters:
  - id: home
    max_power_w: 6000
"""


def test_defaults_are_embedded() -> None:
    s = Settings()
    assert s.store.backend == "local"
    assert s.database.url.startswith("sqlite:///")
    assert s.meter("unknown").max_power_w == pytest.approx(3 * 63 * 230)


def test_good_file_parses() -> None:
    s = parse_settings(GOOD)
    assert s.store.local.root == Path("/tmp/photos")
    assert s.meter("home").max_power_w == 6000


def test_unknown_key_names_key_and_line() -> None:
    text = GOOD + "  - id: other\n    max_powr_w: 5\n"
    with pytest.raises(ConfigError) as err:
        parse_settings(text, "x.yaml")
    assert "x.yaml:9" in str(err.value)
    assert "meters.1.max_powr_w" in str(err.value)
    assert "unknown key" in str(err.value)


def test_bad_value_names_key_and_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings("api:\n  port: 99999\n", "y.yaml")
    assert "y.yaml:2" in str(err.value) and "api.port" in str(err.value)


def test_bad_yaml_names_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings("store:\n  backend: [local\n", "z.yaml")
    assert "z.yaml:" in str(err.value) and "YAML" in str(err.value)


def test_every_field_is_described() -> None:
    def walk(model: type) -> None:
        for name, f in model.model_fields.items():  # type: ignore[attr-defined]
            assert f.description, f"{model.__name__}.{name} has no description"
            ann = f.annotation
            for cand in getattr(ann, "__args__", (ann,)):
                if isinstance(cand, type) and hasattr(cand, "model_fields"):
                    walk(cand)

    walk(Settings)


def test_config_check_cli_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text("store:\n  backend: ftp\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["config", "check", str(good)]).exit_code == 0
    res = runner.invoke(cli, ["config", "check", str(bad)])
    assert res.exit_code == 2
    assert "store.backend" in res.output and "bad.yaml:2" in res.output
    assert runner.invoke(cli, ["config", "check", str(tmp_path / "missing.yaml")]).exit_code == 2


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMARTMETER_X_TOKEN", raising=False)
    monkeypatch.delenv("SMARTMETER_X_TOKEN_FILE", raising=False)
    with pytest.raises(ConfigError, match="SMARTMETER_X_TOKEN"):
        get_secret("x_token")
    f = tmp_path / "tok"
    f.write_text("from-file\n")
    monkeypatch.setenv("SMARTMETER_X_TOKEN_FILE", str(f))
    assert get_secret("x_token").get_secret_value() == "from-file"  # type: ignore[union-attr]
    monkeypatch.setenv("SMARTMETER_X_TOKEN", "from-env")
    secret = get_secret("x_token")
    assert secret is not None and "from-env" not in repr(secret)


def test_load_settings_none_is_defaults() -> None:
    assert load_settings(None) == Settings()
