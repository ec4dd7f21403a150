"""The mock provider serves exactly the models litellm-config.yaml deploys, so local mode answers every group."""

from ops.gateway.litellm_config import deployments, load_config
from ops.local.mock_provider import MODELS
from tests.conftest import REPO


def test_the_mock_serves_every_deployment_of_the_shipped_config() -> None:
    deployed: dict[str, set[str]] = {}
    for deployment in deployments(load_config(REPO / "litellm-config.yaml")):
        deployed.setdefault(deployment.provider, set()).add(deployment.model.split("/", 1)[1])
    # a group moved to a new model without the mock's list (docs/GATEWAY.md, step 4) would answer 404 in `make demo`
    assert {provider: set(models) for provider, models in MODELS.items()} == deployed
