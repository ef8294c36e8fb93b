"""Thin shim: metadata lives in setup.cfg.

The only logic here ships the top-level ``data_manifests/`` folder (ICD-10 map, example
manifests) inside the installed package as ``skin_cnn.data_manifests``, so a wheel install finds
the same files a source checkout does.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks", "benchmarks.*", "data_manifests"])
    + ["skin_cnn.data_manifests"],
    package_dir={"skin_cnn.data_manifests": "data_manifests"},
)
