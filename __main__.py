"""The platform, one stack: network, cluster, the web service behind the ALB, alerts and monitoring.

Reads like the architecture: config is parsed and validated first (nothing is registered if it is wrong), then
each component is built from the outputs of the ones before it.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.alerts import Alerts, AlertsArgs
from components.cluster import ContainerCluster, ContainerClusterArgs
from components.config import StackConfig, load_stack_config, min_count
from components.monitoring import Monitoring, MonitoringArgs, WatchedWebService
from components.network import Network, NetworkArgs
from components.web_service import WebService, WebServiceArgs


def service_image(config: StackConfig) -> pulumi.Input[str]:
    if config.service.image is None:
        raise NotImplementedError("image builds arrive with the scanning component")
    return config.service.image


def main() -> None:
    config = load_stack_config()
    prefix = config.name_prefix
    account_id = aws.get_caller_identity_output().account_id

    alerts = Alerts(
        "alerts",
        AlertsArgs(name_prefix=prefix, region=config.region, account_id=account_id, alert_email=config.alertEmail),
    )
    network = Network(
        "network",
        NetworkArgs(
            name_prefix=prefix,
            account_id=account_id,
            log_kms_key_arn=alerts.key_arn,
            cidr_block=config.network.cidrBlock,
            max_azs=config.network.maxAzs,
            nat_gateways=config.network.natGateways,
            flow_log_retention_days=config.network.flowLogRetentionDays,
        ),
    )
    cluster = ContainerCluster(
        "cluster",
        ContainerClusterArgs(
            name_prefix=prefix,
            vpc_id=network.vpc_id,
            public_subnet_ids=network.public_subnet_ids,
            log_kms_key_arn=alerts.key_arn,
            log_retention_days=config.logRetentionDays,
            container_insights=config.containerInsights,
            certificate_arn=config.certificateArn,
            deletion_protection=config.deletionProtection,
        ),
    )
    service = config.service
    api = WebService(
        "api",
        WebServiceArgs(
            name_prefix=prefix,
            service_name="api",
            image=service_image(config),
            region=config.region,
            account_id=account_id,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            cluster_arn=cluster.cluster_arn,
            cluster_name=cluster.cluster_name,
            namespace_id=cluster.namespace_id,
            listener_arn=cluster.listener_arn,
            alb_security_group_id=cluster.alb_security_group_id,
            log_kms_key_arn=alerts.key_arn,
            cpu=service.cpu,
            memory=service.memory,
            desired_count=service.desiredCount,
            min_count=min_count(service),
            max_count=service.maxCount,
            container_port=service.containerPort,
            health_check_path=service.healthCheckPath,
            environment={"APP_ENV": config.environment, "LOG_LEVEL": "info" if config.is_prod else "debug",
                         "AWS_REGION": config.region},
            log_retention_days=config.logRetentionDays,
            cpu_architecture=service.cpuArchitecture,
            on_demand_base=service.onDemandBase,
            spot_weight=service.spotWeight,
            enable_execute_command=service.enableExecuteCommand,
        ),
    )  # fmt: skip
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            name_prefix=prefix,
            region=config.region,
            topic_arn=alerts.topic_arn,
            cluster_name=cluster.cluster_name,
            alb_arn_suffix=cluster.alb_arn_suffix,
            web_services=[WatchedWebService("api", api.service_name, api.target_group_arn_suffix)],
        ),
    )

    pulumi.export("albDnsName", cluster.alb_dns_name)
    pulumi.export("url", pulumi.Output.concat("https://" if config.certificateArn else "http://", cluster.alb_dns_name))
    pulumi.export("clusterName", cluster.cluster_name)
    pulumi.export("apiServiceName", api.service_name)
    pulumi.export("apiLogGroup", api.log_group_name)
    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    pulumi.export("namespaceId", cluster.namespace_id)
    pulumi.export("alertTopicArn", alerts.topic_arn)
    pulumi.export("dashboardName", monitoring.dashboard_name)


main()
