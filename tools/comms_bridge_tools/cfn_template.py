"""template.yaml as plain data, and the part of CloudFormation that reads it locally: the short tags,
``Fn::ForEach`` (AWS::LanguageExtensions), parameter defaults and the intrinsic functions the template uses.
``local_stack`` builds the stack from what this module resolves."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

import yaml

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
TEMPLATE_PATH: Final = REPO_ROOT / "template.yaml"
ACCOUNT_ID: Final = "123456789012"  # moto's default account
PARTITION: Final = "aws"


class _NoValue:
    """AWS::NoValue: removes the property or list item it stands in."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Final = _NoValue()


# ---------------------------------------------------------------- template loading


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns the CloudFormation short tags into their long JSON form."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str | os.PathLike[str] = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain data; short tags (``!Ref``, ``!Sub`` ...) become ``{"Ref": ...}`` etc.
    Parsed once per file version; each caller gets its own copy."""
    resolved = Path(path).resolve()
    return copy.deepcopy(_parse_template(str(resolved), resolved.stat().st_mtime_ns))


@cache
def _parse_template(path: str, mtime_ns: int) -> dict[str, Any]:
    loaded = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - _CfnLoader is a SafeLoader subclass
    assert isinstance(loaded, dict)
    return loaded


FOR_EACH_PREFIX: Final = "Fn::ForEach::"


def expand_for_each(template: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, Any]:
    """The template with its ``Fn::ForEach`` loops in Resources expanded as ``AWS::LanguageExtensions``
    expands them before the SAM transform: the collection is a literal list or a ``Ref`` to a
    CommaDelimitedList parameter (a string here, split on commas; empty gives one empty item, as in
    CloudFormation); in the output key ``&{Id}`` is the item's letters and digits only and ``${Id}`` the item;
    in the body ``Ref: Id`` and ``${Id}`` inside ``Fn::Sub`` are the item. A repeated logical id is an error,
    as in CloudFormation."""
    expanded = copy.deepcopy(dict(template))
    resources: dict[str, Any] = {}
    for key, value in template.get("Resources", {}).items():
        if not key.startswith(FOR_EACH_PREFIX):
            resources[key] = copy.deepcopy(value)
            continue
        identifier, collection, outputs = value
        for item in _for_each_items(collection, parameters):
            for key_template, body in outputs.items():
                logical_id = key_template.replace(
                    f"&{{{identifier}}}", re.sub(r"[^A-Za-z0-9]", "", item)
                ).replace(f"${{{identifier}}}", item)
                if logical_id in resources:
                    raise ValueError(f"{key}: logical id {logical_id} is generated twice")
                resources[logical_id] = _substitute_item(copy.deepcopy(body), identifier, item)
    expanded["Resources"] = resources
    return expanded


def _for_each_items(collection: Any, parameters: Mapping[str, str]) -> list[str]:
    if isinstance(collection, dict) and set(collection) == {"Ref"}:
        return [item.strip() for item in parameters[collection["Ref"]].split(",")]
    if isinstance(collection, list):
        return [as_string(item) for item in collection]
    raise ValueError(f"Fn::ForEach collection not supported locally: {collection!r}")


def _substitute_item(value: Any, identifier: str, item: str) -> Any:
    if isinstance(value, list):
        return [_substitute_item(v, identifier, item) for v in value]
    if not isinstance(value, dict):
        return value
    if value == {"Ref": identifier}:
        return item
    if set(value) == {"Fn::Sub"}:
        argument = value["Fn::Sub"]
        text = argument[0] if isinstance(argument, list) else argument
        replaced = text.replace(f"${{{identifier}}}", item)
        if isinstance(argument, list):
            return {"Fn::Sub": [replaced, _substitute_item(argument[1], identifier, item)]}
        return {"Fn::Sub": replaced}
    return {key: _substitute_item(v, identifier, item) for key, v in value.items()}


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    """Each parameter's default as CloudFormation passes it: a string."""
    return {
        name: as_string(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
        if "Default" in spec
    }


def as_string(value: Any) -> str:
    """A template value as CloudFormation passes it to a parameter or a ``Fn::Sub``: a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------- intrinsic functions

_SUB_VARIABLE: Final = re.compile(r"\$\{([^}!]+)\}")


@dataclass
class Resolver:
    """Evaluates the intrinsic-function subset the template uses against local values.

    ``resource_names`` maps a logical id to what ``Ref`` returns and ``"LogicalId.Attribute"`` to what
    ``Fn::GetAtt`` returns.
    """

    template: Mapping[str, Any]
    parameters: Mapping[str, str]
    resource_names: Mapping[str, Any] = field(default_factory=dict)
    region: str = "us-east-1"
    stack_name: str = "comms-bridge"

    def pseudo(self, name: str) -> Any:
        values: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": PARTITION,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{self.stack_name}/x",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        return values[name]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            spec = self.template.get("Parameters", {}).get(name, {})
            if spec.get("Type") == "CommaDelimitedList":  # a list, as CloudFormation passes it
                return [item.strip() for item in self.parameters[name].split(",")]
            return self.parameters[name]
        if name in self.resource_names:
            return self.resource_names[name]
        raise KeyError(f"Ref {name}: not a parameter and no local value for this resource")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        key = f"{logical_id}.{attribute}"
        if key in self.resource_names:
            return self.resource_names[key]
        raise KeyError(f"Fn::GetAtt {key}: no local value")

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def resources(self, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(logical id, properties) of each resource of a type whose Condition, if any, holds here."""
        for logical_id, resource in self.template["Resources"].items():
            if resource.get("Type") != resource_type:
                continue
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            yield logical_id, resource.get("Properties", {})

    def arn(self, service: str, resource: str) -> str:
        """The ARN of a resource of this stack: its region, moto's account."""
        return f"arn:{PARTITION}:{service}:{self.region}:{ACCOUNT_ID}:{resource}"

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            handler = self._functions().get(key)
            if handler is not None:
                return handler(argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self.ref,
            "Condition": self.condition,
            "Fn::GetAtt": lambda arg: self.get_att(*(arg.split(".", 1) if isinstance(arg, str) else arg)),
            "Fn::Sub": self._sub,
            "Fn::If": self._if,
            "Fn::Equals": lambda arg: as_string(self.resolve(arg[0])) == as_string(self.resolve(arg[1])),
            "Fn::Not": lambda arg: not self.resolve(arg[0]),
            "Fn::And": lambda arg: all(self.resolve(item) for item in arg),
            "Fn::Or": lambda arg: any(self.resolve(item) for item in arg),
            "Fn::FindInMap": self._find_in_map,
            "Fn::Join": lambda arg: self.resolve(arg[0]).join(as_string(v) for v in self.resolve(arg[1])),
            "Fn::Select": lambda arg: self.resolve(arg[1])[int(self.resolve(arg[0]))],
            "Fn::Split": lambda arg: self.resolve(arg[1]).split(self.resolve(arg[0])),
        }

    def _if(self, argument: list[Any]) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)

    def _find_in_map(self, argument: list[Any]) -> Any:
        name, top, second = (as_string(self.resolve(part)) for part in argument)
        return self.template["Mappings"][name][top][second]

    def _sub(self, argument: str | list[Any]) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {k: self.resolve(v) for k, v in argument[1].items()}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return as_string(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return as_string(self.get_att(logical_id, attribute))
            return as_string(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")


def function_events(
    template: Mapping[str, Any], event_type: str
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(function logical id, event name, event properties) of every SAM function event of a type."""
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
            if event.get("Type") == event_type:
                yield logical_id, event_name, event.get("Properties", {})
