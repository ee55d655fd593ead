"""The public API from outside the package (issue 26, items 1-3 and its "done when").

README's example runs as written on a 28x28 grayscale tree of 3 classes, and a model zoo's
network (its own normalization layer, an ``is_training`` flag) and a model taking ``x``
alone train with ``optax.adamw`` and ``optax.lion``; in new processes ``jaxcnn evaluate``
gives back every recorded test accuracy and ``jaxcnn report`` covers the studies.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jaxcnn as jc
from tests.test_readme import README, python_blocks
from tests.test_run import grayscale_tree


def python(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python ARGS`` in a new process in ``cwd``, its decoded-data cache inside it."""
    env = {**os.environ, "JAXCNN_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def evaluated(cwd: Path, study: str, config: str) -> dict[int, float]:
    """seed -> test accuracy, as ``jaxcnn evaluate`` prints it in a new process."""
    proc = python(["-m", "jaxcnn.console", "evaluate", f"results/{study}", config], cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {int(s): float(a) for s, a in
            re.findall(r"seed (\d+): test accuracy ([\d.]+)%", proc.stdout)}


def assert_reproduced(cwd: Path, study: str) -> dict:
    results = json.loads((cwd / "results" / study / "results.json").read_text())
    for config, record in results["configs"].items():
        recorded = {s["seed"]: s["test_accuracy"] for s in record["seeds"]}
        got = evaluated(cwd, study, config)
        assert got.keys() == recorded.keys(), config
        for seed, accuracy in recorded.items():
            assert abs(got[seed] - accuracy) <= 0.01, (config, seed, got[seed], accuracy)
    return results


def test_the_readmes_example_runs_as_written(tmp_path):
    block = next(b for b in python_blocks(README.read_text()) if "jc.Study(" in b)
    (tmp_path / "mystudy.py").write_text(block)
    grayscale_tree(tmp_path / "my_images")
    proc = python(["mystudy.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    report = (tmp_path / "results" / "REPORT.md").read_text()
    assert "## Mine" in report and "`mine/sgd`" in report
    results = assert_reproduced(tmp_path, "mine")
    assert results["metadata"]["settings"]["seeds"] == "auto"
    # The recorded command reruns the study: jaxcnn run finds it in mystudy.py.
    assert results["metadata"]["command"].startswith("jaxcnn run mystudy.py:study ")
    config = results["configs"]["he"]
    assert config["model"]["init"] == "he" and config["model"]["model"] == "mine"
    proc = python(["-m", "jaxcnn.console", "predict", "results/mine", "sgd",
                   "my_images/test/b/0.png"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("my_images/test/b/0.png: ")


ZOO = textwrap.dedent('''
    """A model zoo's network, written for its own code base: an `is_training` flag that
    defaults to True, and a normalization layer of its own keeping running moments in a
    collection it names "moments"."""
    import flax.linen as nn
    import jax.numpy as jnp


    class RunningNorm(nn.Module):
        decay: float = 0.9

        @nn.compact
        def __call__(self, x, is_training: bool):
            mean = self.variable("moments", "mean", jnp.zeros, x.shape[-1:])
            var = self.variable("moments", "var", jnp.ones, x.shape[-1:])
            if is_training:
                m, v = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
                mean.value = self.decay * mean.value + (1 - self.decay) * m
                var.value = self.decay * var.value + (1 - self.decay) * v
            else:
                m, v = mean.value, var.value
            scale = self.param("scale", nn.initializers.ones, x.shape[-1:])
            return (x - m) / jnp.sqrt(v + 1e-5) * scale


    class ZooNet(nn.Module):
        num_classes: int

        @nn.compact
        def __call__(self, inputs, is_training: bool = True):
            x = nn.Conv(8, (3, 3), use_bias=False, name="stem")(inputs)
            x = nn.relu(RunningNorm()(x, is_training))
            return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))
''')

ZOO_STUDY = textwrap.dedent('''
    import flax.linen as nn
    import optax

    import jaxcnn as jc
    from zoo.nets import ZooNet


    class Plain(nn.Module):
        """A model whose __call__ takes x alone."""
        num_classes: int

        @nn.compact
        def __call__(self, x):
            return nn.Dense(self.num_classes)(nn.relu(nn.Dense(16)(x.reshape(len(x), -1))))


    def plain(data):
        return Plain(data.num_classes)


    study = jc.Study("zoo", model=lambda data: ZooNet(data.num_classes), variants={
        "adamw": jc.Variant(optimizer=optax.adamw(3e-3, weight_decay=1e-4)),
        "lion": jc.Variant(optimizer=jc.Optimizer(optax.lion, learning_rate=3e-4)),
        "plain_adamw": jc.Variant(model=plain, optimizer=optax.adamw(3e-3)),
        "plain_lion": jc.Variant(model=plain, optimizer=jc.Optimizer(optax.lion,
                                                                     learning_rate=3e-4))})

    if __name__ == "__main__":
        jc.run(study, data="tree", seeds=2, epochs=2, batch_size=16, out="results",
               progress=False)
''')


@pytest.mark.slow  # about 40 s on 2 cores: four programs compiled, five new processes
def test_a_model_zoos_network_and_an_x_only_model_train_with_adamw_and_lion(tmp_path):
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "__init__.py").write_text("")
    (tmp_path / "zoo" / "nets.py").write_text(ZOO)
    (tmp_path / "zoo_study.py").write_text(ZOO_STUDY)
    grayscale_tree(tmp_path / "tree")
    proc = python(["zoo_study.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = assert_reproduced(tmp_path, "zoo")  # in new processes, from the zoo's package
    assert set(results["configs"]) == {"adamw", "lion", "plain_adamw", "plain_lion"}
    meta = json.loads((tmp_path / "results/zoo/params/lion/meta.json").read_text())
    assert meta["model"]["model"] == "zoo"
    # The zoo's own running moments are each member's state, saved with its parameters.
    proc = python(["-c", "import jaxcnn as jc; m = jc.load('results', 'zoo', 'lion'); "
                         "v = m.variables(1); print(sorted(v), m.input_shape, "
                         "type(m.module()).__name__)"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "['moments', 'params'] (28, 28, 1) ZooNet"
    proc = python(["-m", "jaxcnn.console", "report", "--out", "results", "--no-progress"],
                  tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "## Zoo" in (tmp_path / "results" / "REPORT.md").read_text()


def test_run_rejects_bad_options_in_one_line(tmp_path):
    study = jc.Study("mine", variants={"a": jc.Variant()})
    with pytest.raises(TypeError, match="unknown option 'epoch'"):
        jc.run(study, data="synthetic", epoch=2, out=tmp_path)
    with pytest.raises(ValueError, match="argument --seeds: 'many'"):
        jc.run(study, data="synthetic", seeds="many", out=tmp_path)
    with pytest.raises(ValueError, match="reference 'b' is not one of its variants"):
        jc.Study("mine", reference="b", variants={"a": jc.Variant()})
    with pytest.raises(ValueError, match="give variants="):
        jc.Study("mine")
    assert not any(tmp_path.iterdir())


def test_the_public_names_resolve():
    for name in jc.__all__:
        assert getattr(jc, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        jc.nothing  # noqa: B018
