"""The policy pack's entry point: the engine runs it (`python -m pulumi.policy <engine> <pack dir>`), and
constructing `PolicyPack` serves the analyzer and never returns. Policies live in `rules/`.

The engine puts the pack directory first on sys.path; adding it here too keeps `python policy/` and
`python -m policy` working from anywhere.
"""

import sys
from pathlib import Path

PACK_DIR = str(Path(__file__).resolve().parent)
if PACK_DIR not in sys.path:
    sys.path.insert(0, PACK_DIR)

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402
from rules import ALL_POLICIES  # noqa: E402  # pyright: ignore[reportMissingImports]

PolicyPack(
    name="aws-container-platform",
    description="Security policies for container platforms on AWS: ECS, ECR, EFS, RDS, ElastiCache, load "
    "balancers, networking, encryption, logging and secrets.",
    policies=ALL_POLICIES,
    enforcement_level=EnforcementLevel.ADVISORY,
    provider="aws",
    tags=["aws", "ecs", "security", "fsbp"],
)
