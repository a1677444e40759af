"""OpenAPI 3.0/3.1 documents: load, resolve the refs on the way to operations, list operations."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from kong_ace.errors import ConfigError

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_WARNINGS = 20
_MAX_REF_DEPTH = 32
_SERVER_VARIABLE = re.compile(r"\{([^{}]*)\}")
# Hostile specs: libyaml's C composer recurses once per nesting level and overflows the C
# stack (a segfault, killing the plugin server) somewhere above ~20,000 levels of `[`/`{`;
# no OpenAPI document needs more than a few dozen. A spec file is read only if it is a
# regular file (not /dev/zero, not a FIFO) of sane size.
MAX_NESTING = 256
MAX_SPEC_BYTES = 64 * 1024 * 1024
_NOT_FLOW = re.compile(r"[^\[\]{}]+")
_FLOW_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}

try:  # the C loader is ~10x faster on large specs
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass(frozen=True, slots=True)
class SpecOperation:
    """One operation as the spec declares it."""

    method: str
    template: str
    operation_id: str | None


@dataclass(slots=True)
class Spec:
    """The parts of an OpenAPI document that access control needs."""

    source: str
    base_path: str
    operations: list[SpecOperation]
    warnings: list[str] = field(default_factory=list)


def parse_document(text: str, source: str) -> Any:
    """Parse YAML or JSON text; a syntax error names the source."""
    is_json = text.lstrip().startswith("{")
    # Deeper documents crash libyaml and exhaust the recursion of later walks (validation).
    if _flow_depth(text) > MAX_NESTING:
        raise ConfigError(source, f"not an OpenAPI document: nested more than {MAX_NESTING} levels")
    try:
        if is_json:
            return json.loads(text)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(source, f"not valid YAML or JSON: {_one_line(exc)}") from None


def _flow_depth(text: str) -> int:
    """Upper bound of the flow-collection nesting (brackets in quoted strings count too)."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return 0
    steps: Iterator[int] = map(_FLOW_STEP.__getitem__, _NOT_FLOW.sub("", text))
    return max(accumulate(steps), default=0)


def read_spec_text(path: Path, place: str, what: str = "cannot read spec") -> str:
    """The text of a spec file; anything but a readable UTF-8 regular file is a ConfigError."""
    try:
        if not path.is_file():
            raise ConfigError(place, f"{what}: {path} is not a regular file")
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise ConfigError(place, f"{what}: {path} is larger than {MAX_SPEC_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(place, f"{what}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(place, f"{what}: {path} is not UTF-8 ({exc.reason} at byte "
                                 f"{exc.start})") from None


def load_spec_file(path: Path, source: str, *, validate: bool = True) -> Spec:
    """Read and compile a spec file; ``source`` is how errors name it."""
    text = read_spec_text(path, source)
    return compile_spec(parse_document(text, source), source, path.parent, validate=validate)


def compile_spec(doc: Any, source: str, base_dir: Path | None, *, validate: bool = True) -> Spec:
    """Extract base path and operations; only what prevents extraction raises."""
    if not isinstance(doc, dict):
        raise ConfigError(source, "not an OpenAPI document (expected a map at the top level)")
    version = doc.get("openapi")
    if not isinstance(version, str) or not version.startswith("3."):
        found = doc.get("swagger", version)
        raise ConfigError(source, f"not an OpenAPI 3 document (openapi: {found!r})")
    paths = doc.get("paths", {})
    if paths is None:
        paths = {}
    if not isinstance(paths, dict):
        raise ConfigError(f"{source}: paths", "must be a map of path templates")
    resolver = _Resolver(doc, source, base_dir)
    operations: list[SpecOperation] = []
    for template, item in paths.items():
        place = f"{source}: paths.{template}"
        if not isinstance(template, str) or not template.startswith("/"):
            raise ConfigError(place, "a path template must start with '/'")
        item = resolver.resolve(item, place)
        if not isinstance(item, dict):
            raise ConfigError(place, "a path item must be a map")
        for method in HTTP_METHODS:
            op = item.get(method)
            if op is None:
                continue
            op = resolver.resolve(op, f"{place}.{method}")
            if not isinstance(op, dict):
                raise ConfigError(f"{place}.{method}", "an operation must be a map")
            op_id = op.get("operationId")
            operations.append(
                SpecOperation(method.upper(), template, op_id if isinstance(op_id, str) else None)
            )
    spec = Spec(source, base_path_of(doc), operations)
    if validate:
        spec.warnings = validation_warnings(doc, source)
    return spec


def base_path_of(doc: dict[str, Any]) -> str:
    """The path prefix of the first server URL, variables replaced by their defaults."""
    servers = doc.get("servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
        return ""
    url = servers[0].get("url")
    if not isinstance(url, str):
        return ""
    variables = servers[0].get("variables") or {}

    def default(m: re.Match[str]) -> str:
        var = variables.get(m.group(1)) if isinstance(variables, dict) else None
        value = var.get("default") if isinstance(var, dict) else None
        return str(value) if value is not None else ""

    url = _SERVER_VARIABLE.sub(default, url)
    path = urlsplit(url).path if "://" in url else url
    return clean_base_path(path)


def clean_base_path(path: str) -> str:
    """``/v1/`` -> ``/v1``; ``/`` and empty -> empty."""
    path = path.strip()
    if not path or path == "/":
        return ""
    if not path.startswith("/"):
        path = "/" + path
    return path.rstrip("/")


def validation_warnings(doc: dict[str, Any], source: str) -> list[str]:
    """OpenAPI validation findings, as warnings (never fatal: ACE needs only the operations)."""
    try:
        from openapi_spec_validator import validate
        from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
    except ImportError:  # pragma: no cover - the validator is a declared dependency
        return []
    try:
        validate(doc)
    except OpenAPIValidationError as exc:
        where = ".".join(str(p) for p in getattr(exc, "path", ()) or ())
        return [f"{source}: {where + ': ' if where else ''}{_one_line(exc)}"]
    except Exception as exc:  # noqa: BLE001 - a validator bug must not stop the gateway
        return [f"{source}: spec validation did not complete: {_one_line(exc)}"]
    return []


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class _Resolver:
    """Follows ``$ref`` within the document and to sibling files."""

    def __init__(self, doc: Any, source: str, base_dir: Path | None) -> None:
        self._docs: dict[str, Any] = {"": doc}
        self._source = source
        self._base_dir = base_dir

    def resolve(self, node: Any, place: str) -> Any:
        current_file = ""
        for _ in range(_MAX_REF_DEPTH):
            if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
                return node
            ref = node["$ref"]
            file_part, _, pointer = ref.partition("#")
            if file_part:
                current_file = file_part
            node = self._pointer(self._document(current_file, ref, place), pointer, ref, place)
        raise ConfigError(f"{place}.$ref", "reference cycle")

    def _document(self, name: str, ref: str, place: str) -> Any:
        if name not in self._docs:
            if self._base_dir is None:
                raise ConfigError(f"{place}.$ref", f"cannot resolve {ref!r}: inline spec")
            path = self._base_dir / name
            if not path.exists():
                raise ConfigError(f"{place}.$ref", f"cannot resolve {ref!r}: no file {name}")
            text = read_spec_text(path, f"{place}.$ref", f"cannot resolve {ref!r}")
            self._docs[name] = parse_document(text, f"{self._source} -> {name}")
        return self._docs[name]

    @staticmethod
    def _pointer(doc: Any, pointer: str, ref: str, place: str) -> Any:
        node = doc
        for token in pointer.split("/")[1:] if pointer else ():
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise ConfigError(f"{place}.$ref", f"cannot resolve {ref!r}")
        return node
