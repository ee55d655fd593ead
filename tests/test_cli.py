"""Every entry point's --help, and benchmarks without PyTorch."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def parsers() -> dict[str, argparse.ArgumentParser]:
    from benchmarks import scaling, study_time, throughput
    from jaxcnn.cli import config_names, study_parser
    from jaxcnn.commands import all_studies, report, sweep
    from jaxcnn.studies import STUDIES

    out = {f"experiments.{name}": study_parser(f"python -m experiments.{name}", "",
                                               config_names(study))
           for name, study in STUDIES.items()}
    out["experiments.report"] = report.build_parser()
    out["experiments.sweep"] = sweep.build_parser()
    captured = {}

    def capture(module, name):
        real = argparse.ArgumentParser.parse_args

        def grab(self, *args, **kwargs):
            captured[name] = self
            raise SystemExit(0)

        argparse.ArgumentParser.parse_args = grab
        try:
            with pytest.raises(SystemExit):
                module.main([])
        finally:
            argparse.ArgumentParser.parse_args = real

    for module, name in ((all_studies, "experiments.all"), (throughput, "benchmarks.throughput"),
                         (study_time, "benchmarks.study_time"), (scaling, "benchmarks.scaling")):
        capture(module, name)
    return {**out, **captured}


def test_every_flag_of_every_entry_point_says_what_it_does():
    for name, parser in parsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name}: {action.option_strings} has no help"
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: True)" not in text, name
        if name.startswith("benchmarks."):
            assert text.startswith(f"usage: python -m {name}"), name


def test_benchmarks_without_torch_say_how_to_install_it():
    """torch_reference needs PyTorch even for --help: one line, no traceback."""
    script = ("import sys, runpy; sys.modules['torch'] = None; "
              "sys.argv = ['torch_reference', '--help']; "
              "runpy.run_module('benchmarks.torch_reference', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "pip install -e '.[bench]'" in err, err
    assert "Traceback" not in err


def test_the_library_and_the_command_line_build_the_same_experiment():
    """Issue 17 item 4: --torch-parity's defaults live in Experiment itself."""
    from jaxcnn.cli import experiment_from, study_parser
    from jaxcnn.experiment import Experiment

    parser = study_parser("prog", "")
    parity = experiment_from(parser.parse_args(["--torch-parity"]))
    assert parity == Experiment(torch_parity=True)
    assert (parity.val_size, parity.normalization) == (0, "half")
    assert experiment_from(parser.parse_args([])) == Experiment()
    assert (Experiment().val_size, Experiment().normalization) == (5000, "dataset")
    explicit = experiment_from(parser.parse_args(["--torch-parity", "--val-size", "100"]))
    assert explicit == Experiment(torch_parity=True, val_size=100)
    assert explicit.flags() == ["--val-size", "100", "--torch-parity"]


@pytest.mark.parametrize("flag", ["--out", "--cache-dir"])
def test_an_empty_folder_path_is_refused(flag, capsys):
    """Issue 19 item 7: --out "" would silently write into the current folder."""
    from jaxcnn.cli import study_parser

    with pytest.raises(SystemExit) as exit_info:
        study_parser("prog", "").parse_args([flag, ""])
    assert exit_info.value.code == 2
    assert f"argument {flag}: an empty path; name a folder" in capsys.readouterr().err


def test_init_timeout_and_wait_are_documented():
    from jaxcnn.cli import study_parser

    text = " ".join(study_parser("prog", "").format_help().split())
    documented = text.split("--init-timeout SECONDS seconds")[1][:300]
    assert "the processes wait for each other" in documented and "(default: 90)" in documented
    assert "--wait if another run is writing to --out, wait for it" in text
