"""Image tags of the program's own builds: a hash of what goes into each image, nothing else.

Guards against: a stack-file or README edit rebuilding and rolling every service (the old tag hashed the whole
repository diff), an edit to one service retagging the other, and a `.dockerignore` read differently from Docker.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components.build_context import content_tag, context_files, ignore_file_for, is_excluded, parse_dockerignore

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("api", "worker")


def excluded(dockerignore: str, *paths: str) -> dict[str, bool]:
    patterns = parse_dockerignore(dockerignore)
    return {path: is_excluded(path, patterns) for path in paths}


# --- Docker's documented .dockerignore examples ---


def test_wildcards_stay_within_one_path_segment() -> None:
    rules = "# comment\n*/temp*\n*/*/temp*\ntemp?\n"
    assert excluded(rules, "somedir/temporary.txt", "somedir/temp", "somedir/subdir/temporary.txt", "tempa",
                    "tempb") == dict.fromkeys(["somedir/temporary.txt", "somedir/temp", "somedir/subdir/temporary.txt",
                                               "tempa", "tempb"], True)  # fmt: skip
    assert excluded(rules, "temp", "tempab", "temporary.txt", "a/b/c/temp") == dict.fromkeys(
        ["temp", "tempab", "temporary.txt", "a/b/c/temp"], False
    )


def test_double_star_matches_any_number_of_directories() -> None:
    assert excluded("**/*.go", "main.go", "a/b/c.go", "a/b/c.py") == {"main.go": True, "a/b/c.go": True,
                                                                    "a/b/c.py": False}  # fmt: skip


def test_exceptions_and_the_last_matching_line_wins() -> None:
    assert excluded("*.md\n!README.md", "README.md", "CHANGES.md", "docs/guide.md") == {
        "README.md": False, "CHANGES.md": True, "docs/guide.md": False,  # `*` does not cross `/`
    }  # fmt: skip
    secret_last = "*.md\n!README*.md\nREADME-secret.md"
    assert excluded(secret_last, "README-secret.md", "README-public.md", "other.md") == {
        "README-secret.md": True, "README-public.md": False, "other.md": True,
    }  # fmt: skip
    secret_first = "*.md\nREADME-secret.md\n!README*.md"
    assert excluded(secret_first, "README-secret.md") == {"README-secret.md": False}


def test_a_directory_pattern_excludes_everything_under_it_and_paths_are_cleaned() -> None:
    assert excluded("node_modules\n/build/\n./cache//x/../y\n.", "node_modules/a/b.js", "build/out.o", "cache/y/z",
                    "cache/x", "src/build/out.o", "keep.txt") == {
        "node_modules/a/b.js": True, "build/out.o": True, "cache/y/z": True, "cache/x": False,
        "src/build/out.o": False, "keep.txt": False,
    }  # fmt: skip


def test_an_exception_reincludes_a_directory_below_an_excluded_root() -> None:
    rules = "*\n!services/api/\n**/__pycache__"
    assert excluded(rules, "services/api/app.py", "services/api/__pycache__/app.pyc", "services/worker/x.py",
                    "README.md") == {
        "services/api/app.py": False, "services/api/__pycache__/app.pyc": True, "services/worker/x.py": True,
        "README.md": True,
    }  # fmt: skip


def test_an_invalid_pattern_is_refused_naming_the_line() -> None:
    with pytest.raises(ValueError, match=r"dockerignore line 'src/\[' is not a valid pattern"):
        parse_dockerignore("src/[")


def test_the_dockerfile_s_own_ignore_file_takes_precedence_over_the_context_s(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    dockerfile = tmp_path / "svc" / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    assert ignore_file_for(tmp_path, dockerfile) is None
    (tmp_path / ".dockerignore").write_text("*\n")
    assert ignore_file_for(tmp_path, dockerfile) == tmp_path / ".dockerignore"
    (tmp_path / "svc" / "Dockerfile.dockerignore").write_text("*\n!svc\n")
    assert ignore_file_for(tmp_path, dockerfile) == tmp_path / "svc" / "Dockerfile.dockerignore"
    assert context_files(tmp_path, parse_dockerignore("*\n!svc\n")) == ["svc/Dockerfile", "svc/Dockerfile.dockerignore"]


# --- The project's own images ---


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what the image builds read, plus the files that must not matter."""
    shutil.copytree(ROOT / "services", tmp_path / "services", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("README.md", "Pulumi.prod.yaml", "Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def tags(root: Path, platform: str = "linux/amd64") -> dict[str, str]:
    return {
        service: content_tag(root, root / "services" / service / "Dockerfile", platform=platform, build_args={})
        for service in SERVICES
    }


@pytest.mark.parametrize("edited", ["Pulumi.prod.yaml", "README.md", "__main__.py", "new-file.txt"])
def test_editing_files_outside_the_images_leaves_every_tag_unchanged(project: Path, edited: str) -> None:
    before = tags(project)
    with (project / edited).open("a") as file:
        file.write("\n# edited\n")
    assert tags(project) == before


def test_editing_a_service_changes_only_its_own_tag(project: Path) -> None:
    before = tags(project)
    with (project / "services" / "api" / "app.py").open("a") as file:
        file.write("\n# edited\n")
    after = tags(project)
    assert after["api"] != before["api"]
    assert after["worker"] == before["worker"]


@pytest.mark.parametrize("edited", ["services/common/settings.py", "services/requirements.txt"])
def test_editing_shared_code_changes_both_tags(project: Path, edited: str) -> None:
    before = tags(project)
    with (project / edited).open("a") as file:
        file.write("\n# edited\n")
    after = tags(project)
    assert all(after[service] != before[service] for service in SERVICES)


def test_bytecode_caches_the_dockerignore_drops_do_not_change_a_tag(project: Path) -> None:
    before = tags(project)
    (project / "services" / "api" / "__pycache__").mkdir()
    (project / "services" / "api" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    assert tags(project) == before


def test_the_dockerfile_the_platform_and_the_executable_bit_are_inputs(project: Path) -> None:
    before = tags(project)
    assert tags(project, platform="linux/arm64")["api"] != before["api"]
    (project / "services" / "api" / "app.py").chmod(0o755)
    assert tags(project)["api"] != before["api"]
    (project / "services" / "api" / "app.py").chmod(0o644)
    with (project / "services" / "worker" / "Dockerfile").open("a") as file:
        file.write("LABEL edited=true\n")
    assert tags(project)["worker"] != before["worker"]
    assert tags(project)["api"] == before["api"]


def test_tags_are_the_same_for_the_same_content_anywhere_and_valid(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(project, elsewhere)
    assert tags(elsewhere) == tags(project)
    assert all(tag.startswith("src-") and len(tag) == 24 for tag in tags(project).values())
