"""Value sets AWS defines, shared by config validation and the components."""

import re

# Fargate task sizes: cpu units -> allowed memory MiB.
FARGATE_MEMORY_BY_CPU: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
# CloudWatch Logs retention values.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

# RDS instance and ElastiCache node families the platform supports (current generations, Graviton first).
DB_INSTANCE_FAMILIES = (
    "t3", "t4g", "m5", "m5d", "m6g", "m6gd", "m6i", "m6id", "m7g", "m7i", "m8g",
    "r5", "r5b", "r5d", "r6g", "r6gd", "r6i", "r6id", "r7g", "r7i", "r8g", "x2g",
)  # fmt: skip
CACHE_NODE_FAMILIES = ("t3", "t4g", "m5", "m6g", "m7g", "r5", "r6g", "r6gd", "r7g", "c7gn")
_SIZED = r"\.([a-z0-9]+)\.(micro|small|medium|large|xlarge|\d{1,2}xlarge)$"


def is_db_instance_class(value: str) -> bool:
    match = re.match(r"^db" + _SIZED, value)
    return bool(match) and match.group(1) in DB_INSTANCE_FAMILIES


def is_cache_node_type(value: str) -> bool:
    match = re.match(r"^cache" + _SIZED, value)
    return bool(match) and match.group(1) in CACHE_NODE_FAMILIES


# Who may be granted pull on an ECR repository: an account id or an IAM role ARN.
ECR_PULL_PRINCIPAL = re.compile(r"^(?:\d{12}|arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512})$")

# API Gateway's default account-level throttling quotas (requests per second, burst).
HTTP_API_RATE_QUOTA = 10_000
HTTP_API_BURST_QUOTA = 5_000
