//! `recipes/metalk8s.yaml`, loaded against the stand-in checkout in
//! `tests/fixtures/metalk8s-src`: its 37 images with their pins, the registry and ISO
//! settings, the local-image tasks, its `files:` entries, and its `product.txt` template
//! rendered whole, through the library. The tree it builds is compared with doit's in
//! `metalk8s_doit.rs`, through the binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use isobuild::recipe::{self, ImageFormat, Recipe, TemplateContext};
use isobuild::reference::ImageSource;
use pretty_assertions::assert_eq;

fn project_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_checkout() -> PathBuf {
    project_dir().join("tests/fixtures/metalk8s-src")
}

/// The recipe with `--set` overrides, `metalk8s_src` pointing at the stand-in checkout.
fn load(extra: &[(&str, &str)]) -> Recipe {
    let mut overrides = BTreeMap::from([(
        "metalk8s_src".to_owned(),
        fixture_checkout().display().to_string(),
    )]);
    for (key, value) in extra {
        overrides.insert((*key).to_owned(), (*value).to_owned());
    }
    match recipe::load(&project_dir().join("recipes/metalk8s.yaml"), &overrides) {
        Ok(recipe) => recipe,
        Err(error) => panic!("recipes/metalk8s.yaml does not load: {error:?}"),
    }
}

/// Render one of the recipe's own templates (`recipes/metalk8s/NAME`) as a build would.
fn render(name: &str, context: &TemplateContext) -> String {
    let path = project_dir().join("recipes/metalk8s").join(name);
    let source = fs_err::read_to_string(&path).unwrap();
    let env = recipe::template_env();
    let template = env.template_from_str(&source).unwrap();
    template
        .render(minijinja::value::Serde(context))
        .unwrap_or_else(|error| panic!("{name}: {error:#}"))
}

const LOCAL: [&str; 7] = [
    "metalk8s-alert-logger",
    "metalk8s-keepalived",
    "salt-master",
    "metalk8s-ui",
    "metalk8s-utils",
    "metalk8s-operator",
    "storage-operator",
];

#[test]
fn metalk8s_recipe_loads_with_the_iso_settings_of_metalk8s() {
    let recipe = load(&[]);
    let recipes = project_dir().join("recipes");
    assert_eq!(recipe.name, "MetalK8s");
    assert_eq!(recipe.version, "129.0.0-dev");
    assert_eq!(recipe.epoch, Some(1_725_148_800));
    let vars: Vec<(&str, &str)> = recipe
        .vars
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let checkout = fixture_checkout().display().to_string();
    assert_eq!(
        vars,
        [
            ("build_host", "isobuild"),
            ("containerd_release", "2"),
            ("containerd_version", "1.6.35"),
            ("etcd_version", "3.5.15"),
            ("git", ""),
            ("keepalived_version", "2.3.1"),
            ("kubernetes_short_version", "1.29"),
            ("kubernetes_version", "1.29.8"),
            ("metalk8s_src", checkout.as_str()),
            ("nodejs_image_version", "16.14.0"),
            ("nonsuffixed_version", "129.0.0"),
            (
                "rocky_base_image_sha256",
                "c464612ef7e3d54d658c3eaa4778b5cdc990ec7a4d9ab63b0f00c9994c6ce980"
            ),
            ("salt_version", "3002.9"),
            ("short_version", "129.0"),
            ("sosreport_release", "2"),
        ]
    );
    assert_eq!(recipe.iso.output, recipes.join("_build/metalk8s.iso"));
    assert_eq!(recipe.iso.root, recipes.join("_build/root"));
    assert_eq!(recipe.iso.volume_id, "MetalK8s 129.0.0-dev");
    assert!(recipe.iso.implant_md5);
    assert_eq!(recipe.iso.sha256sum, Some(recipes.join("_build/SHA256SUM")));

    let images = &recipe.images;
    assert_eq!(images.platform.to_string(), "linux/amd64");
    assert_eq!(images.format, ImageFormat::V2s2);
    let registry = images.registry_config.as_ref().unwrap();
    assert_eq!(
        registry.path.as_str(),
        "salt/metalk8s/repo/files/metalk8s-registry.inc"
    );
    assert_eq!(
        registry.common_path.as_str(),
        "salt/metalk8s/repo/files/metalk8s-registry-common.inc"
    );
    assert_eq!(registry.name_prefix, "metalk8s-129.0.0-dev/");
    assert_eq!(registry.server_root, "$metalk8s_129_0_0_dev_images");
}

