"""Package discovery for the folder mapping in pyproject.toml: ``seedopt/`` plus the top-level
``kernels/``, ``optimizer/`` and ``configs/`` folders installed as ``seedopt.kernels``,
``seedopt.optimizer`` and ``seedopt.configs``. Every package below them is found
automatically, so a new subpackage cannot be left out of the wheel."""

from setuptools import find_packages, setup

MAPPED = {
    "seedopt.kernels": "kernels",
    "seedopt.optimizer": "optimizer",
    "seedopt.configs": "configs",
}

packages = find_packages(include=["seedopt", "seedopt.*"])
package_dir = {"seedopt": "seedopt"}
for name, folder in MAPPED.items():
    package_dir[name] = folder
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
