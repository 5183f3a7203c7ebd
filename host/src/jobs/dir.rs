//! A job's directory under `<data dir>/jobs/<id>/`: where each file lives, and the one way
//! files that must survive a crash are written (temporary file, fsync, rename, fsync of the
//! directory).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Checkpoints kept per job (older ones are deleted after a newer one is durable).
pub const KEPT_CHECKPOINTS: usize = 2;

/// The files of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDir {
    root: PathBuf,
}

impl JobDir {
    /// The directory of job `id` under `jobs_dir`.
    pub fn new(jobs_dir: &Path, id: &str) -> Self {
        Self {
            root: jobs_dir.join(id),
        }
    }

    /// The directory of an existing job row.
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates it (and `checkpoints/`, `work/`), private to the node's user.
    pub fn create(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let mut b = fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        b.create(self.root.join("checkpoints"))?;
        b.create(self.root.join("work"))
    }

    /// `config.json`: the validated job config.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// `graph.json`: the model definition as submitted.
    pub fn graph(&self) -> PathBuf {
        self.root.join("graph.json")
    }
    /// `model.json`: the validated model spec the backend trains.
    pub fn model(&self) -> PathBuf {
        self.root.join("model.json")
    }
    /// `dataset.bin`: inline dataset bytes.
    pub fn inline_dataset(&self) -> PathBuf {
        self.root.join("dataset.bin")
    }
    /// `weights.safetensors`.
    pub fn weights(&self) -> PathBuf {
        self.root.join("weights.safetensors")
    }
    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    /// `log.txt`.
    pub fn log(&self) -> PathBuf {
        self.root.join("log.txt")
    }
    /// `work/`: the backend's scratch directory.
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    /// `checkpoints/ckpt-<steps>.safetensors`.
    pub fn checkpoint(&self, steps_done: u64) -> PathBuf {
        self.root
            .join("checkpoints")
            .join(format!("ckpt-{steps_done:012}.safetensors"))
    }

    /// Deletes all but the newest [`KEPT_CHECKPOINTS`] checkpoints.
    pub fn prune_checkpoints(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("checkpoints")) else {
            return;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        let excess = files.len().saturating_sub(KEPT_CHECKPOINTS);
        for old in &files[..excess] {
            let _ = fs::remove_file(old);
        }
    }

    /// Appends one line to `file` (metrics.jsonl, log.txt).
    pub fn append(&self, file: &Path, line: &str) -> std::io::Result<()> {
        let mut f = OpenOptions::new().create(true).append(true).open(file)?;
        f.write_all(line.as_bytes())?;
        f.write_all(b"\n")
    }
}

/// Writes `bytes` to `path` so that after a crash `path` holds either its old content or all
/// of `bytes`: a temporary file beside it, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// The sha256 (hex) and size of a file, read in chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex(&hasher.finalize()), size))
}

/// Lower-case hex of `bytes` (digests in job files, reports and the P2P link).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_and_old_checkpoints_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = JobDir::new(tmp.path(), "j");
        dir.create().unwrap();
        for step in 1..=4 {
            write_atomic(&dir.checkpoint(step), &[step as u8]).unwrap();
            dir.prune_checkpoints();
        }
        let left: Vec<_> = fs::read_dir(dir.root().join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), KEPT_CHECKPOINTS, "{left:?}");
        assert_eq!(fs::read(dir.checkpoint(4)).unwrap(), [4]);
        write_atomic(&dir.weights(), b"abc").unwrap();
        let (hash, size) = sha256_file(&dir.weights()).unwrap();
        assert_eq!(size, 3);
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
