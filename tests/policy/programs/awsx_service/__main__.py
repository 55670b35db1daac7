"""A team's service written with awsx, insecure in every way the pack checks (root, privileged, `:latest`, a
password in its environment, a public IP). awsx is a multi-language package: offline, its children never exist."""

import pulumi
import pulumi_awsx as awsx

print("deploying the shop service")  # a program's own output must not corrupt --json

cluster_arn = "arn:aws:ecs:us-east-1:123456789012:cluster/shop"
service = awsx.ecs.FargateService(
    "shop",
    cluster=cluster_arn,
    assign_public_ip=True,
    task_definition_args=awsx.ecs.FargateServiceTaskDefinitionArgs(
        container=awsx.ecs.TaskDefinitionContainerDefinitionArgs(
            name="shop",
            image="nginx:latest",
            user="root",
            privileged=True,
            environment=[awsx.ecs.TaskDefinitionKeyValuePairArgs(name="DB_PASSWORD", value="hunter2")],
        ),
    ),
)
pulumi.export("serviceUrn", service.urn)
