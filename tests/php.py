"""PHP's reading of query and form argument names: the upstream oracle's, not the product's."""

from __future__ import annotations

import re


def php_name(name: str) -> str:
    """main/php_variables.c php_register_variable_ex: the name PHP gives a decoded argument
    name ('' when PHP drops it); an array's base name for ``a[...]``."""
    name = name.lstrip(" ").split("\0", 1)[0]
    out = []
    for i, c in enumerate(name):
        if c in " .":
            out.append("_")
        elif c == "[":
            if i == 0:
                return ""
            if "]" in name[i + 1:]:
                return "".join(out)
            return "".join(out) + "_" + re.sub(r"[ .\[]", "_", name[i + 1:])
        else:
            out.append(c)
    return "".join(out)
