//! Tests of the dataset sources on the real datasets (the Debian Fashion-MNIST package and
//! the fetched digits CSV, both installed by the setup scripts CI runs) and every refusal.

use super::*;
use crate::jobs::dataset::testdata::models_dir;
use std::io::Write;
use std::time::Instant;

fn config(dirs: Vec<PathBuf>) -> SourceConfig {
    SourceConfig::new(models_dir(), dirs, 1 << 20)
}

fn in_unit_range(d: &Dataset) -> bool {
    d.samples().iter().all(|v| (0.0..=1.0).contains(v))
}

#[test]
fn fashion_mnist_loads_train_and_test() {
    let started = Instant::now();
    let loaded = load(
        &DatasetSource::parse("builtin://fashion-mnist").unwrap(),
        &config(vec![]),
        None,
    )
    .unwrap();
    // The load time is printed, not asserted (speed belongs in benchmarks).
    eprintln!("fashion-mnist loaded in {:?}", started.elapsed());
    let test = loaded.test.as_ref().unwrap();
    assert_eq!((loaded.train.len(), test.len()), (60_000, 10_000));
    for d in [&loaded.train, test] {
        assert_eq!((d.shape(), d.classes()), (&[1usize, 28, 28][..], 10));
        assert!(in_unit_range(d));
    }
    let max = loaded.train.samples().iter().copied().fold(0f32, f32::max);
    assert_eq!(max, 1.0, "pixels scale to [0, 1] with 255 → 1");
    // Every class is present, 6000 each in the training set.
    let mut counts = [0usize; 10];
    loaded
        .train
        .labels()
        .iter()
        .for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [6000; 10]);
}

#[test]
fn digits_loads_1797_images_of_8x8() {
    let loaded = load(
        &DatasetSource::parse("builtin://digits").unwrap(),
        &config(vec![]),
        None,
    )
    .unwrap();
    let d = &loaded.train;
    assert_eq!(
        (d.len(), d.shape(), d.classes()),
        (1797, &[1usize, 8, 8][..], 10)
    );
    assert!(loaded.test.is_none());
    assert!(in_unit_range(d));
    assert_eq!(d.samples().iter().copied().fold(0f32, f32::max), 1.0);
    // The first row of sklearn's file: 0,0,5,13,9,1,0,0,… label 0.
    assert_eq!(&d.sample(0)[..4], &[0.0, 0.0, 5.0 / 16.0, 13.0 / 16.0]);
    assert_eq!(d.labels()[0], 0);
    let a = d.split(0.25, 9).unwrap();
    assert_eq!(a, d.split(0.25, 9).unwrap());
    assert_ne!(a.train, d.split(0.25, 10).unwrap().train);
    assert_eq!(
        (a.train.len(), a.validation.as_ref().map(Dataset::len)),
        (1348, Some(449))
    );
}

#[test]
fn missing_builtin_files_say_how_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SourceConfig::new(dir.path().to_owned(), vec![], 1024);
    cfg.fashion_mnist_dir = dir.path().join("nothing");
    let err = load(&DatasetSource::Digits, &cfg, None).unwrap_err();
    assert!(matches!(err, DatasetError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("fetch-models"), "{err}");
    let err = load(&DatasetSource::FashionMnist, &cfg, None).unwrap_err();
    assert!(err.to_string().contains("dataset-fashion-mnist"), "{err}");
}

