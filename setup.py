"""Installs tfrank: TensorFlow-native learning-to-rank."""

from setuptools import find_packages, setup

setup(
    name="tfrank",
    version="0.1.0",
    description="TensorFlow-native learning-to-rank: ranking losses, metrics, tf.data lists, serving.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # bin/ is installed as the package tfrank_bin, whose console scripts run bin/train.py and bin/rank.py.
    packages=find_packages(include=["tfrank", "tfrank.*"]) + ["tfrank_bin"],
    package_dir={"tfrank_bin": "bin"},
    entry_points={"console_scripts": ["tfrank-train = tfrank_bin:train", "tfrank-rank = tfrank_bin:rank"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-datasets>=4.9",
        "numpy",
        "absl-py",
        # tensorflow-datasets imports it when it prepares a data set but does not declare it.
        "importlib_resources",
    ],
    extras_require={
        # TensorFlow no longer installs TensorBoard; the training run writes its event files without it.
        "tensorboard": ["tensorboard>=2.21,<2.22"],
        # tensorboard: the tests run README's `tensorboard --logdir` command on a real run; matplotlib: they draw
        # bench/quality.py's chart.
        "test": ["pytest", "ruff", "tensorboard>=2.21,<2.22", "matplotlib"],
        # matplotlib: bench/quality.py --chart.
        "bench": ["keras-rs", "psutil", "matplotlib"],
    },
)
