"""Every flow of the collection: named, failure-alerting, and listed in prefect.yaml."""

import importlib
import pkgutil

from prefect import Flow

import flows
from deployments.serve import deployment_specs, load_flow
from tasks.notify import on_flow_failure


def collection_flows() -> list[Flow]:
    found = []
    for info in pkgutil.iter_modules(flows.__path__):
        module = importlib.import_module(f"flows.{info.name}")
        found += [v for v in vars(module).values() if isinstance(v, Flow) and v.__module__ == module.__name__]
    return found


def test_every_flow_alerts_on_failure_and_is_deployed():
    deployed = {load_flow(spec["entrypoint"]).name for spec in deployment_specs()}
    for fl in collection_flows():
        assert on_flow_failure in fl.on_failure_hooks, f"{fl.name}: add on_failure=[on_flow_failure]"
        assert fl.name in deployed, f"{fl.name}: add a deployment to prefect.yaml"


def test_every_deployment_parameters_validate_against_its_flow():
    for spec in deployment_specs():
        fl = load_flow(spec["entrypoint"])
        parameters = spec.get("parameters") or {}
        per_run = set(fl.parameters.required) - set(parameters)
        if per_run:  # given to each run by whoever starts it (an automation), never by a schedule
            assert not spec.get("schedules"), f"{spec['name']}: scheduled runs would lack {per_run}"
            assert set(parameters) <= set(fl.parameters.properties), spec["name"]
        else:
            fl.validate_parameters(parameters)
        assert "dataplatform-ops" in (spec.get("tags") or []), spec["name"]
