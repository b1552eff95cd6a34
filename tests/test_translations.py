"""Every key the code uses has an English text, and every text is used."""

from __future__ import annotations

import json
from pathlib import Path
import re
from typing import Any

import yaml

from custom_components.iotshield.device_trigger import TRIGGER_TYPES
from custom_components.iotshield.keys import KeyProblem
from custom_components.iotshield.llm import Failure
from custom_components.iotshield.protocol import Rejection
from custom_components.iotshield.severity import ThresholdProblem

PACKAGE = Path(__file__).parent.parent / "custom_components" / "iotshield"
STRINGS: dict[str, Any] = json.loads((PACKAGE / "translations" / "en.json").read_text())
ICONS: dict[str, Any] = json.loads((PACKAGE / "icons.json").read_text())
SOURCE = "\n".join(path.read_text() for path in PACKAGE.glob("*.py"))


def _used(pattern: str) -> set[str]:
    """Return the string literals the package passes in a given keyword or call."""
    return set(re.findall(pattern, SOURCE))


def test_config_flow_texts() -> None:
    """Steps, errors and abort reasons of the flows are all translated."""
    config = STRINGS["config"]
    # "confirm" is the repair flow's step, translated under issues.
    option_steps = {"init", "node", "thresholds", "alerts", "llm", "home_llm"}
    steps = _used(r'step_id="(\w+)"') - {"confirm"} - option_steps
    assert steps == set(config["step"])
    assert set(STRINGS["options"]["step"]) == option_steps
    # The Home LLM's form follows the node's LLM step; it is not a menu choice of its own.
    menu = option_steps - {"init", "home_llm"}
    assert set(STRINGS["options"]["step"]["init"]["menu_options"]) == menu
    option_errors = {problem.value for problem in ThresholdProblem} | {
        "invalid_prompt",
        "invalid_url",
        "cannot_connect",
        "model_missing",
        "ai_task_entity_missing",
    }
    assert option_errors == set(STRINGS["options"]["error"])
    assert option_errors - {p.value for p in ThresholdProblem} <= _used(r': "(\w+)"\}')
    errors = _used(r'errors\[[A-Z_]+\] = "(\w+)"') | {problem.value for problem in KeyProblem}
    assert errors == set(config["error"])
    aborts = _used(r'reason="(\w+)"') - {"no_announced_key"} | {
        "already_configured",
        "already_in_progress",
    }
    assert aborts == set(config["abort"])


def test_placeholders_match() -> None:
    """Each step's text uses exactly the placeholders the flow fills in."""
    step = STRINGS["config"]["step"]
    assert set(re.findall(r"{(\w+)}", step["show_key"]["description"])) == {
        "node_id",
        "public_key",
        "fingerprint",
    }
    assert set(re.findall(r"{(\w+)}", step["discovery_confirm"]["description"])) == {"node_id"}
    assert set(re.findall(r"{(\w+)}", step["reconfigure"]["title"])) == {"node_id"}


def test_entity_issue_and_exception_texts() -> None:
    """Entities, repair issues and exceptions have names and messages."""
    entity_keys = _used(r'translation_key="(\w+)"')
    translated = (
        {key for platform in STRINGS["entity"].values() for key in platform}
        | set(STRINGS["issues"])
        | set(STRINGS["exceptions"])
        | set(STRINGS["selector"])
    )
    assert entity_keys <= translated
    issues = STRINGS["issues"]
    assert set(issues) == {
        "key_mismatch",
        "announced_key_mismatch",
        "impersonation",
        "firmware_update",
        "unauthenticated",
        Failure.UNREACHABLE.value,
        Failure.TIMEOUT.value,
        Failure.MODEL_MISSING.value,
        "llm_ai_task_unavailable",
    }
    assert "no_announced_key" in issues["impersonation"]["fix_flow"]["abort"]
    assert set(issues["impersonation"]["fix_flow"]["step"]) == {"confirm"}
    # Home Assistant's issue schema allows a description or a fix flow, not both.
    for key, issue in issues.items():
        assert not ("description" in issue and "fix_flow" in issue), key
    exceptions = _used(r'translation_key="(\w+)"') & set(STRINGS["exceptions"])
    assert exceptions == set(STRINGS["exceptions"])
    attributes = STRINGS["entity"]["sensor"]["rejected_payloads"]["state_attributes"]
    assert set(attributes) == {reason.value for reason in Rejection}
    assert set(STRINGS["selector"]["key_source"]["options"]) == {"generate", "import", "keep"}
    assert set(STRINGS["selector"]["pairing"]["options"]) == {"pin", "paste", "v1", "keep"}


def test_service_texts() -> None:
    """Every service and field in services.yaml has a name and description."""
    services = yaml.safe_load((PACKAGE / "services.yaml").read_text())
    assert set(services) == set(STRINGS["services"]) == set(ICONS["services"])
    for service, spec in services.items():
        assert set(spec["fields"]) == set(STRINGS["services"][service]["fields"]), service


def test_device_trigger_texts() -> None:
    """Every device trigger has a name in the automation editor."""
    assert set(TRIGGER_TYPES) == set(STRINGS["device_automation"]["trigger_type"])


def test_icons_belong_to_translated_entities() -> None:
    """Every icon is for an entity translation key that exists."""
    for platform, keys in ICONS["entity"].items():
        assert set(keys) <= set(STRINGS["entity"][platform])
