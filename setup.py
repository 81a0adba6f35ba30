"""Package list for setuptools (the rest of the metadata is in pyproject.toml).

pyproject's `packages.find` cannot rename directories, and three packages are mapped from the repo root
(`package-dir` in pyproject.toml). So every package under src/ is found (`posttrain` itself has no
`__init__.py`, hence the namespace finder), and the three mapped ones are named.
"""
from setuptools import find_namespace_packages, setup

LIBRARY = find_namespace_packages("src", include=["posttrain", "posttrain.*"], exclude=["*.__pycache__"])
setup(packages=[*LIBRARY, "posttrain.components", "posttrain.pipelines", "posttrain.recipes"])
