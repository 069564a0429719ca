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
