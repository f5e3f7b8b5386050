//! Unit tests of the cache: verification, resumption, sharing and cleaning.

use std::collections::HashSet;

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("cache")).unwrap();
    (dir, store)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn open_creates_the_versioned_tree() {
    let (_dir, store) = store();
    assert_eq!(
        names(store.root()),
        ["CACHEDIR.TAG", "blobs-v1", "lock", "tags-v1", "tmp"]
    );
    let tag = fs_err::read_to_string(store.root().join("CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
}

#[test]
fn put_blob_bytes_verifies() {
    let (_dir, store) = store();
    let digest = Digest::of(b"hello");
    let error = store.put_blob_bytes(&digest, b"hellO").unwrap_err();
    assert!(
        matches!(error, StoreError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(!store.has_blob(&digest));
    store.put_blob_bytes(&digest, b"hello").unwrap();
    assert!(store.has_blob(&digest));
    assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
    assert_eq!(
        store.blob_path(&digest),
        store.root().join("blobs-v1/sha256").join(digest.hex())
    );
    assert!(names(&store.root().join("tmp")).is_empty());
}

#[test]
fn a_corrupt_cached_blob_is_removed_on_read() {
    let (_dir, store) = store();
    let digest = Digest::of(b"manifest");
    store.put_blob_bytes(&digest, b"manifest").unwrap();
    fs_err::write(store.blob_path(&digest), b"tampered").unwrap();
    let error = store.read_blob(&digest).unwrap_err();
    assert!(matches!(error, StoreError::CorruptBlob { .. }), "{error}");
    assert!(!store.has_blob(&digest));
    let error = store.read_blob(&digest).unwrap_err();
    assert!(matches!(error, StoreError::MissingBlob { .. }), "{error}");
}

#[tokio::test]
async fn blob_writer_renames_only_on_match() {
    let (_dir, store) = store();
    let data = b"some layer bytes".repeat(1000);
    let digest = Digest::of(&data);
    let mut writer = store
        .blob_writer(&digest, Some(data.len() as u64))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(writer.offset(), 0);
    for chunk in data.chunks(777) {
        writer.write(chunk).await.unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), data.len() as u64);
    assert_eq!(fs_err::read(store.blob_path(&digest)).unwrap(), data);
    let mode = fs_err::metadata(store.blob_path(&digest))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o644
    );
    assert!(names(&store.root().join("tmp")).is_empty());
    // Present now: no writer.
    assert!(store.blob_writer(&digest, None).await.unwrap().is_none());
}

#[tokio::test]
async fn a_checked_blob_enters_only_if_the_check_passes_in_memory_or_from_disk() {
    let (_dir, store) = store();
    // 3 MiB without a size: more than the write buffer, read back from the partial.
    for (data, size) in [
        (b"small".repeat(100), Some(500)),
        (b"large".repeat(600_000), None),
    ] {
        let digest = Digest::of(&data);
        for accept in [false, true] {
            let mut writer = store.blob_writer(&digest, size).await.unwrap().unwrap();
            for chunk in data.chunks(4096) {
                writer.write(chunk).await.unwrap();
            }
            let expected = data.clone();
            let result = writer
                .finish_checked(move |bytes| {
                    assert_eq!(bytes, expected.as_slice());
                    if accept { Ok(()) } else { Err("refused") }
                })
                .await;
            match result {
                Ok(written) => assert!(accept && written == data.len() as u64),
                Err(super::FinishError::Check(reason)) => assert!(!accept && reason == "refused"),
                Err(super::FinishError::Store(error)) => panic!("{error}"),
            }
            assert_eq!(store.has_blob(&digest), accept);
            // Refused bytes leave no partial to resume either.
            assert!(names(&store.root().join("tmp")).is_empty());
        }
        assert_eq!(fs_err::read(store.blob_path(&digest)).unwrap(), data);
    }
}

#[tokio::test]
async fn wrong_bytes_never_enter_the_store() {
    let (_dir, store) = store();
    let digest = Digest::of(b"expected");
    let mut writer = store.blob_writer(&digest, Some(8)).await.unwrap().unwrap();
    writer.write(b"unexpect").await.unwrap();
    let error = writer.finish().await.unwrap_err();
    assert!(
        matches!(&error, StoreError::DigestMismatch { expected, .. } if *expected == digest),
        "{error}"
    );
    assert!(!store.has_blob(&digest));
    // The partial is gone too: resuming wrong bytes cannot help.
    assert!(names(&store.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn size_is_enforced_while_writing_and_at_the_end() {
    let (_dir, store) = store();
    let digest = Digest::of(b"abc");
    let mut writer = store.blob_writer(&digest, Some(3)).await.unwrap().unwrap();
    writer.write(b"ab").await.unwrap();
    let error = writer.write(b"cd").await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::SizeMismatch {
                expected: 3,
                actual: 4,
                ..
            }
        ),
        "{error}"
    );
    let error = writer.finish().await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::SizeMismatch {
                expected: 3,
                actual: 2,
                ..
            }
        ),
        "{error}"
    );
    assert!(!store.has_blob(&digest));
}

#[tokio::test]
async fn an_interrupted_write_resumes_where_it_stopped() {
    let (_dir, store) = store();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::of(&data);
    let size = Some(data.len() as u64);
    let mut writer = store.blob_writer(&digest, size).await.unwrap().unwrap();
    writer.write(&data[..40_000]).await.unwrap();
    writer.flush().await.unwrap();
    drop(writer);
    assert_eq!(
        names(&store.root().join("tmp")),
        [format!("{}.partial", digest.hex())]
    );

    let mut writer = store.blob_writer(&digest, size).await.unwrap().unwrap();
    assert_eq!(writer.offset(), 40_000);
    writer.write(&data[40_000..]).await.unwrap();
    writer.finish().await.unwrap();
    assert_eq!(fs_err::read(store.blob_path(&digest)).unwrap(), data);
}

#[tokio::test]
async fn restart_discards_written_bytes() {
    let (_dir, store) = store();
    let digest = Digest::of(b"right");
    let mut writer = store.blob_writer(&digest, Some(5)).await.unwrap().unwrap();
    writer.write(b"wro").await.unwrap();
    writer.restart().await.unwrap();
    assert_eq!(writer.offset(), 0);
    writer.write(b"right").await.unwrap();
    writer.finish().await.unwrap();
    assert_eq!(store.read_blob(&digest).unwrap(), b"right");
}

#[tokio::test]
async fn an_oversized_partial_is_discarded() {
    let (_dir, store) = store();
    let digest = Digest::of(b"four");
    fs_err::write(
        store.root().join(format!("tmp/{}.partial", digest.hex())),
        b"much too long",
    )
    .unwrap();
    let writer = store.blob_writer(&digest, Some(4)).await.unwrap().unwrap();
    assert_eq!(writer.offset(), 0);
}

#[tokio::test]
async fn concurrent_writers_of_one_digest_in_one_process_write_once() {
    let (_dir, store) = store();
    let digest = Digest::of(b"shared");
    let mut first = store.blob_writer(&digest, Some(6)).await.unwrap().unwrap();
    let second = {
        let store = store.clone();
        let digest = digest.clone();
        tokio::spawn(async move { store.blob_writer(&digest, Some(6)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!second.is_finished(), "the second writer must wait");
    first.write(b"shared").await.unwrap();
    first.finish().await.unwrap();
    assert!(second.await.unwrap().unwrap().is_none());
}

#[tokio::test]
async fn a_partial_locked_by_another_process_is_waited_for_then_resumed() {
    let (_dir, store) = store();
    let digest = Digest::of(b"other");
    let partial = store.root().join(format!("tmp/{}.partial", digest.hex()));
    fs_err::write(&partial, b"ot").unwrap();
    // Another open file description stands for another process: flock conflicts between them.
    let other = std::fs::File::open(&partial).unwrap();
    fs4::FileExt::lock(&other).unwrap();

    let waiting = {
        let store = store.clone();
        let digest = digest.clone();
        tokio::spawn(async move { store.blob_writer(&digest, Some(5)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the writer waits for the other download"
    );
    // The other process gives up (or dies): its partial is resumed, not started over.
    drop(other);
    let mut writer = waiting.await.unwrap().unwrap().unwrap();
    assert_eq!(writer.offset(), 2);
    writer.write(b"her").await.unwrap();
    writer.finish().await.unwrap();
    assert!(store.has_blob(&digest));
    assert!(!partial.exists());
}

#[tokio::test]
async fn a_blob_another_process_finishes_while_we_wait_is_not_written_again() {
    let (_dir, store) = store();
    let digest = Digest::of(b"other");
    let partial = store.root().join(format!("tmp/{}.partial", digest.hex()));
    fs_err::write(&partial, b"other").unwrap();
    let other = std::fs::File::open(&partial).unwrap();
    fs4::FileExt::lock(&other).unwrap();

    let waiting = {
        let store = store.clone();
        let digest = digest.clone();
        tokio::spawn(async move { store.blob_writer(&digest, Some(5)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the writer waits for the other download"
    );
    fs_err::rename(&partial, store.blob_path(&digest)).unwrap();
    drop(other);
    assert!(waiting.await.unwrap().unwrap().is_none());
    let tmp: Vec<_> = fs_err::read_dir(store.root().join("tmp"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(tmp.is_empty(), "nothing left in tmp/: {tmp:?}");
}

#[test]
fn what_dead_runs_left_in_tmp_is_removed_when_no_run_uses_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let resumable = format!("{}.partial", Digest::of(b"a").hex());
    let empty = format!("{}.partial", Digest::of(b"b").hex());
    let strays = [
        empty.clone(),
        format!("{}.x1y2z3.partial", Digest::of(b"c").hex()),
        "put-abc123".to_owned(),
        ".layer.abc.isobuild-tmp".to_owned(),
    ];
    let fill = || {
        fs_err::create_dir_all(root.join("tmp")).unwrap();
        fs_err::write(root.join("tmp").join(&resumable), b"a-part").unwrap();
        for stray in &strays {
            let content: &[u8] = if *stray == empty { b"" } else { b"junk" };
            fs_err::write(root.join("tmp").join(stray), content).unwrap();
        }
    };
    // A cache isobuild made (one it did not is never cleaned).
    drop(Store::open(&root).unwrap());
    fill();
    let tags = root.join("tags-v1/127.0.0.1:5000/library/alpine");
    fs_err::create_dir_all(&tags).unwrap();
    fs_err::write(tags.join("3.20.json"), b"{}").unwrap();
    fs_err::write(tags.join(".3.20.json.abc123.isobuild-tmp"), b"{").unwrap();
    let first = Store::open(&root).unwrap();
    assert_eq!(names(&root.join("tmp")), std::slice::from_ref(&resumable));
    assert_eq!(names(&tags), ["3.20.json"]);

    // With a run using the cache, a second one leaves `tmp/` alone: the files may be live.
    fill();
    let second = Store::open(&root).unwrap();
    assert_eq!(names(&root.join("tmp")).len(), 1 + strays.len());
    drop((first, second));
}

#[tokio::test]
async fn a_blob_once_stored_keeps_its_inode() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, store) = store();
    let digest = Digest::of(b"version");
    let inode = |store: &Store| fs_err::metadata(store.blob_path(&digest)).unwrap().ino();
    store.put_blob_bytes(&digest, b"version").unwrap();
    let first = inode(&store);
    // A second writer that lost the race (it checked before the first one finished): its
    // copy is dropped, not renamed over the first, which the ISO tree may already link.
    let mut writer = BlobWriter::open(
        &store,
        digest.clone(),
        Some(7),
        store.writer_mutex(&digest).lock_owned().await,
    )
    .await
    .unwrap()
    .unwrap();
    writer.write(b"version").await.unwrap();
    writer.finish().await.unwrap();
    store.put_blob_bytes(&digest, b"version").unwrap();
    assert_eq!(inode(&store), first);
    assert_eq!(names(&store.tmp_dir()), Vec::<String>::new());
}

#[test]
fn tags_are_recorded_and_looked_up() {
    let (_dir, store) = store();
    let image: ImageRef = "127.0.0.1:5000/docker.io/library/alpine:3.20"
        .parse()
        .unwrap();
    assert_eq!(store.lookup_tag(&image).unwrap(), None);
    let record = TagRecord {
        reference: image.to_string(),
        digest: Digest::of(b"index"),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        platforms: [("linux/amd64".to_owned(), Digest::of(b"manifest"))].into(),
        resolved_at: 1_700_000_000,
    };
    store.record_tag(&image, &record).unwrap();
    assert_eq!(store.lookup_tag(&image).unwrap(), Some(record.clone()));
    assert!(
        store
            .root()
            .join("tags-v1/127.0.0.1:5000/docker.io/library/alpine/3.20.json")
            .is_file()
    );
    assert_eq!(store.ls().unwrap().tags, [record]);
}

#[test]
fn gc_needs_exclusive_access_and_keeps_what_tags_reach() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let shared = Store::open(&root).unwrap();
    assert!(matches!(
        Store::open_exclusive(&root).unwrap_err(),
        StoreError::Busy { .. }
    ));
    assert!(matches!(
        shared.gc(&HashSet::new()).unwrap_err(),
        StoreError::NotExclusive
    ));

    let layer = b"layer".to_vec();
    let config = b"{}".to_vec();
    let orphan = b"orphan".to_vec();
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":2}},"layers":[{{"digest":"{}","size":5}}]}}"#,
        Digest::of(&config),
        Digest::of(&layer)
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","size":{}}}]}}"#,
        Digest::of(manifest.as_bytes()),
        manifest.len()
    );
    for bytes in [
        &layer,
        &config,
        &orphan,
        &manifest.clone().into_bytes(),
        &index.clone().into_bytes(),
    ] {
        shared.put_blob_bytes(&Digest::of(bytes), bytes).unwrap();
    }
    let image: ImageRef = "example.com/app:1".parse().unwrap();
    shared
        .record_tag(
            &image,
            &TagRecord {
                reference: image.to_string(),
                digest: Digest::of(index.as_bytes()),
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                platforms: BTreeMap::new(),
                resolved_at: 0,
            },
        )
        .unwrap();
    fs_err::write(root.join("tmp/leftover.partial"), b"xx").unwrap();
    let reachable = shared.reachable_from_tags().unwrap();
    assert_eq!(reachable.len(), 4);
    assert!(!reachable.contains(&Digest::of(&orphan)));
    drop(shared);

    let exclusive = Store::open_exclusive(&root).unwrap();
    let report = exclusive.gc(&reachable).unwrap();
    assert_eq!(
        report,
        GcReport {
            removed_blobs: 1,
            removed_partials: 1,
            freed_bytes: 8,
            ..GcReport::default()
        }
    );
    assert!(!exclusive.has_blob(&Digest::of(&orphan)));
    assert!(exclusive.has_blob(&Digest::of(&layer)));
    assert_eq!(exclusive.ls().unwrap().blobs.len(), 4);
}
