"""Random YAML data and what PyYAML writes for it, the reference of `format: yaml`.

Usage: python3 pyyaml_cases.py SEED COUNT DIR

Writes DIR/in/<i>.json (one value each: mappings in order, nested lists, every kind of
scalar, strings chosen to hit PyYAML's style rules: resolver look-alikes, indicators, quotes,
tabs, non-ASCII, line breaks with and without trailing spaces, long lines that fold) and
DIR/ref/<i>.yaml: `yaml.SafeDumper(fp, sort_keys=False)` of it, with strings that hold a
line break as literal blocks, which is how MetalK8s' buildchain writes its SLS files
(`targets/serialize.py`). Debian's python3-yaml is enough.
"""

import io
import json
import random
import sys
from pathlib import Path

import yaml

WORDS = [
    "a", "key", "yes", "no", "on", "1", "1.5", "0x1f", "1:30", "2001-12-14", "~", "null",
    "", " lead", "trail ", "a: b", "a #b", "#c", "-", "- x", "?", ":x", "x:", "it's",
    "tab\there", "caf\u00e9", "\U0001f600", "@at", "`b", "%p", "!t", "&a", "*a", "|p", ">p",
    "'q'", '"dq"', "a,b", "[x]", "{x}", "---", "...", "<<", "=", "True", "1e5", "1_000",
    ".inf", "-.5", "x" * 30, "\\back", "\x07bell", "nbsp\xa0x",
]
MULTILINE = ["a\nb", "a\nb\n", "a\nb\n\n", "\nlead", " x\ny", "x \ny", "line\u2028sep"]
PIECES = ["alpha", "beta", "gamma", "it's", "x:y", "caf\u00e9", "a  b", "'", "\\", "\t",
          "#h", ": ", "   "]


class Literal(str):
    pass


def literal(dumper, data):
    scalar = yaml.dumper.SafeDumper.represent_str(dumper, data)
    scalar.style = "|"
    return scalar


def long_text(rng):
    sep = " " if rng.random() < 0.2 else ""
    return sep.join(
        rng.choice(PIECES) + rng.choice([" ", " ", "", "  "])
        for _ in range(rng.randint(5, 60))
    )


def value(rng, depth):
    r = rng.random()
    if depth > 3 or r < 0.5:
        c = rng.random()
        if c < 0.05:
            return None
        if c < 0.1:
            return rng.choice([True, False])
        if c < 0.15:
            return rng.choice([0, -3, 12345678901234])
        if c < 0.2:
            return rng.choice([1.5, 0.1, 1e17, 1e-7, 3.0, -2.5e-5, 123456789.125])
        if c < 0.3:
            return long_text(rng)
        if c < 0.4:
            return (rng.choice(["", " ", "\n"]) + "text line one\n  indented\n\nlast "
                    + long_text(rng) + rng.choice(["", "\n", "\n\n", " \n", " "]))
        return rng.choice(WORDS + MULTILINE)
    if r < 0.75:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(WORDS) + str(i): value(rng, depth + 1) for i in range(rng.randint(0, 3))}


def literals(v):
    if isinstance(v, str):
        return Literal(v) if any(b in v for b in "\n\x85\u2028\u2029") else v
    if isinstance(v, list):
        return [literals(x) for x in v]
    if isinstance(v, dict):
        return {k: literals(x) for k, x in v.items()}
    return v


def main() -> None:
    rng = random.Random(int(sys.argv[1]))
    count = int(sys.argv[2])
    out = Path(sys.argv[3])
    (out / "in").mkdir(parents=True, exist_ok=True)
    (out / "ref").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        case = value(rng, 0)
        (out / "in" / f"{i}.json").write_text(json.dumps(case), encoding="utf-8")
        fp = io.StringIO()
        dumper = yaml.SafeDumper(fp, sort_keys=False)
        dumper.add_representer(Literal, literal)
        dumper.open()
        dumper.represent(literals(case))
        dumper.close()
        dumper.dispose()
        (out / "ref" / f"{i}.yaml").write_text(fp.getvalue(), encoding="utf-8")


if __name__ == "__main__":
    main()
