"""What MetalK8s' buildchain says about its RPM repositories, for the recipe to match.

Usage: python3 rpm_packages.py CHECKOUT

CHECKOUT holds at least buildchain/buildchain/versions.py, VERSION and
packages/redhat/common/yum_repositories/*.repo. Prints JSON:
- "packages": `rpm_full_name` of each of versions.py's REDHAT_PACKAGES["8"] (the arguments of
  entrypoint.sh's download_packages, and of the built ones);
- "repos": for each .repo section, its baseurl and gpgkey list, with the builder's
  substitutions (packages/redhat/8/Dockerfile's sed of @SALT_VERSION@ and @K8S_SHORT_VERSION@,
  from versions.py) and yum's $releasever=8, $basearch=x86_64.
"""

import configparser
import json
import sys
from pathlib import Path

checkout = Path(sys.argv[1])
sys.path.insert(0, str(checkout / "buildchain"))

from buildchain import versions  # noqa: E402

repos = {}
for path in sorted((checkout / "packages/redhat/common/yum_repositories").glob("*.repo")):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    for section in parser.sections():

        def value(key, section=section):
            return (
                parser.get(section, key)
                .replace("@SALT_VERSION@", versions.SALT_VERSION)
                .replace("@K8S_SHORT_VERSION@", versions.K8S_SHORT_VERSION)
                .replace("$releasever", "8")
                .replace("$basearch", "x86_64")
            )

        repos[section] = {"baseurl": value("baseurl"), "gpgkey": value("gpgkey").split()}

print(
    json.dumps(
        {
            "packages": [pkg.rpm_full_name for pkg in versions.REDHAT_PACKAGES["8"]],
            "repos": repos,
        },
        indent=2,
    )
)