#[test]
fn metalk8s_recipe_lists_37_images_with_their_pins() {
    let recipe = load(&[]);
    let list: Vec<_> = recipe
        .images
        .list
        .iter()
        .filter(|i| i.ship)
        .cloned()
        .collect();
    let list = &list;
    assert_eq!(list.len(), 37);
    let by_name = |name: &str| list.iter().find(|image| image.name == name).unwrap();

    // 30 pulled by tag, 28 of them pinned by the digest the tag resolves to.
    let pulled: Vec<_> = list
        .iter()
        .filter(|image| matches!(image.source, ImageSource::Registry(_)))
        .collect();
    assert_eq!(pulled.len(), 30);
    let by_digest: Vec<&str> = pulled
        .iter()
        .filter(|image| image.digest.is_some())
        .map(|image| image.name.as_str())
        .collect();
    assert_eq!(by_digest.len(), 28);
    assert!(!by_digest.contains(&"pause") && !by_digest.contains(&"nginx"));
    for image in &pulled {
        assert_eq!(
            image.path.as_str(),
            format!("images/{}/{}", image.name, image.tag)
        );
    }
    assert_eq!(
        by_name("nginx-ingress-controller").source.to_string(),
        "docker://registry.k8s.io/ingress-nginx/controller:v1.10.3"
    );
    assert_eq!(by_name("calico-cni").tag, "v3.28.1");

    // pause: pinned by image ID (config digest), as MetalK8s records it.
    let pause = by_name("pause");
    assert_eq!(pause.digest, None);
    assert_eq!(
        pause.image_id.as_ref().unwrap().to_string(),
        "sha256:e6f1816883972d4be47bd48879a08919b96afcd344132622e4d444987919323c"
    );
    // fluent-bit: MetalK8s' pin lacks `sha256:`; the recipe writes it whole.
    assert_eq!(
        by_name("fluent-bit").digest.as_ref().unwrap().to_string(),
        "sha256:a93d6119f67f804843f6d4d97dd8448389abed7e821e7513c5b8f387e57edfb9"
    );
    // nginx: no pin at all (Docker Hub republishes the tag).
    let nginx = by_name("nginx");
    assert_eq!((&nginx.digest, &nginx.image_id), (&None, &None));
    assert!(
        list.iter()
            .all(|image| image.image_id.is_none() || image.name == "pause")
    );

    // Only pause and nginx are also written as docker-archive tarballs.
    let archives: Vec<(&str, &str)> = list
        .iter()
        .filter_map(|image| Some((image.name.as_str(), image.archive.as_ref()?.as_str())))
        .collect();
    assert_eq!(
        archives,
        [
            ("nginx", "images/nginx-1.27.0-alpine.tar"),
            ("pause", "images/pause-3.9.tar"),
        ]
    );

    // 7 built from the checkout, with no pin.
    for name in LOCAL {
        let image = by_name(name);
        assert!(image.build.is_some(), "{name}");
        assert_eq!(image.digest, None, "{name}");
        let tag = if name == "salt-master" {
            "3002.9-1"
        } else {
            "129.0.0-dev"
        };
        assert_eq!(image.tag, tag, "{name}");
    }
}

