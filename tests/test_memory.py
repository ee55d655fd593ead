"""Memory planning: the estimate against XLA's own accounting, and the chunk plan."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from jaxcnn import train
from jaxcnn.batching import over_members
from jaxcnn.configs import Configuration, hyperparams, stack
from jaxcnn.memory import MemoryEstimate, member_bytes, plan_chunk
from jaxcnn.model import CNN, Network

MB = 2**20


@pytest.mark.parametrize("conv", ["winograd", pytest.param("patches", marks=pytest.mark.slow),
                                  pytest.param("xla", marks=pytest.mark.slow)])
def test_estimate_bounds_what_xla_allocates(conv, tiny_data):
    """4 vmapped members: XLA's arguments + temporaries per member, for training and for
    evaluation, fall between 0.3x and 1x of the estimate."""
    width, batch = 4, 16
    net, model = Network(), CNN(Network(), conv=conv)
    hp = stack([hyperparams(Configuration(), 7)] * width)
    keys = train.stack_seed_keys(list(range(width)))
    states = jax.eval_shape(jax.vmap(lambda k, h: train.init_state(k, net, h)), keys, hp)
    epoch = jax.jit(over_members(train.make_train_epoch(model, num_train=100, batch_size=batch),
                                 "vmap", 2)).lower(states, keys, tiny_data.train, tiny_data.norm,
                                                   jnp.int32(0), jnp.int32(0)).compile()
    evaluate = jax.jit(over_members(train.make_evaluate(model), "vmap", 1)).lower(
        states.params, tiny_data.val, tiny_data.norm).compile()
    data = sum(x.nbytes for x in jax.tree.leaves(tiny_data.train))
    used = {}
    for name, compiled in (("training", epoch), ("evaluation", evaluate)):
        analysis = compiled.memory_analysis()
        used[name] = analysis.temp_size_in_bytes / width
    state = (epoch.memory_analysis().argument_size_in_bytes - data) / width
    actual = state + max(used.values())
    estimate = member_bytes(net, batch, conv)
    assert 0.3 <= actual / estimate.total <= 1.0, (actual / MB, estimate)


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
