"""The HTTP API entry in the cost estimate: requests from `http_api_requests_per_day`, the VPC link and the API's
configuration free, access logs on their log group, the 12-month free tier, and the whole HttpApi component.

Expected figures are recounted by hand from the list prices (literals), never by calling the estimator again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from components.http_api import HttpApi
from policy.rules.costing import Assumptions, estimate
from runner.records import ResourceRecord
from tests.components.test_http_api import api_args
from tests.support import build

DAYS = 30.4
STACK = "urn:pulumi:dev::proj::"
HTTP_API_PER_MILLION = 1.00  # apigateway.http.requests, us-east-1, first 300M a month
HTTP_API_PER_MILLION_EU = 1.11
LOG_INGEST = 0.50  # logs.ingest.standard per GB
LOG_STORAGE = 0.03  # logs.storage per GB-month
API = "aws:apigatewayv2/api:Api"


def record(type_: str, name: str, inputs: Mapping[str, Any]) -> ResourceRecord:
    return ResourceRecord(urn=f"{STACK}{type_}::{name}", type=type_, name=name, inputs=inputs)


def month_of(resources: list[ResourceRecord], name: str, **kwargs: Any) -> float:
    cost = estimate(resources, **kwargs)
    return sum(r.per_month for r in cost.resources if r.name == name)


def test_an_http_api_pays_its_assumed_requests() -> None:
    api = [record(API, "entry", {"protocolType": "HTTP"})]
    # 10,000 requests a day (the default) = 0.304M a month at $1.00 per million
    assert month_of(api, "entry") == pytest.approx(10_000 * DAYS / 1e6 * HTTP_API_PER_MILLION)
    busy = Assumptions(http_api_requests_per_day=2_000_000)
    assert month_of(api, "entry", assumptions=busy) == pytest.approx(60.8)
    assert month_of(api, "entry", region="eu-west-1") == pytest.approx(0.304 * HTTP_API_PER_MILLION_EU)


def test_a_websocket_api_is_listed_as_not_priced_never_as_free() -> None:
    cost = estimate([record(API, "socket", {"protocolType": "WEBSOCKET"})])
    assert [u["name"] for u in cost.unpriced] == ["socket"]
    assert "messages and connection minutes" in cost.unpriced[0]["reason"]


def test_the_assumption_is_validated_like_the_others() -> None:
    with pytest.raises(ValueError, match="http_api_requests_per_day: -1; allowed: a number >= 0"):
        Assumptions(http_api_requests_per_day=-1)


def test_new_accounts_get_a_million_requests_a_month_free() -> None:
    api = [record(API, "entry", {"protocolType": "HTTP"})]
    assert estimate(api, free_tier="always").per_month == pytest.approx(0.304)
    assert estimate(api, free_tier="new-account").per_month == pytest.approx(0)
    busy = estimate(api, assumptions=Assumptions(http_api_requests_per_day=100_000), free_tier="new-account")
    assert busy.per_month == pytest.approx(3.04 - 1.0)


def test_the_whole_component_prices_requests_and_access_logs_and_nothing_unpriced() -> None:
    recorded = build(lambda: HttpApi("entry", api_args()))
    cost = estimate(recorded.resources)
    assert cost.unpriced == []
    priced = {r.type: r.per_month for r in cost.resources}
    assert set(priced) == {API, "aws:cloudwatch/logGroup:LogGroup"}
    assert priced[API] == pytest.approx(0.304)
    # default log_gb_per_day 0.05: ingestion all month, storage for the 30-day retention
    assert priced["aws:cloudwatch/logGroup:LogGroup"] == pytest.approx(
        0.05 * DAYS * LOG_INGEST + 0.05 * 30 * LOG_STORAGE
    )
    free = {f["type"]: f["reason"] for f in cost.free}
    assert "no charge" in free["aws:apigatewayv2/vpcLink:VpcLink"]
    for type_ in ("stage:Stage", "route:Route", "integration:Integration"):
        assert f"aws:apigatewayv2/{type_}" in free
    # The HTTP API entry idles at cents a day, where the ALB it replaces costs its hours and public addresses.
    assert cost.per_day < 0.10
