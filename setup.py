"""Installs tfrank: TensorFlow-native learning-to-rank."""

from setuptools import find_packages, setup

setup(
    name="tfrank",
    version="0.1.0",
    description="TensorFlow-native learning-to-rank: ranking losses, metrics, tf.data lists, serving.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfrank", "tfrank.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-datasets>=4.9",
        "numpy",
        "absl-py",
    ],
    extras_require={
        # tfds 4.9.10 imports importlib_resources when it prepares a dataset but does not declare it.
        "tfds": ["importlib_resources"],
        "test": ["pytest", "ruff"],
        "bench": ["keras-rs", "psutil"],
    },
)
