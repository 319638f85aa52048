"""Settings declared once: every field of the worker's settings (the engine's included) is an
option, an environment variable and a config-file key, with one precedence."""

import click
from click.testing import CliRunner

from livemon.agents.settings import WorkerSettings
from livemon.agents.worker import worker
from livemon.engine import EngineConfig
from livemon.settings import build, config_option, names, options


@click.command()
@config_option("worker")
@options(WorkerSettings, exclude=("clockless_future_limit",))
def show(**values):
    settings = build(WorkerSettings, values)
    click.echo(f"{settings.web_port} {settings.engine.window} {settings.engine.lateness} {settings.group} "
               f"{settings.web_page}")


def run(args, env=None):
    result = CliRunner().invoke(show, ["--broker", "b:9092", *args], env=env or {})
    assert result.exit_code == 0, result.output
    return result.output.split()


def test_defaults_come_from_the_dataclasses():
    assert run([]) == [str(WorkerSettings.__dataclass_fields__["web_port"].default),
                       str(EngineConfig().window), str(EngineConfig().lateness), "livemon", "True"]


def test_command_line_beats_environment_beats_config_file(tmp_path):
    config = tmp_path / "livemon.toml"
    config.write_text('[worker]\nweb_port = 7001\nwindow = 120.0\nlateness = 7.0\ngroup = "from-file"\n'
                      'web_page = false\n')
    assert run(["--config", str(config)]) == ["7001", "120.0", "7.0", "from-file", "False"]
    env = {"LIVEMON_WEB_PORT": "7002", "LIVEMON_LATENESS": "8", "LIVEMON_WEB_PAGE": "true"}
    assert run(["--config", str(config)], env) == ["7002", "120.0", "8.0", "from-file", "True"]
    assert run(["--config", str(config), "--web-port", "7003"], env)[0] == "7003"


def test_a_config_file_with_an_unknown_key_or_a_bad_value_is_a_clear_error(tmp_path):
    config = tmp_path / "livemon.toml"
    config.write_text("[worker]\nweb_prot = 1\n")
    result = CliRunner().invoke(show, ["--broker", "b:1", "--config", str(config)])
    assert result.exit_code == 2 and "web_prot" in result.output
    result = CliRunner().invoke(show, ["--broker", "b:1", "--window", "61", "--step", "2"])
    assert result.exit_code != 0


def test_every_setting_of_the_worker_is_an_option_with_its_environment_variable():
    help_text = CliRunner().invoke(worker, ["--help"], terminal_width=200).output
    for name in names(WorkerSettings) - {"clockless_future_limit"}:
        env = "LIVEMON_BROKER" if name == "bootstrap" else (
            "LIVEMON_WORKER_DIR" if name == "data_dir" else f"LIVEMON_{name.upper()}")
        assert env in help_text, name
    assert "--config" in help_text
