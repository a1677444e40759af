"""MkDocs hook: adds the schema reference page, rendered from `kong-ace-server --dump`."""

from __future__ import annotations

from mkdocs.structure.files import File, Files

from kong_ace.ops.schema_doc import config_schema, dump, render

PAGE = "configuration-schema.md"


def on_files(files: Files, config) -> Files:
    """Generate the page at every build, so it can never differ from the code."""
    files.append(File.generated(config, PAGE, content=render(config_schema(dump()))))
    return files
