"""Memory planning: the first-width estimate, XLA's accounting of compiled programs, the plan."""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import pytest

from jaxcnn.configs import Configuration, hyperparams, stack
from jaxcnn.models.model import Network
from jaxcnn.models.modelfns import seed_cnn_fns
from jaxcnn.training import train
from jaxcnn.training.batching import over_members
from jaxcnn.training.members import Member
from jaxcnn.training.memory import (
    SAFETY,
    MemoryEstimate,
    compiled_member_bytes,
    forward_floats,
    member_bytes,
    plan_chunk,
)
from jaxcnn.training.runner import RunSettings, train_members
from tests.chunks import finished_members

MB = 2**20


@pytest.mark.parametrize("conv", ["winograd", pytest.param("patches", marks=pytest.mark.slow),
                                  pytest.param("xla", marks=pytest.mark.slow)])
@pytest.mark.slow
def test_first_width_estimate_errs_on_the_safe_side_of_xla(conv, tiny_data):
    """4 vmapped members: what XLA's accounting of the compiled programs charges a member
    (arguments + temporaries, training or evaluation) is at most the estimate that picks
    the first chunk width, so that width never overcommits before the compiler is asked.
    (How far below does not matter: the runner re-plans from the compiled program.)"""
    width, batch = 4, 16
    net, model = Network(), seed_cnn_fns(Network(), conv)
    hp = stack([hyperparams(Configuration(), 7)] * width)
    keys = train.stack_seed_keys(list(range(width)))
    states = jax.eval_shape(jax.vmap(lambda k, h: train.init_state(k, model, h)), keys, hp)
    epoch = jax.jit(over_members(train.make_train_epoch(model, num_train=100, batch_size=batch),
                                 "vmap", 2)).lower(states, keys, tiny_data.train, tiny_data.norm,
                                                   jnp.int32(0), jnp.int32(0)).compile()
    evaluate = jax.jit(over_members(train.make_evaluate(model), "vmap", 2)).lower(
        states.params, states.model_state, tiny_data.val, tiny_data.norm).compile()
    data = sum(x.nbytes for x in jax.tree.leaves((tiny_data.train, tiny_data.norm)))
    measured = compiled_member_bytes(epoch, evaluate, width, width, data, lockstep=True)
    estimate = member_bytes(net, batch, conv)
    assert 0 < measured.total <= estimate.total, (measured, estimate)
    assert measured.state > 0 and measured.training > 0 and measured.evaluation > 0


def test_layer_sizes_come_from_the_network():
    """The CIFAR-10 network's floats per image (as the hand count gave them before the
    sizes were read from the network), and a 28x28x1 network of 3 classes by hand."""
    assert [forward_floats(Network(), c) for c in ("winograd", "patches", "xla")] == [
        292362, 321034, 109066]
    # 28x28x1 -> conv1 patches 784*9 + 784*64 + 196*64; conv2 Winograd 16*49*128 + 196*64
    # + 49*64; conv3 16*12*96 + 49*32 + 9*32 (7 // 2 = 3); fc1 2*512; fc2 3.
    by_hand = (784 + 784 * 9 + 784 * 64 + 196 * 64 + 16 * 49 * 128 + 196 * 64 + 49 * 64
               + 16 * 12 * 96 + 49 * 32 + 9 * 32 + 2 * 512 + 3)
    assert forward_floats(Network(image_shape=(28, 28, 1), num_classes=3), "winograd") == by_hand


@pytest.mark.slow
def test_chunks_narrow_to_what_the_compiled_program_says_fits(tiny_data, programs, capsys):
    """A chunk of 4 whose compiled program (XLA's accounting) leaves room for 2 members
    is trained as 2 chunks of 2, saying so; lax.map gives the same bits either way."""
    members = [Member(c, s, hyperparams(Configuration(init=c), 7))
               for c in ("lecun", "he") for s in (0, 1)]
    whole = RunSettings(1, 16, "map", "winograd", 1, 4)
    program = programs.program(Network(), whole.resolved(), 4, tiny_data.num_train)
    program.warm_up(tiny_data, members[0].hparams)
    measured = program.member_bytes(tiny_data)
    free = int((tiny_data.nbytes + 2.5 * measured.total) / SAFETY)
    results = {}
    for name, settings in (("whole", whole), ("fitted", replace(whole, memory_free=free))):
        chunks = list(train_members(Network(), members, tiny_data, settings,
                                    programs=programs))
        results[name] = ({r.member.key: r.record for r in finished_members(chunks)},
                         len(chunks))
    assert results["whole"][1] == 1 and results["fitted"][1] == 2  # chunks of 4, of 2
    assert "2 successive chunks of 2" in capsys.readouterr().err
    assert results["fitted"][0] == results["whole"][0]


def test_plan_fits_everything_when_memory_allows():
    estimate = MemoryEstimate(state=10 * MB, training=90 * MB, evaluation=50 * MB)
    plan = plan_chunk(members=40, devices=4, estimate=estimate, data_bytes=200 * MB,
                      free=16 * 2**30)
    assert plan.members_per_device == 10 and plan.notice is None


def test_plan_chunks_what_does_not_fit_and_says_so():
    estimate = MemoryEstimate(state=10 * MB, training=90 * MB, evaluation=50 * MB)
    # 0.8 * 1000 MiB - 200 MiB of data leaves room for 6 members of 100 MiB per device.
    plan = plan_chunk(members=40, devices=2, estimate=estimate, data_bytes=200 * MB,
                      free=1000 * MB)
    assert plan.members_per_device == 6
    assert "4 successive chunks of 12" in plan.notice and "--members-per-chunk" in plan.notice
    tiny = plan_chunk(members=40, devices=1, estimate=estimate, data_bytes=200 * MB,
                      free=100 * MB)
    assert tiny.members_per_device == 1  # never zero: one member at a time at worst
    assert plan_chunk(40, 1, estimate, 0, None).members_per_device == 40  # unknown: no limit
