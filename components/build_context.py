"""What goes into an image, and the tag that names exactly that.

An image's tag is a hash of what its build reads: the Dockerfile, the files of its build context that its
`.dockerignore` keeps, the platform and the build arguments. Editing a stack file, the README or another service
leaves a tag as it is, so `pulumi up` rebuilds (and ECS rolls) only the services whose image inputs changed.

The `.dockerignore` rules are Docker's (moby/patternmatcher, as documented for build contexts): patterns are
relative to the context root, `*`, `?` and `[...]` never cross a `/`, `**` matches any number of directories,
a pattern that matches a directory excludes everything under it, `!` re-includes, and the last matching line
wins. BuildKit reads `<Dockerfile>.dockerignore` next to the Dockerfile in preference to the context's
`.dockerignore`. (docker-py's matcher exists on PyPI but folds case, which Docker on Linux does not.)
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILE = ".dockerignore"
CONTENT_TAG_PREFIX = "src-"
CONTENT_TAG_HEX = 20
# Characters moby escapes before compiling a pattern to a regular expression; `[`, `]` and `^` stay classes.
_REGEX_SPECIAL = set(".+()|{}$")
_WILDCARDS = re.compile(r"[*?\[\\]")


@dataclass(frozen=True)
class IgnorePattern:
    """One line of a `.dockerignore`, cleaned as Docker cleans it."""

    pattern: str
    """The pattern, relative to the context root, without `!`, `./`, `..` or leading and trailing slashes."""
    exclusion: bool
    """A `!` line: re-include what earlier lines excluded."""
    regex: re.Pattern[str]

    def matches(self, path: str) -> bool:
        return self.regex.match(path) is not None

    def matches_path_or_parent(self, path: str) -> bool:
        """Docker excludes a path when the pattern matches it or any directory above it."""
        if self.matches(path):
            return True
        parts = path.split("/")[:-1]
        return any(self.matches("/".join(parts[: depth + 1])) for depth in range(len(parts)))

    def may_match_under(self, directory: str) -> bool:
        """Whether this pattern could match something inside `directory` (conservative: used to prune walks)."""
        literal = _WILDCARDS.split(self.pattern, maxsplit=1)[0]
        prefix = directory + "/"
        return literal.startswith(prefix) or prefix.startswith(literal)


def parse_dockerignore(text: str) -> list[IgnorePattern]:
    """Patterns of a `.dockerignore`, in order: comments (`#` first) and blank lines dropped, paths cleaned."""
    patterns: list[IgnorePattern] = []
    for line in text.lstrip("\ufeff").splitlines():
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        exclusion = pattern.startswith("!")
        if exclusion:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _clean(pattern)
        try:
            regex = re.compile(_compile(pattern))
        except re.error as error:
            raise ValueError(f"dockerignore line {line.strip()!r} is not a valid pattern: {error}") from error
        patterns.append(IgnorePattern(pattern, exclusion, regex))
    return patterns


def is_excluded(path: str, patterns: Sequence[IgnorePattern]) -> bool:
    """Whether the context-relative `path` (with `/`) is left out of the build context: the last match wins."""
    excluded = False
    for pattern in patterns:
        if pattern.exclusion == excluded and pattern.matches_path_or_parent(path):
            excluded = not pattern.exclusion
    return excluded


def ignore_file_for(context: Path, dockerfile: Path) -> Path | None:
    """The ignore file BuildKit uses: `<Dockerfile>.dockerignore` if present, else `<context>/.dockerignore`."""
    for candidate in (dockerfile.with_name(dockerfile.name + IGNORE_FILE), context / IGNORE_FILE):
        if candidate.is_file():
            return candidate
    return None


def context_files(context: Path, patterns: Sequence[IgnorePattern]) -> list[str]:
    """Every file and symlink of the context that the patterns keep, as sorted context-relative paths."""
    kept: list[str] = []
    reinclusions = [p for p in patterns if p.exclusion]
    for directory, subdirectories, files in os.walk(context):
        base = Path(directory).relative_to(context).as_posix()
        relative = (name if base == "." else f"{base}/{name}" for name in sorted(subdirectories))
        descend: list[str] = []
        for path in relative:
            if (context / path).is_symlink():
                files.append(path.rsplit("/", 1)[-1])
            elif not is_excluded(path, patterns) or any(p.may_match_under(path) for p in reinclusions):
                descend.append(path.rsplit("/", 1)[-1])
        subdirectories[:] = descend
        kept += [
            p for p in (name if base == "." else f"{base}/{name}" for name in files) if not is_excluded(p, patterns)
        ]
    return sorted(kept)


def content_tag(context: Path, dockerfile: Path, *, platform: str, build_args: Mapping[str, str]) -> str:
    """`src-<hash>` of everything the build reads; equal inputs give equal tags, on any machine."""
    patterns = parse_dockerignore(ignore.read_text()) if (ignore := ignore_file_for(context, dockerfile)) else []
    digest = hashlib.sha256()
    for part in _inputs(context, dockerfile, platform, build_args, context_files(context, patterns)):
        digest.update(part)
    return CONTENT_TAG_PREFIX + digest.hexdigest()[:CONTENT_TAG_HEX]


def _inputs(
    context: Path, dockerfile: Path, platform: str, build_args: Mapping[str, str], files: Iterable[str]
) -> Iterable[bytes]:
    yield b"dockerfile\0" + hashlib.sha256(dockerfile.read_bytes()).digest()
    yield f"platform\0{platform}\0".encode()
    for name, value in sorted(build_args.items()):
        yield f"arg\0{name}={value}\0".encode()
    for path in files:
        yield f"file\0{path}\0".encode() + _file_digest(context / path)


def _file_digest(path: Path) -> bytes:
    """Content, link target and the executable bit: what COPY carries into the image that git also tracks."""
    if path.is_symlink():
        return b"link\0" + os.readlink(path).encode()
    executable = b"x" if path.stat().st_mode & 0o111 else b"-"
    return executable + hashlib.sha256(path.read_bytes()).digest()


def _clean(pattern: str) -> str:
    """Go's filepath.Clean, then no leading `/` (moby's dockerignore reader): `/a//b/../c/` -> `a/c`."""
    cleaned = posixpath.normpath(pattern)
    cleaned = re.sub(r"^/+", "/", cleaned)
    return cleaned[1:] if len(cleaned) > 1 and cleaned.startswith("/") else cleaned


def _compile(pattern: str) -> str:
    """moby/patternmatcher's translation of a pattern into an anchored regular expression."""
    regex = "^"
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*" and pattern[i : i + 1] == "*":
            i += 1
            if pattern[i : i + 1] == "/":
                i += 1
            regex += ".*" if i >= len(pattern) else "(.*/)?"
        elif char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "\\" and i < len(pattern):
            regex += re.escape(pattern[i])
            i += 1
        elif char in _REGEX_SPECIAL:
            regex += "\\" + char
        else:
            regex += char
    return regex + "$"
