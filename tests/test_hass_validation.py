"""The integration's metadata passes Home Assistant's own validators, as hassfest applies them.

hassfest itself is not shipped with Home Assistant; these schemas are built from the same
validators (`config_validation`) to the rules its documentation states, so a string hassfest
refuses (HTML such as `<prefix>`, an issue with both `description` and `fix_flow`, a
`data_description` for a field that does not exist) fails here first.
"""

from __future__ import annotations

import json
from pathlib import Path
import re
import string
from typing import Any

from awesomeversion import AwesomeVersion
from homeassistant.const import Platform
from homeassistant.helpers import config_validation as cv, service
from homeassistant.util.yaml import load_yaml_dict
from PIL import Image
import pytest
import voluptuous as vol

PACKAGE = Path(__file__).parent.parent / "custom_components" / "iotshield"
ROOT = PACKAGE.parent.parent
STRINGS: dict[str, Any] = json.loads((PACKAGE / "translations" / "en.json").read_text())
RE_KEY = re.compile(r"^(?!.+[_-]{2})(?![_-])[a-z0-9-_]+(?<![_-])$")
RE_URL = re.compile(r"((https?|mqtts?)://|www\.)\S+", re.IGNORECASE)


def text(value: Any) -> str:
    """Check one translated string the way hassfest does."""
    value = cv.string_with_no_html(value)
    if re.search(r"'{\w+}'", value):
        raise vol.Invalid("a placeholder inside single quotes")
    for _, field, _, _ in string.Formatter().parse(value):
        if field and not field.isidentifier():
            raise vol.Invalid(f"placeholder {field!r} is not an identifier")
    if value != value.strip():
        raise vol.Invalid("leading or trailing spaces")
    if RE_URL.search(value):
        raise vol.Invalid("a URL belongs in a placeholder")
    return value


def key(value: Any) -> str:
    """Check a translation key: lowercase, digits, - and _, not at the ends or doubled."""
    if not isinstance(value, str) or RE_KEY.match(value) is None:
        raise vol.Invalid(f"invalid translation key {value!r}")
    return value


def _data_descriptions_describe_fields(flow: dict[str, Any]) -> dict[str, Any]:
    """Every data_description names a field the step has."""
    for step_id, step in flow["step"].items():
        for field in step.get("data_description", {}):
            if field not in step.get("data", {}):
                raise vol.Invalid(f"data_description {field} is not in step {step_id}'s data")
    return flow


FLOW = vol.All(
    vol.Schema(
        {
            vol.Optional("flow_title"): text,
            vol.Required("step"): {
                key: {
                    vol.Optional("title"): text,
                    vol.Optional("description"): text,
                    vol.Optional("data"): {key: text},
                    vol.Optional("data_description"): {key: text},
                    vol.Optional("menu_options"): {key: text},
                    vol.Optional("submit"): text,
                }
            },
            vol.Optional("error"): {key: text},
            vol.Optional("abort"): {key: text},
            vol.Optional("progress"): {key: text},
            vol.Optional("create_entry"): {key: text},
        }
    ),
    _data_descriptions_describe_fields,
)
ISSUE = vol.All(
    cv.has_at_least_one_key("description", "fix_flow"),
    vol.Schema(
        {
            vol.Required("title"): text,
            vol.Exclusive("description", "fixable"): text,
            vol.Exclusive("fix_flow", "fixable"): vol.All(
                vol.Schema({vol.Required("step"): dict}, extra=vol.ALLOW_EXTRA), FLOW
            ),
        }
    ),
)
ENTITY = {
    vol.Optional("name"): text,
    vol.Optional("state"): {key: text},
    vol.Optional("state_attributes"): {
        key: {vol.Optional("name"): text, vol.Optional("state"): {key: text}}
    },
    vol.Optional("unit_of_measurement"): text,
}
TRANSLATIONS = vol.Schema(
    {
        vol.Optional("title"): text,
        vol.Optional("config"): FLOW,
        vol.Optional("options"): FLOW,
        vol.Optional("selector"): {
            key: {vol.Optional("options"): {key: text}, vol.Optional("choices"): {key: text}}
        },
        vol.Optional("entity"): {vol.In([p.value for p in Platform]): {key: ENTITY}},
        vol.Optional("exceptions"): {key: {vol.Required("message"): text}},
        vol.Optional("issues"): {key: ISSUE},
        vol.Optional("services"): {
            key: {
                vol.Required("name"): text,
                vol.Required("description"): text,
                vol.Optional("fields"): {
                    key: {vol.Required("name"): text, vol.Required("description"): text}
                },
                vol.Optional("sections"): {key: {vol.Required("name"): text}},
            }
        },
        vol.Optional("device_automation"): {
            vol.Optional("trigger_type"): {key: text},
            vol.Optional("trigger_subtype"): {key: text},
            vol.Optional("condition_type"): {key: text},
            vol.Optional("action_type"): {key: text},
            vol.Optional("extra_fields"): {key: text},
        },
    }
)