/// Build arguments and contexts as MetalK8s' buildchain/buildchain/image.py and builder.py
/// give them (BUILD_DATE from the epoch, VCS_REF from `git`).
#[test]
fn metalk8s_recipe_builds_images_with_the_args_of_image_py() {
    let recipe = load(&[("git", "129.0.0-dev-0-gabc")]);
    let checkout = fixture_checkout();
    let alpine = "docker.io/library/alpine@sha256:b89d9c93e9ed3597455c90a0b88a8bbb5cb7188438f70953fede212a0c4394e0";
    let rocky = "c464612ef7e3d54d658c3eaa4778b5cdc990ec7a4d9ab63b0f00c9994c6ce980";
    let date = "2024-09-01T00:00:00Z";
    let vcs = "129.0.0-dev-0-gabc";
    let v = "129.0.0-dev";
    let expected: [(&str, &[(&str, &str)]); 12] = [
        ("metalk8s-alert-logger", &[("BASE_IMAGE", alpine)]),
        (
            "metalk8s-keepalived",
            &[
                ("BASE_IMAGE", alpine),
                ("BUILD_DATE", date),
                ("KEEPALIVED_VERSION", "2.3.1"),
                ("METALK8S_VERSION", v),
                ("VCS_REF", vcs),
                ("VERSION", v),
            ],
        ),
        (
            "salt-master",
            &[
                ("BASE_IMAGE", "docker.io/rockylinux"),
                ("BASE_IMAGE_SHA256", rocky),
                ("SALT_VERSION", "3002.9"),
            ],
        ),
        ("metalk8s-ui", &[("NGINX_IMAGE_VERSION", "1.27.0-alpine")]),
        (
            "metalk8s-utils",
            &[
                ("BASE_IMAGE", "docker.io/rockylinux"),
                ("BASE_IMAGE_SHA256", rocky),
                ("BUILD_DATE", date),
                ("ETCD_VERSION", "v3.5.15"),
                ("K8S_SHORT_VERSION", "1.29"),
                ("K8S_VERSION", "1.29.8"),
                ("METALK8S_VERSION", v),
                ("SALT_VERSION", "3002.9"),
                ("VCS_REF", vcs),
            ],
        ),
        (
            "metalk8s-operator",
            &[
                ("BUILD_DATE", date),
                ("METALK8S_VERSION", v),
                ("VCS_REF", vcs),
                ("VERSION", v),
            ],
        ),
        (
            "storage-operator",
            &[
                ("BUILD_DATE", date),
                ("METALK8S_VERSION", v),
                ("VCS_REF", vcs),
                ("VERSION", v),
            ],
        ),
        (
            "metalk8s-redhat-8-rpm-builder",
            &[("K8S_SHORT_VERSION", "1.29"), ("SALT_VERSION", "3002.9")],
        ),
        ("metalk8s-doc-builder", &[]),
        ("metalk8s-ui-builder", &[("NODE_IMAGE_VERSION", "16.14.0")]),
        (
            "metalk8s-shell-ui-builder",
            &[("NODE_IMAGE_VERSION", "16.14.0")],
        ),
        ("metalk8s-alert-tree-builder", &[]),
    ];
    let built: Vec<&str> = recipe
        .images
        .list
        .iter()
        .filter(|image| image.build.is_some())
        .map(|image| image.name.as_str())
        .collect();
    assert_eq!(built, expected.map(|(name, _)| name));
    for (name, args) in expected {
        let image = recipe.images.list.iter().find(|i| i.name == name).unwrap();
        let build = image.build.as_ref().unwrap();
        let got: Vec<(&str, &str)> = build
            .args
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, args, "{name}");
        assert!(
            build.containerfile.is_file(),
            "{name}: {:?}",
            build.containerfile
        );
        assert_eq!(image.ship, !name.ends_with("-builder"), "{name}");
    }
    let context = |name: &str| {
        let image = recipe.images.list.iter().find(|i| i.name == name).unwrap();
        image.build.as_ref().unwrap().context.clone()
    };
    assert_eq!(context("salt-master"), checkout.join("images/salt-master"));
    assert_eq!(context("metalk8s-operator"), checkout.join("operator"));
    assert_eq!(
        context("metalk8s-ui"),
        project_dir().join("recipes/_build/metalk8s-ui-context")
    );
    assert_eq!(
        context("metalk8s-shell-ui-builder"),
        checkout.join("shell-ui")
    );
    // doit's docker-run steps, each in its builder.
    let tasks: Vec<(&str, Option<&str>, bool)> = recipe
        .tasks
        .iter()
        .map(|task| {
            let container = task.container.as_ref();
            (
                task.name.as_str(),
                container.map(|c| c.image.as_str()),
                container.is_some_and(|c| c.network),
            )
        })
        .collect();
    assert_eq!(
        tasks,
        [
            ("docs", Some("metalk8s-doc-builder"), true),
            ("ui", Some("metalk8s-ui-builder"), false),
            ("shell-ui", Some("metalk8s-shell-ui-builder"), false),
            ("metalk8s-ui-context", None, false),
            ("alert-tree", Some("metalk8s-alert-tree-builder"), false),
            (
                "rpm-containerd",
                Some("metalk8s-redhat-8-rpm-builder"),
                true
            ),
            (
                "rpm-metalk8s-sosreport",
                Some("metalk8s-redhat-8-rpm-builder"),
                true
            ),
        ]
    );
}

