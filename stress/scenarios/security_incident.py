"""Security incident: the runtime-security responder (issue 21, lambdas/guardduty_responder) handles a GuardDuty
Runtime Monitoring finding for a running ECS task, under moto. Until that module exists this row is pending.

Everything that depends on the responder's contract is in `_respond` (kept small, for whoever merges issue 21
to finish): the finding below follows GuardDuty's ECS runtime finding shape (resource.ecsClusterDetails with
taskDetails), delivered as EventBridge's "GuardDuty Finding" event."""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path
from typing import Any

from stress.platform import REPO_ROOT
from stress.report import Result

HANDLER = REPO_ROOT / "lambdas" / "guardduty_responder" / "handler.py"
REGION = "us-east-1"
ACCOUNT = "123456789012"


def run(short: bool) -> Result:
    del short  # one finding either way
    result = Result("security-incident")
    if not HANDLER.exists():
        result.notes.append("pending: issue 21 responder (lambdas/guardduty_responder/handler.py not present)")
        return result
    result.jobs = 1
    result.notes.extend(_respond(HANDLER))
    return result


def finding_event(cluster_arn: str, task_arn: str, task_definition_arn: str) -> dict[str, Any]:
    """EventBridge's event for a GuardDuty Runtime Monitoring finding on a Fargate task."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": ACCOUNT,
        "region": REGION,
        "resources": [],
        "detail": {
            "schemaVersion": "2.0",
            "accountId": ACCOUNT,
            "region": REGION,
            "id": uuid.uuid4().hex,
            "type": "Execution:Runtime/NewBinaryExecuted",
            "severity": 8,
            "title": "A newly created or recently modified binary file has been executed in a container.",
            "resource": {
                "resourceType": "ECSCluster",
                "ecsClusterDetails": {
                    "name": cluster_arn.rsplit("/", 1)[-1],
                    "arn": cluster_arn,
                    "status": "ACTIVE",
                    "taskDetails": {
                        "arn": task_arn,
                        "definitionArn": task_definition_arn,
                        "version": "1",
                        "launchType": "FARGATE",
                        "group": "service:api",
                        "containers": [{"name": "api", "image": "api:stress"}],
                    },
                },
            },
        },
    }


def _respond(handler_path: Path) -> list[str]:
    """Run the responder's handle(event, context) under moto against a running task; describe what it did."""
    import boto3
    from moto import mock_aws

    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        ecs = boto3.client("ecs", region_name=REGION)
        cluster = ecs.create_cluster(clusterName="jobs-stress")["cluster"]["clusterArn"]
        definition = ecs.register_task_definition(
            family="api", containerDefinitions=[{"name": "api", "image": "api:stress", "memory": 512}]
        )["taskDefinition"]["taskDefinitionArn"]
        task = ecs.run_task(cluster=cluster, taskDefinition=definition, launchType="FARGATE")["tasks"][0]["taskArn"]
        spec = importlib.util.spec_from_file_location("guardduty_responder_handler", handler_path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        answer = module.handle(finding_event(cluster, task, definition), None)
        status = ecs.describe_tasks(cluster=cluster, tasks=[task])["tasks"][0]["lastStatus"]
    return [f"responder answered {answer!r}", f"task status afterwards: {status}"]
