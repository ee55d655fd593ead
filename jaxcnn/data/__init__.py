"""CIFAR-10 sources, caching, splits and normalisation."""

from jaxcnn.data.dataset import Dataset
from jaxcnn.data.sources import load_dataset
from jaxcnn.data.splits import Normalization, PreparedData, Split, prepare_data

__all__ = ["Dataset", "Normalization", "PreparedData", "Split", "load_dataset", "prepare_data"]