#[test]
fn metalk8s_recipe_lays_out_the_iso_root_as_metalk8s_does() {
    let recipe = load(&[]);
    let checkout = fixture_checkout();
    let recipes = project_dir().join("recipes");
    let shown = |file: &recipe::FileEntry| {
        file.src
            .strip_prefix(&checkout)
            .map(|path| format!("<checkout>/{}", path.display()))
            .or_else(|_| {
                file.src
                    .strip_prefix(&recipes)
                    .map(|path| format!("<recipes>/{}", path.display()))
            })
            .unwrap()
    };
    let files: Vec<(String, &str)> = recipe
        .files
        .iter()
        .map(|file| (shown(file), file.dest.as_str()))
        .collect();
    let pair = |src: &str, dest: &'static str| (src.to_owned(), dest);
    assert_eq!(
        files,
        [
            pair("<recipes>/metalk8s/product.txt.j2", "product.txt"),
            pair(
                "<recipes>/metalk8s/versions.yaml.j2",
                "salt/metalk8s/versions.json"
            ),
            pair("<checkout>/scripts/bootstrap.sh.in", "bootstrap.sh"),
            pair("<checkout>/scripts/backup.sh.in", "backup.sh"),
            pair("<checkout>/scripts/restore.sh.in", "restore.sh"),
            pair("<checkout>/scripts/upgrade.sh.in", "upgrade.sh"),
            pair("<checkout>/scripts/downgrade.sh.in", "downgrade.sh"),
            pair("<checkout>/scripts/common.sh.in", "common.sh"),
            pair("<checkout>/scripts/iso-manager.sh", "iso-manager.sh"),
            pair("<checkout>/scripts/solutions.sh", "solutions.sh"),
            pair(
                "<checkout>/examples/new-node.yaml",
                "examples/new-node.yaml"
            ),
            pair(
                "<checkout>/examples/new-node_vagrant.yaml",
                "examples/new-node_vagrant.yaml"
            ),
            pair(
                "<checkout>/examples/prometheus-sparse.yaml",
                "examples/prometheus-sparse.yaml"
            ),
            pair(
                "<checkout>/examples/loki-sparse.yaml",
                "examples/loki-sparse.yaml"
            ),
            pair("<checkout>/salt", "salt"),
            pair("<checkout>/pillar", "pillar"),
            pair("<checkout>/pillar/top.sls.in", "pillar/top.sls"),
            pair("<checkout>/salt/top.sls.in", "salt/top.sls"),
            pair(
                "<checkout>/salt/metalk8s/reactor/certs/renew.sls.in",
                "salt/metalk8s/reactor/certs/renew.sls"
            ),
            pair(
                "<checkout>/salt/metalk8s/addons/ui/config/deployed-ui-apps.yaml.j2.in",
                "salt/metalk8s/addons/ui/config/deployed-ui-apps.yaml.j2"
            ),
            pair(
                "<checkout>/salt/metalk8s/kubernetes/mark-control-plane/files/bootstrap_node_update.yaml.j2.in",
                "salt/metalk8s/kubernetes/mark-control-plane/files/bootstrap_node_update.yaml.j2"
            ),
            pair(
                "<checkout>/salt/metalk8s/addons/ui/deployed/ui.sls.in",
                "salt/metalk8s/addons/ui/deployed/ui.sls"
            ),
            pair(
                "<checkout>/salt/metalk8s/addons/metalk8s-operator/deployed/manifests.sls.in",
                "salt/metalk8s/addons/metalk8s-operator/deployed/manifests.sls"
            ),
            pair(
                "<checkout>/salt/metalk8s/addons/volumes/deployed/manifests.sls.in",
                "salt/metalk8s/addons/volumes/deployed/manifests.sls"
            ),
            pair(
                "<recipes>/metalk8s/theme-configmap.yaml.j2",
                "salt/metalk8s/addons/dex/deployed/theme-configmap.sls"
            ),
            pair(
                "<recipes>/_build/alert-tree/prometheus_rule.yaml",
                "salt/metalk8s/addons/alert-tree/files/prometheus_rule.yaml"
            ),
            pair("<checkout>/docs/_build/html", "documentation"),
        ]
    );
    // doit's TemplateFile keeps each source's mode: no entry forces one.
    assert!(recipe.files.iter().all(|file| file.mode.is_none()));
    let by_dest = |dest: &str| {
        recipe
            .files
            .iter()
            .find(|f| f.dest.as_str() == dest)
            .unwrap()
    };
    assert_eq!(
        by_dest("salt").exclude,
        ["tests", ".pylintrc", "metalk8s/roles/README.md", "**/*.in"]
    );
    assert_eq!(by_dest("pillar").exclude, ["**/*.in"]);
    assert_eq!(
        by_dest("salt/metalk8s/versions.json").format,
        Some(recipe::DataFormat::Json)
    );
    // The scripts get doit's plain-text replacements; the values that come from other files
    // are read when the recipe is.
    let replace = |dest: &str| {
        by_dest(dest)
            .replace
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        replace("bootstrap.sh"),
        [("@@SALT_VERSION", "3002.9"), ("@@VERSION", "129.0.0-dev")]
    );
    assert_eq!(replace("salt/top.sls"), [("@@VERSION", "129.0.0-dev")]);
    assert_eq!(
        replace("salt/metalk8s/addons/ui/deployed/ui.sls"),
        [("@@ShellUIVersion", "2.17.1")]
    );
    let manifests =
        fs_err::read_to_string(checkout.join("operator/deploy/manifests.yaml")).unwrap();
    assert_eq!(
        replace("salt/metalk8s/addons/metalk8s-operator/deployed/manifests.sls"),
        [("@@Manifests", manifests.as_str())]
    );
    // versions.json's packages: the 28 of versions.py, as recipe data.
    let packages = recipe.data["rpm_packages"].as_object().unwrap();
    assert_eq!(packages.len(), 28);
    assert_eq!(packages["containerd"], "1.6.35-2.el8");
    assert_eq!(packages["coreutils"], serde_json::Value::Null);
}

