"""The CPU lowering of Threefry that `import pjrl_envs` registers: no loop, the same bits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pjrl_envs  # noqa: F401  (registers the lowering)
from pjrl_envs import prng

# jax.random under JAX's own (looped) CPU lowering, jax 0.10.2
SPLIT_0 = [[1797259609, 2579123966], [928981903, 3453687069], [4146024105, 2718843009]]
BITS_42 = [2098992034, 2919706841, 2646866425, 2409546199]


def test_threefry_compiles_without_a_loop_on_the_cpu():
    assert prng.active()
    bits = jax.jit(lambda k: jax.random.bits(k, (4,), jnp.uint32))
    assert " while(" not in bits.lower(jax.random.PRNGKey(42)).compile().as_text()


def test_the_bits_are_those_of_the_looped_lowering():
    np.testing.assert_array_equal(jax.random.key_data(jax.jit(lambda k: jax.random.split(k, 3))(
        jax.random.PRNGKey(0))), SPLIT_0)
    np.testing.assert_array_equal(jax.jit(lambda k: jax.random.bits(k, (4,), jnp.uint32))(jax.random.PRNGKey(42)),
                                  BITS_42)
    vmapped = jax.jit(jax.vmap(lambda k: jax.random.bits(k, (4,), jnp.uint32)))(jnp.stack([jax.random.PRNGKey(42)] * 2))
    np.testing.assert_array_equal(vmapped, [BITS_42] * 2)


def test_looped_lowers_with_the_loop_inside_and_without_it_after():
    def program():  # a fresh function each time: jit caches what it lowered per function
        return jax.jit(lambda k: jax.random.bits(k, (4,), jnp.uint32)).lower(jax.random.PRNGKey(42)).compile()

    with prng.looped():
        looped = program()
    assert " while(" in looped.as_text()
    np.testing.assert_array_equal(looped(jax.random.PRNGKey(42)), BITS_42)
    assert " while(" not in program().as_text()
    with pytest.raises(KeyError), prng.looped():
        raise KeyError("a failure while lowering")
    assert " while(" not in program().as_text()


def test_held_keeps_each_hash_in_a_kernel_of_its_own_with_the_same_bits_and_only_inside():
    def derived(key):  # a key derived once and drawn from in four places
        k = jax.random.split(key)[1]
        return jnp.stack([jax.random.uniform(jax.random.fold_in(k, i), (3,)) for i in range(4)])

    def program(fn):  # a fresh function each time: jit caches what it lowered per function
        return jax.jit(lambda k: fn(k)).lower(jax.random.PRNGKey(3)).compile()

    with prng.held():
        held = program(derived)
        held_bits = program(lambda k: jax.random.bits(k, (4,), jnp.uint32))
        held_split = program(lambda k: jax.random.key_data(jax.random.split(k, 3)))
    assert " divide(" in held.as_text()  # the integer divide by a one XLA cannot see through
    np.testing.assert_array_equal(held(jax.random.PRNGKey(3)), program(derived)(jax.random.PRNGKey(3)))
    np.testing.assert_array_equal(held_bits(jax.random.PRNGKey(42)), BITS_42)
    np.testing.assert_array_equal(held_split(jax.random.PRNGKey(0)), SPLIT_0)
    assert " divide(" not in program(derived).as_text()
    with pytest.raises(KeyError), prng.held():
        raise KeyError("a failure while lowering")
    assert " divide(" not in program(derived).as_text()
