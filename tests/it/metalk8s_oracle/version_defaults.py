"""Render `version_defaults` of salt/metalk8s/map.jinja, as Salt would on a RedHat 8 node.

Usage: python3 version_defaults.py SALT_ROOT

SALT_ROOT is the `salt/` folder of an ISO tree. The `{% set version_defaults = … %}`
statement is taken from its `metalk8s/map.jinja` and rendered with jinja2 (strict undefined
values), `versions` read from `metalk8s/versions.json` as Salt's `import_json` does,
`defaults` from `metalk8s/defaults.yaml`, and `salt['grains.filter_by']` with Salt's
semantics for grains os=RedHat, os_family=RedHat, osmajorrelease=8. Prints the result as
JSON; fails (non-zero) when the statement does not render.
"""

import json
import re
import sys
from pathlib import Path

import jinja2
import yaml

GRAINS = {"os": "RedHat", "os_family": "RedHat", "osmajorrelease": 8}


def merge(dest, upd):
    """salt.utils.dictupdate.update: a recursive merge of mappings."""
    for key, value in upd.items():
        if isinstance(value, dict) and isinstance(dest.get(key), dict):
            merge(dest[key], value)
        else:
            dest[key] = value
    return dest


def filter_by(lookup_dict, grain="os_family", merge=None, default="default", base=None):
    """salt.modules.grains.filter_by (without `base`, which map.jinja does not use)."""
    ret = lookup_dict.get(GRAINS.get(grain), lookup_dict.get(default))
    if merge:
        if ret is None:
            ret = {}
        ret = globals()["merge"](dict(ret), merge)
    return ret


def main() -> None:
    root = Path(sys.argv[1])
    text = (root / "metalk8s" / "map.jinja").read_text(encoding="utf-8")
    match = re.search(r"\{% set version_defaults = .*?\) %\}", text, re.S)
    if match is None:
        sys.exit("map.jinja has no `set version_defaults` statement")
    versions = json.loads((root / "metalk8s" / "versions.json").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((root / "metalk8s" / "defaults.yaml").read_text(encoding="utf-8"))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    template = env.from_string(match.group(0) + "{{ version_defaults | tojson }}")
    out = template.render(
        versions=versions,
        defaults=defaults,
        salt={"grains.filter_by": filter_by},
    )
    print(out)


if __name__ == "__main__":
    main()