def test_translations_pass_home_assistants_validators() -> None:
    """en.json passes: no HTML, valid placeholders, issue schema, descriptions of real fields."""
    TRANSLATIONS(STRINGS)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        # The two strings hassfest refused before they were fixed.
        (("config", "step", "user", "data_description", "node_id"), "`<prefix>/<node id>/x`"),
        (("issues", "impersonation", "description"), "Both a description and a repair flow."),
        (("config", "step", "user", "data_description", "no_such_field"), "A field."),
        (("exceptions", "not_found", "message"), "See https://example.com for help."),
        (("services", "acknowledge", "name"), " Acknowledge"),
    ],
)
def test_the_validators_refuse_what_hassfest_refuses(path: tuple[str, ...], value: str) -> None:
    """Each rule bites: the file with one bad string is refused."""
    broken = json.loads(json.dumps(STRINGS))
    node = broken
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    with pytest.raises(vol.Invalid):
        TRANSLATIONS(broken)


def test_services_yaml_passes_home_assistants_schema() -> None:
    """services.yaml is read with the schema Home Assistant loads it with; each is translated."""
    services = load_yaml_dict(str(PACKAGE / "services.yaml"))
    # The schema Home Assistant's loader applies to services.yaml.
    service._SERVICES_SCHEMA(services)
    assert set(services) == set(STRINGS["services"])
    for name, spec in services.items():
        assert set(spec.get("fields", {})) == set(STRINGS["services"][name].get("fields", {}))


def test_manifest_and_hacs() -> None:
    """manifest.json has what hassfest and HACS require of a custom integration."""
    manifest = json.loads((PACKAGE / "manifest.json").read_text())
    vol.Schema(
        {
            vol.Required("domain"): "iotshield",
            vol.Required("name"): cv.string,
            vol.Optional("after_dependencies"): [cv.string],
            vol.Required("codeowners"): vol.All([vol.Match(r"^@[\w-]+(/[\w-]+)?$")], vol.Length(1)),
            vol.Required("config_flow"): True,
            vol.Required("dependencies"): [cv.string],
            vol.Required("documentation"): cv.url,
            vol.Required("integration_type"): vol.In(["device", "hub", "service"]),
            vol.Required("iot_class"): vol.In(["local_push", "local_polling"]),
            vol.Required("issue_tracker"): cv.url,
            vol.Optional("mqtt"): [cv.string],
            vol.Required("requirements"): [vol.Match(r"^[A-Za-z0-9_.-]+(\[[\w,]+\])?[<>=!~]")],
            vol.Required("version"): vol.All(cv.string, lambda v: AwesomeVersion(v).valid or 1 / 0),
            vol.Optional("quality_scale"): vol.In(["bronze", "silver", "gold", "platinum"]),
        }
    )(manifest)
    keys = list(manifest)
    # hassfest wants domain and name first, the rest in alphabetical order.
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    hacs = json.loads((ROOT / "hacs.json").read_text())
    assert hacs["name"] == manifest["name"]
    assert AwesomeVersion(hacs["homeassistant"]).valid


def test_icons_name_real_translation_keys() -> None:
    """icons.json uses Material Design icons for entities and services that exist."""
    icons = json.loads((PACKAGE / "icons.json").read_text())
    mdi = vol.Match(r"^mdi:[a-z0-9-]+$")
    for platform, entities in icons.get("entity", {}).items():
        for name, spec in entities.items():
            assert name in STRINGS["entity"][platform], f"icon for unknown {platform}.{name}"
            for icon in [spec.get("default"), *spec.get("state", {}).values()]:
                if icon is not None:
                    mdi(icon)
    for name, spec in icons.get("services", {}).items():
        assert name in STRINGS["services"]
        mdi(spec["service"] if isinstance(spec, dict) else spec)


def test_every_field_is_described() -> None:
    """Every field of every step has help text (the quality scale's config-flow rule)."""
    flows = [STRINGS["config"], STRINGS["options"]] + [
        issue["fix_flow"] for issue in STRINGS["issues"].values() if "fix_flow" in issue
    ]
    missing = [
        (step_id, field)
        for flow in flows
        for step_id, step in flow["step"].items()
        for field in step.get("data", {})
        if field not in step.get("data_description", {})
    ]
    assert missing == []


def test_brand_images_are_the_sizes_home_assistant_reads() -> None:
    """brand/: square icons of 256 and 512 px, logos 128–256 px high and twice that at @2x."""
    brand = PACKAGE / "brand"
    icon, icon2 = (Image.open(brand / name) for name in ("icon.png", "icon@2x.png"))
    logo, logo2 = (Image.open(brand / name) for name in ("logo.png", "logo@2x.png"))
    assert {image.format for image in (icon, icon2, logo, logo2)} == {"PNG"}
    assert (icon.size, icon2.size) == ((256, 256), (512, 512))
    assert 128 <= min(logo.size) <= 256
    assert abs(logo2.size[0] - 2 * logo.size[0]) <= 2
    assert abs(logo2.size[1] - 2 * logo.size[1]) <= 2
    assert all(image.mode == "RGBA" for image in (icon, icon2, logo, logo2))
