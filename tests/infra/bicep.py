"""Reading the Bicep templates in tests: pycep-parser's JSON plus a small expression resolver.

pycep renders an expression as a string (an identifier or a literal: quotes are gone), a dict
(`{"function": …}`, `{"operator": …}`, a lambda) or a list. The resolver below follows
identifiers to variables and parameter defaults, which is all the assertions need.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
BICEP = REPO / "infra" / "bicep"
TEMPLATES = sorted(BICEP.rglob("*.bicep"))


@cache
def parse(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def main() -> dict[str, Any]:
    return parse(BICEP / "main.bicep")


def module(name: str) -> dict[str, Any]:
    return parse(BICEP / "modules" / f"{name}.bicep")


def unquote(key: str) -> str:
    return key[1:-1] if key.startswith("'") and key.endswith("'") else key


def accessor_chain(expression: Any) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None for anything else."""
    if isinstance(expression, str):
        return [expression]
    operator = expression.get("operator") if isinstance(expression, dict) else None
    if not operator or operator["type"] != "property_accessor":
        return None
    first = accessor_chain(operator["operands"]["operand_1"])
    rest = accessor_chain(operator["operands"]["operand_2"])
    return first + rest if first is not None and rest is not None else None


def resolve(expression: Any, template: dict[str, Any]) -> Any:
    """Follow identifiers and `var.key` chains to literals; other expressions come back as is."""
    if isinstance(expression, str):
        if expression in template.get("variables", {}):
            return resolve(template["variables"][expression]["value"], template)
        parameter = template.get("parameters", {}).get(expression)
        if parameter is not None and parameter["default"] is not None:
            return resolve(parameter["default"], template)
        return expression
    function = expression.get("function") if isinstance(expression, dict) else None
    if function and function["type"] == "string":  # string(intParam)
        value = resolve(function["parameters"]["value_to_convert"], template)
        return str(value) if isinstance(value, int) else expression
    operator = expression.get("operator") if isinstance(expression, dict) else None
    if operator and operator["type"] == "index_accessor":  # map[key]
        mapping = resolve(operator["operands"]["operand_1"], template)
        key = resolve(operator["operands"]["operand_2"], template)
        if isinstance(mapping, dict) and isinstance(key, str):
            return resolve({unquote(k): v for k, v in mapping.items()}.get(key), template)
        return expression
    chain = accessor_chain(expression)
    if chain is not None and len(chain) > 1:
        value = resolve(chain[0], template)
        for key in chain[1:]:
            if not isinstance(value, dict):
                return expression
            value = resolve({unquote(k): v for k, v in value.items()}.get(key), template)
        return value
    return expression


def object_keys(expression: Any, template: dict[str, Any]) -> set[str]:
    """The keys an object expression can have: literals, variables, union(), a ? b : c."""
    value = resolve(expression, template)
    if isinstance(value, dict) and "function" in value and value["function"]["type"] == "union":
        keys: set[str] = set()
        for argument in value["function"]["parameters"].values():
            keys |= object_keys(argument, template)
        return keys
    if isinstance(value, dict) and "operator" in value:
        operator = value["operator"]
        if operator["type"] == "conditional":
            operands = operator["operands"]
            return object_keys(operands["true_value"], template) | object_keys(
                operands["false_value"], template
            )
    if isinstance(value, dict) and not ({"function", "operator"} & set(value)):
        return {unquote(key) for key in value}
    raise AssertionError(f"not an object expression: {value!r}")


def object_items(expression: Any, template: dict[str, Any]) -> dict[str, Any]:
    """Every key → value of an object expression (later union arguments win)."""
    value = resolve(expression, template)
    if isinstance(value, dict) and "function" in value and value["function"]["type"] == "union":
        items: dict[str, Any] = {}
        for argument in value["function"]["parameters"].values():
            items |= object_items(argument, template)
        return items
    if isinstance(value, dict) and "operator" in value:
        operands = value["operator"]["operands"]
        return object_items(operands["true_value"], template) | object_items(
            operands["false_value"], template
        )
    return {unquote(key): resolve(item, template) for key, item in value.items()}


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """Resources of a type (loops unwrapped: the config of one iteration)."""
    found = {}
    for name, resource in template.get("resources", {}).items():
        if resource["type"] == type_:
            config = resource["config"]
            found[name] = config["config"] if "loop_type" in config else config
    return found


def module_params(name: str) -> dict[str, Any]:
    """The params main.bicep passes to one of its modules."""
    config = main()["modules"][name]["config"]
    inner = config["config"] if "condition" in config else config
    params: dict[str, Any] = inner["params"]
    return params


def loaded_files(path: Path) -> list[Path]:
    """Files a template reads with loadTextContent/loadFileAsBase64/loadJsonContent."""
    names = re.findall(r"load(?:TextContent|FileAsBase64|JsonContent)\('([^']+)'", path.read_text())
    return [path.parent / name for name in names]


def settings_env(items: dict[str, Any]) -> dict[str, str]:
    """Environment values for template settings: literals kept, expressions as placeholders."""
    env = {}
    for name, value in items.items():
        literal = isinstance(value, str) and "${" not in value
        env[name] = value if literal else f"placeholder-for-{name.lower()}"
    return env
