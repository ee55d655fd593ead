"""Data augmentation on the device: random crop (zero padding) and horizontal flip.

The worked example of a batch regularizer (``regularizers.py``): torchvision's
``RandomCrop(32, padding=4)`` followed by ``RandomHorizontalFlip()``, applied to
each image with probability ``strength``, on uint8 images before normalisation,
so the padding is black pixels exactly as torchvision pads a PIL image or uint8
tensor with ``fill=0``. Strength 1 is torchvision's recipe; strength 0 returns
the batch bit for bit (a select, never arithmetic on the pixels).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PAD = 4  # pixels of zeros on each side before the crop, as RandomCrop(padding=4)


def crop_and_flip(key: jax.Array, images: jax.Array, strength: jax.Array | float) -> jax.Array:
    """Augments each image with probability ``strength``.

    An augmented image is a random (H, W) window of the image zero-padded by ``PAD``
    on each side (offsets uniform in [0, 2 * PAD], as torchvision), mirrored left to
    right with probability 1/2. Draws are per image, from ``key``.

    Args:
      key: this batch's augmentation key.
      images: (B, H, W, C), any dtype (uint8 in training).
      strength: () float in [0, 1]; may be traced (a member's hyperparameter).

    Returns:
      (B, H, W, C), ``images``' dtype; exactly ``images`` where not augmented.
    """
    b, h, w, c = images.shape
    k_apply, k_offset, k_flip = jax.random.split(key, 3)
    # uniform draws are in [0, 1): none is below 0, every one is below 1.
    chosen = jax.random.uniform(k_apply, (b,)) < strength
    offsets = jax.random.randint(k_offset, (b, 2), 0, 2 * PAD + 1)
    flip = jax.random.bernoulli(k_flip, 0.5, (b,))
    padded = jnp.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
    crops = jax.vmap(lambda image, at: jax.lax.dynamic_slice(
        image, (at[0], at[1], 0), (h, w, c)))(padded, offsets)
    crops = jnp.where(flip[:, None, None, None], crops[:, :, ::-1], crops)
    return jnp.where(chosen[:, None, None, None], crops, images)
