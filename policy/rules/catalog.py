"""The pack's policies in the order it serves them (`rules.ALL_POLICIES` loads this on first use)."""

from pulumi_policy import Policy

from . import apigateway, cloudfront, cost, ecr, ecs, efs, elasticache, encryption_logging, lb, network, rds, s3, stack

ALL_POLICIES: list[Policy] = [
    *ecs.POLICIES,
    *ecr.POLICIES,
    *efs.POLICIES,
    *rds.POLICIES,
    *elasticache.POLICIES,
    *lb.POLICIES,
    *apigateway.POLICIES,
    *cloudfront.POLICIES,
    *network.POLICIES,
    *encryption_logging.POLICIES,
    *s3.POLICIES,
    *stack.POLICIES,
    *cost.POLICIES,
]
