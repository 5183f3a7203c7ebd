//! A cheap look at a GGUF file before llama.cpp parses it: existence, type, magic, version
//! and sane table sizes, so that obviously wrong files get a precise error from us.

use cyxwiz_sdk::{Error, Result};
use std::{io::Read, path::Path};

/// Checks that `path` is a regular file that starts like a GGUF model.
pub fn check_file(path: &Path) -> Result<()> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| Error::from_io(path, &e))?;
    if meta.is_dir() {
        return Err(Error::invalid_input(format!(
            "{shown}: is a directory, expected a .gguf file"
        )));
    }
    let mut header = [0u8; 24];
    let mut file = std::fs::File::open(path).map_err(|e| Error::from_io(path, &e))?;
    file.read_exact(&mut header).map_err(|_| {
        Error::invalid_input(format!(
            "{shown}: not a GGUF model: only {} bytes",
            meta.len()
        ))
    })?;
    if &header[..4] != b"GGUF" {
        return Err(Error::invalid_input(format!(
            "{shown}: not a GGUF model: it starts with {:02x?}, not `GGUF`",
            &header[..4]
        )));
    }
    let version = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(2..=3).contains(&version) {
        return Err(Error::unsupported(format!(
            "{shown}: GGUF version {version}; llama.cpp reads 2 and 3"
        )));
    }
    let count = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (tensors, kvs) = (count(8), count(16));
    // Every tensor and key needs at least a few bytes in the file: counts beyond that are lies.
    if tensors > meta.len() / 8 || kvs > meta.len() / 8 {
        return Err(Error::invalid_input(format!(
            "{shown}: corrupt GGUF header: {tensors} tensors and {kvs} keys in {} bytes",
            meta.len()
        )));
    }
    Ok(())
}
