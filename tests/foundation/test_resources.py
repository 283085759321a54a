from __future__ import annotations

import pytest
from mlflow.models.resources import DatabricksServingEndpoint, DatabricksVectorSearchIndex

from mlflow_app_agent.errors import ConfigError
from mlflow_app_agent.resources import Resource, parse_resource_spec, parse_resources

ALL_KINDS = [
    ({"kind": "serving_endpoint", "endpoint_name": "llm"}, "CAN_QUERY"),
    ({"kind": "secret", "scope": "s", "key": "k"}, "READ"),
    ({"kind": "sql_warehouse", "warehouse_id": "w1"}, "CAN_USE"),
    ({"kind": "experiment", "experiment_id": "7"}, "CAN_EDIT"),
    ({"kind": "genie_space", "space_id": "g1"}, "CAN_RUN"),
    ({"kind": "uc_securable", "securable_type": "connection", "securable_full_name": "gh"},
     "USE_CONNECTION"),
    ({"kind": "uc_securable", "securable_type": "FUNCTION", "securable_full_name": "a.b.f"},
     "EXECUTE"),
    ({"kind": "uc_securable", "securable_type": "VOLUME", "securable_full_name": "a.b.v"},
     "READ_VOLUME"),
    ({"kind": "job", "job_id": "12"}, "CAN_MANAGE_RUN"),
    ({"kind": "database", "instance_name": "i", "database_name": "d"}, "CAN_CONNECT_AND_CREATE"),
    ({"kind": "app", "app_name": "other"}, "CAN_USE"),
]


@pytest.mark.parametrize(("spec", "permission"), ALL_KINDS)
def test_every_kind_maps_to_an_sdk_app_resource(spec: dict[str, str], permission: str) -> None:
    resource = parse_resources([spec])[0]
    assert resource.permission == permission
    app_resource = resource.to_app_resource().as_dict()
    assert app_resource["name"] == resource.name
    assert app_resource[resource.kind]["permission"] == permission
    assert resource.identity


def test_mlflow_resources_round_trip() -> None:
    endpoint = parse_resources([DatabricksServingEndpoint(endpoint_name="llm")])[0]
    assert endpoint.kind == "serving_endpoint" and endpoint.endpoint_name == "llm"
    assert endpoint.to_mlflow_resource().name == "llm"
    assert parse_resources([{"kind": "secret", "scope": "a", "key": "b"}])[0] \
        .to_mlflow_resource() is None
    with pytest.raises(ConfigError, match="unsupported resource declaration"):
        parse_resources([DatabricksVectorSearchIndex(index_name="a.b.c")])


def test_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"resources\[0\] .* needs key"):
        parse_resources([{"kind": "secret", "scope": "s"}])
    with pytest.raises(ConfigError, match="kind"):
        parse_resources([{"kind": "bucket"}])
    with pytest.raises(ConfigError, match="declared twice"):
        parse_resources([{"kind": "job", "job_id": "1", "name": "x"},
                         {"kind": "job", "job_id": "2", "name": "x"}])
    with pytest.raises(ConfigError, match="valid environment variable"):
        parse_resources([{"kind": "job", "job_id": "1", "env": "1BAD"}])
    with pytest.raises(ConfigError, match="securable_type must be one of"):
        parse_resources([{"kind": "uc_securable", "securable_type": "CLUSTER",
                          "securable_full_name": "x"}])
    with pytest.raises(ConfigError, match="resource name"):
        parse_resources([{"kind": "job", "job_id": "1", "name": "has space"}])
    with pytest.raises(ConfigError, match="job_id must be the job's numeric id, got 'nightly'"):
        parse_resources([{"kind": "job", "job_id": "nightly"}])
    with pytest.raises(ConfigError, match="value: Extra inputs are not permitted"):
        parse_resources([{"kind": "job", "job_id": "1", "value": "secret!"}])


def test_cli_spec() -> None:
    resource = parse_resource_spec("experiment:experiment_id=123,env=MLFLOW_EXPERIMENT_ID")
    assert resource == Resource(kind="experiment", experiment_id="123", env="MLFLOW_EXPERIMENT_ID")
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_resource_spec("secret:scope")
