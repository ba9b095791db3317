"""Losses of the inversion engine: NHWC images, one value per item; the networks are NNX module trees at their
official names, called functionally on plain-dict params (`jaxinv.models.nn.bind`).

Modules: `pixel` (L2 / L1), `vgg16` (VGG16 conv stack + loaders), `lpips` (LPIPS-VGG16 as the official
projector computes it), `identity` (dlib face-ID ResNet, face-api.js TF.js weights), `darknet` (real
ImageNet CNN perceptual features), `regularizers` (noise regulariser, w_avg distance, Z priors).
"""

from jaxinv.losses import darknet, identity, lpips, pixel, regularizers, vgg16
from jaxinv.losses.darknet import darknet_perceptual_features, load_darknet, perceptual_distance
from jaxinv.losses.identity import (
    cosine_similarity,
    face_descriptor,
    face_descriptor_from_image,
    identity_loss,
    load_face_id,
)
from jaxinv.losses.lpips import (
    load_lpips,
    lpips_distance,
    lpips_distance_to,
    lpips_features,
    nvlabs_vgg16_call,
    procedural_lpips,
)
from jaxinv.losses.pixel import l1_loss, l2_loss
from jaxinv.losses.regularizers import noise_regularization, w_avg_distance, z_gaussian_prior, z_norm_prior
from jaxinv.losses.vgg16 import load_vgg16, procedural_vgg16, vgg16_features

__all__ = [
    "darknet", "identity", "lpips", "pixel", "regularizers", "vgg16",
    "l1_loss", "l2_loss",
    "vgg16_features", "load_vgg16", "procedural_vgg16",
    "load_lpips", "procedural_lpips", "lpips_features", "lpips_distance", "lpips_distance_to", "nvlabs_vgg16_call",
    "load_face_id", "face_descriptor", "face_descriptor_from_image", "cosine_similarity", "identity_loss",
    "load_darknet", "darknet_perceptual_features", "perceptual_distance",
    "noise_regularization", "w_avg_distance", "z_gaussian_prior", "z_norm_prior",
]
