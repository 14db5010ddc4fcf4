import jax
import jax.numpy as jnp
import numpy as np

from jaxsora.train.metrics import psnr, ssim


def test_psnr_matches_the_formula():
    x = jax.random.uniform(jax.random.key(0), (2, 3, 16, 16, 3), minval=-1, maxval=1)
    y = x + 0.1
    np.testing.assert_allclose(np.asarray(psnr(x, y)), 10 * np.log10(4 / 0.01), rtol=1e-5)


def test_ssim_is_one_for_identical_and_drops_with_noise():
    x = jax.random.uniform(jax.random.key(1), (2, 2, 32, 32, 3), minval=-1, maxval=1)
    np.testing.assert_allclose(np.asarray(ssim(x, x)), 1.0, atol=1e-5)
    noisy = jnp.clip(x + 0.3 * jax.random.normal(jax.random.key(2), x.shape), -1, 1)
    s = np.asarray(ssim(x, noisy))
    assert (s < 0.9).all() and (s > -1).all()
    assert (np.asarray(ssim(x, 0.5 * noisy + 0.5 * x)) > s).all()