#[test]
fn metalk8s_recipe_has_the_four_repositories_of_packages_redhat_8() {
    let recipe = load(&[]);
    let packages = recipe.packages.as_ref().expect("the recipe has packages:");
    assert_eq!(packages.arches, ["x86_64", "noarch"]);
    // The seeds are versions.json's list (one node), pinned ones as NEVRs.
    let data = recipe.data["rpm_packages"].as_object().unwrap();
    let mut from_data: Vec<String> = data
        .iter()
        .map(|(name, version)| match version.as_str() {
            Some(version) => format!("{name}-{version}"),
            None => name.clone(),
        })
        .collect();
    from_data.sort();
    let mut seeds = packages.seeds.clone();
    seeds.sort();
    assert_eq!(seeds, from_data);
    assert!(seeds.contains(&"kubelet-1.29.8".to_owned()));
    assert!(seeds.contains(&"salt-minion-3002.9".to_owned()));
    let shipped: Vec<(&str, String, String)> = packages
        .repos
        .iter()
        .filter_map(|repo| {
            let dest = repo.dest.as_ref()?;
            Some((repo.id.as_str(), dest.to_string(), repo.key_prefix.clone()))
        })
        .collect();
    assert_eq!(
        shipped
            .iter()
            .map(|(id, dest, _)| (*id, dest.as_str()))
            .collect::<Vec<_>>(),
        [
            ("epel", "packages/redhat/8/metalk8s-epel-el8"),
            ("kubernetes", "packages/redhat/8/metalk8s-kubernetes-el8"),
            ("saltstack", "packages/redhat/8/metalk8s-saltstack-el8"),
            ("scality", "packages/redhat/8/metalk8s-scality-el8"),
        ]
    );
    // Key files as entrypoint.sh names them; the scality repository has none.
    for (id, _, prefix) in shipped.iter().filter(|(id, _, _)| *id != "scality") {
        assert_eq!(prefix, &format!("RPM-GPG-KEY-metalk8s-{id}-8"));
    }
    let repo = |id: &str| packages.repos.iter().find(|repo| repo.id == id).unwrap();
    assert_eq!(repo("saltstack").exclude, ["base/"]);
    for id in ["baseos", "appstream", "extras"] {
        assert!(repo(id).dest.is_none(), "{id} only resolves");
    }
    let scality = repo("scality");
    assert!(scality.is_built());
    assert_eq!(scality.builds, ["containerd", "metalk8s-sosreport"]);
    assert!(
        scality.from[0].ends_with("_build/packages/redhat/8/scality/*/RPMS/*.rpm"),
        "{:?}",
        scality.from
    );
}

