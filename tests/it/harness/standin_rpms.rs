//! Stand-ins for `recipes/metalk8s.yaml`'s RPM repositories: one signed synthetic package per
//! seed of versions.py (and the dependencies that make the closure cross repositories, the
//! built packages' requirements included), served by nginx and reached with
//! `--mirror URL=URL`; and real RPMs for the two packages MetalK8s builds (containerd,
//! metalk8s-sosreport), which the stand-in builder's `buildrpm` hands out, so that the
//! scality repository is made of RPMs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::peers::Nginx;
use crate::harness::rpms::{Rpm, Signer, make_repos, rpm, run, serve};

/// The stand-in repositories, served.
pub struct StandInRepos {
    nginx: Option<Nginx>,
    /// Repository id → its folder.
    pub repos: BTreeMap<String, PathBuf>,
    /// The public key every stand-in RPM is signed with.
    pub key: PathBuf,
    _signer: Signer,
}

impl StandInRepos {
    pub fn start(dir: &Path) -> Self {
        let dir = dir.join("rpm-standins");
        let os = |repo, name| rpm(repo, name, "1.0");
        let mut rpms: Vec<Rpm> = [
            "coreutils",
            "e2fsprogs",
            "ethtool",
            "gdisk",
            "iproute",
            "iptables",
            "lvm2",
            "tar",
            "util-linux",
            "yum-utils",
            "xfsprogs",
            "iptables-ebtables",
            "python3-dnf-plugin-versionlock",
            "python3-requests",
        ]
        .into_iter()
        .map(|name| os("baseos", name))
        .collect();
        rpms.extend([
            rpm("baseos", "python3", "3.6.8"),
            rpm("baseos", "sos", "4.5.6"),
        ]);
        rpms.extend(
            [
                "genisoimage",
                "httpd-tools",
                "socat",
                "container-selinux",
                "python3-psutil",
                "python3-pyOpenSSL",
            ]
            .into_iter()
            .map(|name| os("appstream", name)),
        );
        rpms.push(rpm("appstream", "runc", "1:1.1.12"));
        rpms.push(os("extras", "epel-release"));
        rpms.extend([
            Rpm {
                requires: &["python3-botocore", "coreutils"],
                ..rpm("epel", "python3-boto3", "1.6.1")
            },
            os("epel", "python3-botocore"),
            os("epel", "python3-m2crypto"),
            rpm("kubernetes", "kubectl", "1.29.8"),
            Rpm {
                requires: &["kubernetes-cni", "iptables"],
                ..rpm("kubernetes", "kubelet", "1.29.8")
            },
            // Newer than the pin: must not ship.
            rpm("kubernetes", "kubelet", "1.30.0"),
            os("kubernetes", "cri-tools"),
            os("kubernetes", "kubernetes-cni"),
            Rpm {
                requires: &["salt = 3002.9"],
                ..rpm("saltstack", "salt-minion", "3002.9")
            },
            rpm("saltstack", "salt", "3002.9"),
        ]);
        let signer = Signer::new();
        let repos = make_repos(&dir, &rpms, "", Some(&signer));
        let key = dir.join("repos/key.asc");
        fs_err::write(&key, &signer.public_key).unwrap();
        let nginx = serve(&dir);
        Self {
            nginx: Some(nginx),
            repos,
            key,
            _signer: signer,
        }
    }

    /// Stop serving (the repositories stay on disk, for a consumer to read).
    pub fn stop(&mut self) {
        self.nginx.take();
    }

    /// `--mirror` arguments: each downloaded repository's base URL and each key URL to the
    /// stand-ins.
    pub fn mirrors(&self, recipe: &isobuild::recipe::Recipe) -> Vec<String> {
        let packages = recipe.packages.as_ref().expect("the recipe has packages:");
        let host = self
            .nginx
            .as_ref()
            .expect("the stand-ins are served")
            .host();
        let mut args = Vec::new();
        for repo in packages.repos.iter().filter(|repo| !repo.is_built()) {
            assert!(
                self.repos.contains_key(&repo.id),
                "no stand-in for `{}`",
                repo.id
            );
            args.push("--mirror".to_owned());
            args.push(format!("{}=http://{host}/repos/{}/", repo.baseurl, repo.id));
            for key in &repo.gpgkeys {
                args.push("--mirror".to_owned());
                args.push(format!("{key}=http://{host}/repos/key.asc"));
            }
        }
        args
    }
}

/// Build stand-ins of MetalK8s' own RPMs with rpmbuild (unsigned, as MetalK8s ships them,
/// with the real specs' requirements) and put them where the stand-in builder's `buildrpm`
/// takes them from: `standin-rpms/` in the folders the recipe's two tasks mount (`/common`,
/// `/sosreport`).
pub fn place_built_rpms(checkout: &Path, scratch: &Path) {
    let specs = [
        (
            "containerd",
            "1.6.35",
            "Requires: (runc < 1:1.1.3 or runc > 1:1.1.3)\n",
            "packages/redhat/common/standin-rpms",
        ),
        (
            "metalk8s-sosreport",
            "129.0.0",
            "Requires: sos >= 4.0\nRequires: python3 >= 3.6\nRequires: python3-requests\nRequires: python3-boto3 >= 1.6\n",
            "packages/common/metalk8s-sosreport/standin-rpms",
        ),
    ];
    for (name, version, requires, folder) in specs {
        let top = scratch.join(format!("rpmbuild-{name}"));
        let spec = scratch.join(format!("{name}.spec"));
        fs_err::create_dir_all(scratch).unwrap();
        fs_err::write(
            &spec,
            format!(
                "Name: {name}\nVersion: {version}\nRelease: 2.el8\nSummary: stand-in\nLicense: ASL 2.0\nAutoReqProv: no\n{requires}%description\nstand-in for MetalK8s' {name}\n%install\nmkdir -p %{{buildroot}}/usr/share/{name}\necho {name} > %{{buildroot}}/usr/share/{name}/stand-in\n%files\n/usr/share/{name}\n"
            ),
        )
        .unwrap();
        run(Command::new("rpmbuild")
            .args(["--quiet", "--target", "x86_64", "--define"])
            .arg(format!("_topdir {}", top.display()))
            .args(["--define", "_build_id_links none", "--define"])
            .arg(format!("_rpmdir {}", top.join("RPMS").display()))
            .arg("-bb")
            .arg(&spec));
        let file = format!("{name}-{version}-2.el8.x86_64.rpm");
        let dest = checkout.join(folder);
        fs_err::create_dir_all(&dest).unwrap();
        fs_err::copy(top.join("RPMS/x86_64").join(&file), dest.join(&file)).unwrap();
    }
}
