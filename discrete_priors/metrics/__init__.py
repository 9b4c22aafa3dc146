"""Evaluation metrics: Fréchet distance and precision/recall/density/coverage on pluggable
features, PSNR/SSIM, latent code statistics, memorisation and sampling speed.

Typical use::

    extractor = get_extractor("classifier:digits")            # record extractor.name per row
    ref = feature_stats(extractor.features(test_images))      # cache reference statistics
    fd = frechet_distance(ref, extractor.features(samples))
    prdc = precision_recall(extractor.features(test_images), extractor.features(samples))
"""

from discrete_priors.metrics.bootstrap import BootstrapEstimate, bootstrap_quality
from discrete_priors.metrics.classifier import (
    ClassAgreement,
    ClassifierExtractor,
    SmallCNN,
    class_agreement,
    load_or_train_classifier,
)
from discrete_priors.metrics.codes import (
    BinaryCodeStats,
    CategoricalCodeStats,
    binary_code_stats,
    binary_entropy_bits,
    categorical_code_stats,
)
from discrete_priors.metrics.distances import FeatureStats, feature_stats, frechet_distance
from discrete_priors.metrics.features import FeatureExtractor, InceptionExtractor, get_extractor
from discrete_priors.metrics.inception import TFInceptionExtractor
from discrete_priors.metrics.memorisation import (
    Memorisation,
    MemorisationStats,
    NearestNeighbours,
    memorisation,
    memorisation_stats,
    nearest_neighbours,
)
from discrete_priors.metrics.precision_recall import PRDC, knn_radii, precision_recall
from discrete_priors.metrics.reconstruction import ImageScore, psnr, reconstruction_metrics, ssim, ssim_map
from discrete_priors.metrics.speed import Throughput, measure_throughput

__all__ = [
    "PRDC",
    "BinaryCodeStats",
    "BootstrapEstimate",
    "CategoricalCodeStats",
    "ClassAgreement",
    "ClassifierExtractor",
    "FeatureExtractor",
    "FeatureStats",
    "ImageScore",
    "InceptionExtractor",
    "Memorisation",
    "MemorisationStats",
    "NearestNeighbours",
    "SmallCNN",
    "TFInceptionExtractor",
    "Throughput",
    "binary_code_stats",
    "binary_entropy_bits",
    "bootstrap_quality",
    "categorical_code_stats",
    "class_agreement",
    "feature_stats",
    "frechet_distance",
    "get_extractor",
    "knn_radii",
    "load_or_train_classifier",
    "measure_throughput",
    "memorisation",
    "memorisation_stats",
    "nearest_neighbours",
    "precision_recall",
    "psnr",
    "reconstruction_metrics",
    "ssim",
    "ssim_map",
]