#[test]
fn metalk8s_product_txt_has_metalk8s_keys_in_order() {
    let recipe = load(&[
        ("git", "129.0.0-dev-41-gac251c2f"),
        ("build_host", "builder-7"),
    ]);
    let context = isobuild::plan::template_context(&recipe, &[]);
    assert_eq!(
        render("product.txt.j2", &context),
        "NAME=MetalK8s\n\
         VERSION=129.0.0-dev\n\
         SHORT_VERSION=129.0\n\
         GIT=129.0.0-dev-41-gac251c2f\n\
         DEVELOPMENT_RELEASE=1\n\
         BUILD_TIMESTAMP=2024-09-01T00:00:00Z\n\
         BUILD_HOST=builder-7\n"
    );
}

/// A release (no `-dev`) says DEVELOPMENT_RELEASE=0; GIT stays empty when not given, and the
/// timestamp follows the epoch (as SOURCE_DATE_EPOCH would set it).
#[test]
fn metalk8s_product_txt_for_a_release() {
    let context = TemplateContext {
        name: "MetalK8s".into(),
        version: "129.0.1".into(),
        vars: BTreeMap::from([
            ("short_version".into(), "129.0".into()),
            ("git".into(), String::new()),
            ("build_host".into(), "isobuild".into()),
        ]),
        epoch: Some(1_700_000_000),
        images: Vec::new(),
        data: serde_json::Value::Null,
    };
    assert_eq!(
        render("product.txt.j2", &context),
        "NAME=MetalK8s\n\
         VERSION=129.0.1\n\
         SHORT_VERSION=129.0\n\
         GIT=\n\
         DEVELOPMENT_RELEASE=0\n\
         BUILD_TIMESTAMP=2023-11-14T22:13:20Z\n\
         BUILD_HOST=isobuild\n"
    );
}
