"""EnlightenGAN's losses and the optional terms, each registered in :mod:`engan.losses.registry`.

Adversarial (relativistic/plain LSGAN) and self-feature-preserving are the paper's; colour,
exposure, exposure order, identity, highlight and capture consistency are not.
"""
from engan.losses.color import color_angle_loss
from engan.losses.consistency import charbonnier, consistency_loss
from engan.losses.exposure import exposure_loss, mean_luma_of_images
from engan.losses.feature_nets import (
    FEATURE_NETS, EfficientNetLite0Features, FeatureNetError, FrozenFeatures, VGG16Relu51, build_feature_net,
)
from engan.losses.gan import lsgan_d_loss, lsgan_g_loss, ragan_d_loss, ragan_g_loss, to_disc_range
from engan.losses.highlight import highlight_loss
from engan.losses.identity import identity_loss
from engan.losses.order import exposure_order_loss
from engan.losses.patches import crop_patches, patch_offsets
from engan.losses.registry import (
    ActiveTerm, Critics, LossConfigError, LossTerm, TermInputs, get_term, needed_passes, normalized_terms,
    registered_terms, resolve_terms,
)
from engan.losses.sfp import SFPLoss, instance_norm

__all__ = [
    "FEATURE_NETS", "EfficientNetLite0Features", "FeatureNetError", "FrozenFeatures", "VGG16Relu51",
    "build_feature_net", "lsgan_d_loss", "lsgan_g_loss", "ragan_d_loss", "ragan_g_loss", "to_disc_range",
    "crop_patches", "patch_offsets", "SFPLoss", "instance_norm", "color_angle_loss", "charbonnier",
    "consistency_loss", "exposure_loss", "exposure_order_loss", "mean_luma_of_images", "identity_loss",
    "highlight_loss", "ActiveTerm", "Critics", "LossConfigError", "LossTerm", "TermInputs", "normalized_terms",
    "get_term", "needed_passes", "registered_terms", "resolve_terms",
]
