//! Checks of what runs in containers: a task's `image:`, `mounts:`, `network:`, `workdir:`
//! and `user:`, and an image's `build:`.

use std::path::PathBuf;

use super::super::raw::{RawBuild, RawImage, RawTask};
use super::super::{ContainerSpec, ImageBuild, Images, MountSpec};
use super::{At, Checker, Located, normalize};

// The checks below return `None` when the field is invalid (the problem is recorded) and
// `Some(None)` when it is absent, as the rest of the checker does for optional sections.

impl Checker<'_> {
    /// The container part of a task: `None` inside `Some` for a host command.
    #[allow(clippy::option_option)]
    pub(super) fn container_spec(
        &mut self,
        raw: &RawTask,
        at: &At,
    ) -> Option<Option<ContainerSpec>> {
        let Some(image) = &raw.image else {
            for (present, key) in [
                (raw.network.is_some(), "network"),
                (raw.workdir.is_some(), "workdir"),
                (raw.user.is_some(), "user"),
                (raw.mounts.is_some(), "mounts"),
            ] {
                if present {
                    self.problems.add(
                        &at.child(key),
                        format!("`{key}` is only for a task that runs in a container (`image:`)"),
                    );
                }
            }
            return Some(None);
        };
        let image = image.value.as_ref().and_then(|text| {
            if text.trim().is_empty() {
                self.problems.add(&image.at, "`image` must not be empty");
                return None;
            }
            self.render(text, &image.at)
        });
        let absolute_in_container = |this: &mut Self, located: &Located<String>| {
            let text = located.value.as_ref()?;
            let rendered = this.render(text, &located.at)?;
            if rendered.starts_with('/') && !rendered.split('/').any(|part| part == "..") {
                Some(rendered)
            } else {
                this.problems.add(
                    &located.at,
                    format!("`{rendered}` is not an absolute path in the container (no `..`)"),
                );
                None
            }
        };
        let workdir = match &raw.workdir {
            Some(located) => Some(absolute_in_container(self, located)?),
            None => None,
        };
        let user = match &raw.user {
            Some(located) => Some(
                located
                    .value
                    .as_ref()
                    .and_then(|text| self.render(text, &located.at))?,
            ),
            None => None,
        };
        let mut mounts = Some(Vec::new());
        let items = raw
            .mounts
            .as_ref()
            .and_then(|mounts| mounts.value.as_deref())
            .unwrap_or_default();
        for item in items {
            let Some(mount) = &item.value else {
                mounts = None;
                continue;
            };
            let src = self
                .required_text(mount.src.as_ref(), &item.at, "src")
                .and_then(|(text, at)| self.render(text, at))
                .map(|text| normalize(&self.origin.base_dir.join(text)));
            let dest = self
                .required(mount.dest.as_ref(), &item.at, "dest")
                .and(mount.dest.as_ref())
                .and_then(|dest| absolute_in_container(self, dest));
            match (src, dest, &mut mounts) {
                (Some(src), Some(dest), Some(list)) => list.push(MountSpec { src, dest }),
                _ => mounts = None,
            }
        }
        let network = raw
            .network
            .as_ref()
            .map_or(Some(false), |located| located.value);
        Some(Some(ContainerSpec {
            image: image?,
            network: network?,
            workdir,
            user,
            mounts: mounts?,
        }))
    }

    /// An image's `build:`; `ref` must then be absent.
    #[allow(clippy::option_option)]
    pub(super) fn image_build(&mut self, raw: &RawImage, at: &At) -> Option<Option<ImageBuild>> {
        let Some(build) = &raw.build else {
            return Some(None);
        };
        if let Some(reference) = &raw.reference {
            self.problems.add(
                &reference.at,
                "an image has either `ref` (pulled or read) or `build` (built), not both",
            );
            return None;
        }
        let raw_build: &RawBuild = build.value.as_ref()?;
        let context = self
            .required_text(raw_build.context.as_ref(), &build.at, "context")
            .and_then(|(text, at)| {
                let rendered = self.render(text, at)?;
                // It may be made by a task (`after:`), so it need not exist yet.
                let path = normalize(&self.origin.base_dir.join(rendered));
                Some((path, at.clone()))
            });
        let containerfile = match (&raw_build.containerfile, &context) {
            (Some(located), _) => located.value.as_ref().and_then(|text| {
                let rendered = self.render(text, &located.at)?;
                Some((
                    normalize(&self.origin.base_dir.join(rendered)),
                    located.at.clone(),
                ))
            }),
            (None, Some((context, at))) => {
                let found: Option<PathBuf> = ["Containerfile", "Dockerfile"]
                    .iter()
                    .map(|name| context.join(name))
                    .find(|path| path.is_file());
                Some((
                    found.unwrap_or_else(|| context.join("Containerfile")),
                    at.clone(),
                ))
            }
            (None, None) => None,
        };
        let containerfile = containerfile.and_then(|(path, at)| {
            if path.is_file() {
                Some(path)
            } else {
                self.problems.add(
                    &at,
                    format!(
                        "the Containerfile `{}` does not exist",
                        self.origin.shown(&path).display()
                    ),
                );
                None
            }
        });
        let args = self.string_map(raw_build.args.as_ref(), |name| {
            (name.is_empty() || name.contains(['=', '\0', ' ']))
                .then(|| format!("`{name}` is not a build argument name"))
        });
        let target = match &raw_build.target {
            Some(located) => Some(
                located
                    .value
                    .as_ref()
                    .and_then(|text| self.render(text, &located.at))?,
            ),
            None => None,
        };
        let network = raw_build
            .network
            .as_ref()
            .map_or(Some(false), |located| located.value);
        let _ = at;
        Some(Some(ImageBuild {
            context: context?.0,
            containerfile: containerfile?,
            args: args?,
            target,
            network: network?,
        }))
    }

    /// Every task `image:` names an image of the recipe that a container can start from.
    pub(super) fn container_images(
        &mut self,
        tasks: Option<&Located<Vec<Located<RawTask>>>>,
        images: Option<&Images>,
    ) {
        let Some(images) = images else { return };
        let items = tasks
            .and_then(|tasks| tasks.value.as_deref())
            .unwrap_or_default();
        for item in items {
            let Some(Located {
                value: Some(name),
                at,
            }) = item.value.as_ref().and_then(|task| task.image.as_ref())
            else {
                continue;
            };
            let matching: Vec<_> = images
                .list
                .iter()
                .filter(|entry| {
                    *name == entry.name || *name == format!("{}:{}", entry.name, entry.tag)
                })
                .collect();
            match matching.as_slice() {
                [] => {
                    let known: Vec<String> = images
                        .list
                        .iter()
                        .map(|entry| format!("`{}:{}`", entry.name, entry.tag))
                        .collect();
                    self.problems.add(
                        at,
                        format!(
                            "no image `{name}` in `images.list` (images are {})",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
                [entry] if matches!(entry.source, crate::reference::ImageSource::Daemon(_)) => {
                    self.problems.add(
                        at,
                        format!("image `{name}` comes from a daemon: a container task needs a registry, archive or `build:` image"),
                    );
                }
                [_] => {}
                _ => self.problems.add(
                    at,
                    format!("`{name}` names several images; write `name:tag`"),
                ),
            }
        }
    }
}
