"""Every policy of the pack, grouped by service. `ALL_POLICIES` is what the pack's `__main__.py` serves.

Modules here import each other relatively, so the package works both as `policy.rules` (tests, the offline
runner) and as the top-level `rules` the pack's `__main__.py` imports when the engine runs the pack directory.
"""

from pulumi_policy import Policy

from . import apigateway, cost, ecr, ecs, efs, elasticache, encryption_logging, lb, network, rds, s3, stack

ALL_POLICIES: list[Policy] = [
    *ecs.POLICIES,
    *ecr.POLICIES,
    *efs.POLICIES,
    *rds.POLICIES,
    *elasticache.POLICIES,
    *lb.POLICIES,
    *apigateway.POLICIES,
    *network.POLICIES,
    *encryption_logging.POLICIES,
    *s3.POLICIES,
    *stack.POLICIES,
    *cost.POLICIES,
]
