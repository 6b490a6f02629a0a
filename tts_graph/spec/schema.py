"""The spec's JSON Schema, shipped as ``tts_graph/spec/schema.json`` so editors validate specs
that name it in ``$schema``. Regenerate it after changing the models::

    .venv/bin/python -m tts_graph.spec.schema
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tts_graph.spec.models import Spec

__all__ = ["SCHEMA_PATH", "json_schema"]

SCHEMA_PATH = Path(__file__).with_name("schema.json")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file, short forms included (``strategy: best_of_n``,
    ``verifier: math``)."""
    schema = Spec.model_json_schema(by_alias=True, mode="validation")
    _allow_short_forms(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _allow_short_forms(node: Any) -> None:
    """A strategy may be written as its kind, a verifier as its name: the models accept both
    (a before-validator expands them), so the schema must too."""
    if isinstance(node, list):
        for item in node:
            _allow_short_forms(item)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _allow_short_forms(value)
    if "discriminator" in node and "oneOf" in node:
        kinds = sorted(node["discriminator"]["mapping"])
        union = {k: node.pop(k) for k in ("oneOf", "discriminator")}
        node["anyOf"] = [{"type": "string", "enum": kinds}, union]
    elif node.get("$ref") == "#/$defs/VerifierSpec":
        node.pop("$ref")
        node["anyOf"] = [{"type": "string"}, {"$ref": "#/$defs/VerifierSpec"}]
    elif "anyOf" in node and {"$ref": "#/$defs/VerifierSpec"} in node["anyOf"]:
        node["anyOf"].insert(0, {"type": "string"})


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"{SCHEMA_PATH}\n")