#[test]
fn uris_with_unknown_schemes_or_names_are_refused_by_name() {
    for (uri, want) in [
        ("s3://bucket/x.csv", "\"s3\""),
        ("/tmp/x.csv", "\"\""),
        ("http://x", "\"http\""),
    ] {
        let err = DatasetSource::parse(uri).unwrap_err();
        assert!(matches!(err, DatasetError::UnknownScheme { .. }), "{err:?}");
        assert!(err.to_string().contains(want), "{err}");
    }
    let err = DatasetSource::parse("builtin://cifar10").unwrap_err();
    assert!(err.to_string().contains("\"cifar10\""), "{err}");
    assert_eq!(
        DatasetSource::parse("file:///data/x.csv").unwrap(),
        DatasetSource::File(PathBuf::from("/data/x.csv"))
    );
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn file_csv_inside_the_dirs_loads_with_a_named_label_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iris.csv");
    write(
        &path,
        b"sepal,petal,species\n5.1,1.4,0\n6.2,4.5,1\n7.7,6.7,2\n",
    );
    let cfg = config(vec![dir.path().to_owned()]);
    let d = load(&DatasetSource::File(path.clone()), &cfg, Some("species"))
        .unwrap()
        .train;
    assert_eq!((d.len(), d.shape(), d.classes()), (3, &[2usize][..], 3));
    assert_eq!(d.sample(2), &[7.7, 6.7]);
    // The same file with the default label column is a typed error naming it.
    let err = load(&DatasetSource::File(path.clone()), &cfg, None).unwrap_err();
    assert!(
        matches!(err, DatasetError::MissingLabelColumn { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("iris.csv") && err.to_string().contains("sepal,petal,species"),
        "{err}"
    );
    // A non-numeric cell names the file, row and column.
    let bad = dir.path().join("bad.csv");
    write(&bad, b"a,b,label\n1,2,0\n3,x4,1\n");
    let err = load(&DatasetSource::File(bad), &cfg, None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("bad.csv") && msg.contains("row 3") && msg.contains("\"b\""),
        "{msg}"
    );
}

#[test]
fn file_paths_outside_the_dirs_are_refused() {
    let allowed = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("secret.csv");
    write(&secret, b"a,label\n1,0\n");
    let cfg = config(vec![allowed.path().to_owned()]);
    let refused = |path: PathBuf| match load(&DatasetSource::File(path.clone()), &cfg, None) {
        Err(DatasetError::OutsideDirs { reason, .. }) => reason,
        other => panic!("{path:?}: {other:?}"),
    };
    refused(secret.clone());
    assert!(refused(
        allowed
            .path()
            .join("..")
            .join(elsewhere.path().file_name().unwrap())
            .join("secret.csv")
    )
    .contains(".."));
    assert!(refused(PathBuf::from("secret.csv")).contains("absolute"));
    // A symlink inside the dir that leads out of it.
    let link = allowed.path().join("link.csv");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    assert!(refused(link).contains("symlink"));
    // No dirs configured: nothing is readable.
    let none = config(vec![]);
    let err = load(&DatasetSource::File(secret), &none, None).unwrap_err();
    assert!(matches!(err, DatasetError::OutsideDirs { .. }), "{err:?}");
    // Inside the dirs but absent: missing, naming the file.
    let err = load(
        &DatasetSource::File(allowed.path().join("absent.csv")),
        &cfg,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, DatasetError::Missing { .. }) && err.to_string().contains("absent.csv"),
        "{err:?}"
    );
}

/// Copies Fashion-MNIST's test files into `dir`, the images unpacked and cut to `keep` bytes.
fn fashion_test_files(dir: &Path, keep: Option<usize>) -> PathBuf {
    let src = Path::new(FASHION_MNIST_DIR);
    let images = read_file(&src.join("t10k-images-idx3-ubyte.gz"), "").unwrap();
    let cut = &images[..keep.unwrap_or(images.len())];
    let path = dir.join("t10k-images-idx3-ubyte");
    write(&path, cut);
    std::fs::copy(
        src.join("t10k-labels-idx1-ubyte.gz"),
        dir.join("t10k-labels-idx1-ubyte"),
    )
    .unwrap();
    path
}

#[test]
fn file_idx_pair_loads_and_truncated_idx_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(vec![dir.path().to_owned()]);
    let images = fashion_test_files(dir.path(), None);
    let d = load(&DatasetSource::File(images), &cfg, None)
        .unwrap()
        .train;
    assert_eq!(
        (d.len(), d.shape(), d.classes()),
        (10_000, &[1usize, 28, 28][..], 10)
    );

    let cut = tempfile::tempdir().unwrap();
    let images = fashion_test_files(cut.path(), Some(16 + 784 * 9_999 + 100));
    let cfg = config(vec![cut.path().to_owned()]);
    let err = load(&DatasetSource::File(images), &cfg, None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DatasetError::Truncated { .. }), "{err:?}");
    assert!(
        msg.contains("t10k-images-idx3-ubyte") && msg.contains("need 7840000 data bytes"),
        "{msg}"
    );

    // A cut gzip file (the package's own form) is truncated too.
    let gz = tempfile::tempdir().unwrap();
    let bytes =
        std::fs::read(Path::new(FASHION_MNIST_DIR).join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let path = gz.path().join("t10k-labels-idx1-ubyte.gz");
    write(&path, &bytes[..bytes.len() / 2]);
    let err = read_file(&path, "").unwrap_err();
    assert!(
        matches!(err, DatasetError::Truncated { .. }) && err.to_string().contains("t10k-labels"),
        "{err:?}"
    );
}

#[test]
fn inline_csv_and_idx_load_and_over_the_cap_is_refused() {
    let cfg = SourceConfig::new(models_dir(), vec![], 64);
    let csv = b"x,label\n0.5,1\n0.25,0\n".to_vec();
    let d = load(&DatasetSource::Inline(csv), &cfg, None).unwrap().train;
    assert_eq!((d.len(), d.classes()), (2, 2));
    let mut idx_bytes = crate::jobs::dataset::idx::tests::idx(&[1, 2, 2], &[0, 51, 102, 255]);
    idx_bytes.extend(crate::jobs::dataset::idx::tests::idx(&[1], &[4]));
    let d = load(&DatasetSource::Inline(idx_bytes), &cfg, None)
        .unwrap()
        .train;
    assert_eq!(
        (d.sample(0), d.labels()),
        (&[0.0, 0.2, 0.4, 1.0][..], &[4][..])
    );
    // Gzip that unpacks past the cap is refused too, though the packed bytes fit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&[b'1'; 1000]).unwrap();
    let packed = gz.finish().unwrap();
    assert!(packed.len() <= 64, "{}", packed.len());
    let err = load(&DatasetSource::Inline(packed), &cfg, None).unwrap_err();
    assert!(
        matches!(err, DatasetError::TooLarge { limit: 64, .. }),
        "{err:?}"
    );
    let big = vec![b'1'; 65];
    let err = load(&DatasetSource::Inline(big), &cfg, None).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::InlineTooLarge {
                size: 65,
                limit: 64
            }
        ),
        "{err:?}"
    );
}
