from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.errors import ConfigError
from smartmeter.ocr.profile import Profile
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


# --- ocr.reader: one reader configuration --------------------------------------------------------------------

def test_ocr_reader_is_one_section_per_engine() -> None:
    from smartmeter.settings import CnnReaderSettings, TesseractReaderSettings

    assert Settings().ocr.reader == CnnReaderSettings()
    s = parse_settings("ocr:\n  reader:\n    engine: tesseract\n    timeout_s: 5\n    min_confidence: 0.9\n")
    assert s.ocr.reader == TesseractReaderSettings(engine="tesseract", timeout_s=5, min_confidence=0.9)
    assert parse_settings("ocr: {reader: tesseract}").ocr.reader.engine == "tesseract"  # short for {engine: ...}
    with pytest.raises(ConfigError) as err:  # a key of the other engine: named as written, on its line
        parse_settings("ocr:\n  reader:\n    engine: tesseract\n    model: x.onnx\n", "s.yaml")
    assert "s.yaml:4: ocr.reader.model: unknown key" in str(err.value)
    with pytest.raises(ConfigError, match=r"s.yaml:3: ocr.reader.timeout_s: "):
        parse_settings("ocr:\n  reader:\n    timeout_s: 0\n    engine: tesseract\n", "s.yaml")
    with pytest.raises(ConfigError, match="ocr.reader: .*'cnn', 'tesseract'"):
        parse_settings("ocr: {reader: {engine: abacus}}")


def test_old_ocr_keys_move_under_reader_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    s = parse_settings("ocr:\n  engine: tesseract\n  min_confidence: 0.99\n")
    assert (s.ocr.reader.engine, s.ocr.reader.min_confidence) == ("tesseract", 0.99)
    assert "ocr.engine, ocr.min_confidence: deprecated, write it under ocr.reader" in caplog.text
    assert parse_settings("ocr: {model: /m.onnx, threads: 2}").ocr.reader.model == Path("/m.onnx")
    with pytest.raises(ConfigError, match="ocr.engine must move into ocr.reader"):
        parse_settings("ocr: {engine: cnn, reader: {engine: cnn}}")


def _profile(**extra: object) -> Profile:
    return Profile.model_validate({"digits": [[0, 0, 10, 10]], **extra})


def test_reader_precedence_cli_then_profile_then_settings() -> None:
    from smartmeter.ocr.readers import resolve_reader, with_threshold
    from smartmeter.settings import CnnReaderSettings, TesseractReaderSettings

    ocr = parse_settings("ocr: {reader: {engine: tesseract, timeout_s: 7, min_confidence: 0.9}}").ocr
    tess = TesseractReaderSettings(engine="tesseract", timeout_s=7, min_confidence=0.9)
    assert resolve_reader(ocr) == tess
    assert resolve_reader(ocr, _profile()) == tess  # a profile without reader: the settings.
    same = _profile(reader={"engine": "tesseract", "min_confidence": 0.6})  # same engine: only its keys change
    assert resolve_reader(ocr, same) == tess.model_copy(update={"min_confidence": 0.6})
    other = _profile(reader={"engine": "cnn", "threads": 3})  # another engine: its defaults and its keys
    assert resolve_reader(ocr, other) == CnnReaderSettings(threads=3)
    assert resolve_reader(ocr, same, "cnn") == CnnReaderSettings()
    assert resolve_reader(ocr, None, "tesseract") == tess  # the CLI names the engine in effect: nothing changes
    legacy = _profile(reader="cnn", min_confidence=0.7)  # what proposed profiles used to say
    config = resolve_reader(ocr, legacy)
    assert config == CnnReaderSettings(min_confidence=0.7)
    assert with_threshold(legacy, config).min_confidence == 0.7
    assert with_threshold(_profile(), tess).min_confidence == 0.9
    assert resolve_reader(None) == CnnReaderSettings()


def test_a_written_profile_pins_no_reader_unless_it_chose_one() -> None:
    text = Profile(digits=[(0, 0, 10, 10)]).to_yaml()
    assert "reader" not in text and "min_confidence" not in text  # the settings decide
    chosen = Profile.model_validate({"digits": [[0, 0, 10, 10]], "reader": {"engine": "tesseract", "timeout_s": 3}})
    again = Profile.model_validate(yaml.safe_load(chosen.to_yaml()))
    assert again.reader == chosen.reader and yaml.safe_load(chosen.to_yaml())["reader"] == {
        "engine": "tesseract", "timeout_s": 3.0}


def test_smartmeter_read_follows_the_same_precedence(tmp_path: Path) -> None:
    import json

    from test_worker_faults import PHOTOS, unpinned_profile

    cfg = tmp_path / "smartmeter.yaml"
    cfg.write_text("ocr: {reader: {engine: cnn, min_confidence: 0.9999}}\n")
    photo = str(PHOTOS / "upright.jpg")
    run = CliRunner().invoke
    res = run(cli, ["-c", str(cfg), "read", photo, "--profile", str(unpinned_profile(tmp_path))])
    assert res.exit_code == 3 and "confidence below 0.9999" in json.loads(res.stdout)["error"], res.output
    res = run(cli, ["-c", str(cfg), "read", photo, "--profile", str(PHOTOS / "meter.yaml")])  # says 0.5 itself
    assert res.exit_code == 0 and json.loads(res.stdout)["reading"] == "0048127.3", res.output
    unpinned = str(unpinned_profile(tmp_path))
    res = run(cli, ["-c", str(cfg), "read", photo, "--profile", unpinned, "--engine", "tesseract"])
    assert res.exit_code == 3 and "confidence below 0.5" in json.loads(res.stdout)["error"]  # tesseract's defaults
