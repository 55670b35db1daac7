"""Lambda deployment packages built from the installed, locked distributions (uv.lock), never from a download.

`python_lambda_package` zips a handler directory with the files of the named distributions and of everything they
require on the Lambda runtime, as installed in this environment. Only pure-Python distributions are accepted, so
the package is the same whatever machine builds it and runs on either Lambda architecture.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pulumi
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

# Installer bookkeeping that differs between machines for the same wheel; the package must not.
INSTALLER_FILES = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "uv_cache.json"})
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")


@dataclass(frozen=True)
class LambdaPackage:
    archive: pulumi.AssetArchive
    """Handler files and distributions, keyed by their path in the zip."""
    digest: str
    """SHA-256 of every path and content: changes exactly when the code does."""
    distributions: tuple[str, ...]
    """`name==version` of every packaged distribution."""


def lambda_environment(python_version: str, architecture: str) -> dict[str, str]:
    """PEP 508 marker values of the Lambda runtime (Amazon Linux, CPython)."""
    machine = {"arm64": "aarch64", "x86_64": "x86_64"}[architecture]
    return {
        **{key: str(value) for key, value in default_environment().items()},
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": machine,
        "extra": "",
    }


def required_distributions(names: list[str], environment: dict[str, str]) -> list[metadata.Distribution]:
    """The named distributions and, transitively, what they require on the runtime `environment`."""
    found: dict[str, metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError as error:
            raise ValueError(f"{name} is not installed; add it with `uv add {name}` so uv.lock pins it") from error
        _check_runs_on(distribution, environment["python_version"])
        found[name] = distribution
        for requirement in map(Requirement, distribution.requires or []):
            if requirement.marker is None or requirement.marker.evaluate(environment):  # pyright: ignore[reportArgumentType]
                pending.append(requirement.name)
    return [found[name] for name in sorted(found)]


def _check_runs_on(distribution: metadata.Distribution, python_version: str) -> None:
    name = distribution.metadata["Name"]
    requires_python = next(iter(distribution.metadata.get_all("Requires-Python") or []), None)
    if requires_python and python_version not in SpecifierSet(requires_python):
        raise ValueError(f"{name} requires Python {requires_python}; the Lambda runtime is Python {python_version}")
    native = [str(f) for f in distribution.files or [] if str(f).endswith(NATIVE_SUFFIXES)]
    if native or "Root-Is-Purelib: true" not in (distribution.read_text("WHEEL") or ""):
        raise ValueError(
            f"{name} is not pure Python ({', '.join(native) or 'not a purelib wheel'}); only pure-Python "
            "distributions are packaged, so the zip does not depend on the machine that builds it"
        )


def _distribution_files(distribution: metadata.Distribution) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for file in distribution.files or []:
        parts = file.parts
        if parts[0] == ".." or "__pycache__" in parts or file.suffix == ".pyc":
            continue  # scripts outside site-packages and interpreter-specific bytecode
        if parts[0].endswith(".dist-info") and file.name in INSTALLER_FILES:
            continue
        files[file.as_posix()] = Path(str(distribution.locate_file(file)))
    return files


def python_lambda_package(
    handler_dir: Path, distributions: list[str], *, python_version: str, architecture: str
) -> LambdaPackage:
    """Zip `handler_dir`'s Python files with `distributions` (and their requirements) as installed here."""
    files = {path.name: path for path in sorted(handler_dir.glob("*.py"))}
    packaged = required_distributions(distributions, lambda_environment(python_version, architecture))
    for distribution in packaged:
        for archive_path, source in _distribution_files(distribution).items():
            if archive_path in files:
                raise ValueError(f"{archive_path} is in both {handler_dir} and {distribution.metadata['Name']}")
            files[archive_path] = source
    digest = hashlib.sha256()
    for archive_path in sorted(files):
        digest.update(archive_path.encode() + b"\0" + files[archive_path].read_bytes() + b"\0")
    # Paths relative to the working directory (the project root under Pulumi), so state holds no home path.
    archive = pulumi.AssetArchive(
        {path: pulumi.FileAsset(os.path.relpath(source)) for path, source in sorted(files.items())}
    )
    names = tuple(f"{d.metadata['Name']}=={d.version}" for d in packaged)
    return LambdaPackage(archive=archive, digest=digest.hexdigest(), distributions=names)
