"""Helpers of the ml_experiment example: a local package the steps import, as in the seed."""

from local_package.data import data_processor, data_validator, fetch_data
from local_package.model import Model

__all__ = ["Model", "data_processor", "data_validator", "fetch_data"]
