"""Write the files MetalK8s' buildchain (doit) writes under `_build/root`, with doit's own code.

Usage: python3 doit_tree.py CHECKOUT [IMAGES_DIR]

The tree lands in CHECKOUT/_build/root, doit's default (its task docs name paths relative
to the checkout, so the build root must lie inside it).

The buildchain modules are imported from CHECKOUT with small stand-ins for the `doit` and
`docker` packages (neither is needed to *run* the file actions), then the Python actions of
`salt_tree.FILE_TREES` and `iso.FILE_TREES` are run in task order: the copies
(`coreutils.cp_file`), `TemplateFile`, `SerializedData` and the static-container-registry
generator. Actions that need a container (the alert-tree builder) are skipped and their
targets printed on stdout as `skipped <path>`. IMAGES_DIR, when given, is the `images/` tree
the per-version registry rules are generated from (doit reads `_build/root/images`).

Only the standard library, PyYAML and the checkout are used, so Debian's python3 with
python3-yaml runs it.
"""

import inspect
import os
import shutil
import sys
import types
from pathlib import Path


def stub_modules() -> None:
    doit = types.ModuleType("doit")
    for sub in ("action", "exceptions", "task", "tools"):
        module = types.ModuleType(f"doit.{sub}")
        setattr(doit, sub, module)
        sys.modules[f"doit.{sub}"] = module

    class CmdAction:  # what doit runs as a shell command: never run here
        def __init__(self, *args, **kwargs):
            self.args = args

    class TaskError(Exception):
        pass

    doit.action.CmdAction = CmdAction
    doit.exceptions.TaskError = TaskError
    doit.exceptions.CatchedException = TaskError
    doit.task.Task = object
    doit.tools.config_changed = lambda *a, **k: None
    doit.tools.run_once = lambda *a, **k: True
    doit.create_after = lambda *a, **k: (lambda f: f)
    sys.modules["doit"] = doit

    docker = types.ModuleType("docker")
    errors = types.ModuleType("docker.errors")
    dtypes = types.ModuleType("docker.types")
    for name in ("BuildError", "ContainerError", "APIError", "ImageNotFound"):
        setattr(errors, name, type(name, (Exception,), {}))

    class Mount:
        def __init__(self, *args, **kwargs):
            self.args = args

    dtypes.Mount = Mount
    docker.errors = errors
    docker.types = dtypes
    docker.DockerClient = object
    docker.from_env = lambda *a, **k: None
    sys.modules["docker"] = docker
    sys.modules["docker.errors"] = errors
    sys.modules["docker.types"] = dtypes


def run_action(action, task) -> None:
    """Call a Python action as doit does: `targets` is passed when the function names it."""
    if callable(action):
        func, args, kwargs = action, [], {}
    elif isinstance(action, tuple):
        func, args = action[0], list(action[1])
        kwargs = dict(action[2]) if len(action) > 2 else {}
    else:
        raise TypeError(f"not a Python action: {action!r}")
    if "targets" in inspect.signature(func).parameters:
        kwargs.setdefault("targets", [str(t) for t in task.get("targets", [])])
    func(*args, **kwargs)


def main() -> None:
    checkout = Path(sys.argv[1]).resolve()
    images = Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else None
    os.environ.pop("BUILD_ROOT", None)
    os.chdir(checkout)
    sys.path.insert(0, str(checkout / "buildchain"))
    stub_modules()

    from buildchain import constants, iso, salt_tree  # noqa: E402

    root = constants.ISO_ROOT
    root.mkdir(parents=True, exist_ok=True)
    if images is not None:
        # The registry rules read `_build/root/images`; doit pulls there first.
        if constants.ISO_IMAGE_ROOT.exists():
            shutil.rmtree(constants.ISO_IMAGE_ROOT)
        shutil.copytree(images, constants.ISO_IMAGE_ROOT, symlinks=False)

    for tree in iso.FILE_TREES + salt_tree.FILE_TREES:
        for task in tree.execution_plan:
            actions = task.get("actions") or []
            if any(type(a).__name__ == "DockerRun" for a in actions):
                for target in task.get("targets", []):
                    print(f"skipped {Path(target).relative_to(root)}")
                continue
            if images is None and task.get("task_dep") and "images" in task["task_dep"]:
                for target in task.get("targets", []):
                    print(f"skipped {Path(target).relative_to(root)}")
                continue
            for action in actions:
                run_action(action, task)

    if images is not None:
        shutil.rmtree(constants.ISO_IMAGE_ROOT)


if __name__ == "__main__":
    main()
