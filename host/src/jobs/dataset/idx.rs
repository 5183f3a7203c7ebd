//! The IDX reader (the MNIST file format): a header of magic `00 00 08 N` (unsigned bytes,
//! N dimensions) and N big-endian u32 sizes, then the bytes. Sizes are checked against the
//! data actually present and against fixed bounds before anything is allocated. Gzip and
//! file access are `source`'s business; this module reads bytes already in memory.

use super::{Dataset, DatasetError, MAX_SAMPLES, MAX_SAMPLE_LEN, MAX_VALUES};

/// The IDX type code for unsigned bytes, the only element type we read.
const DTYPE_U8: u8 = 0x08;

/// Whether `bytes` start like an IDX file of unsigned bytes.
pub fn looks_like_idx(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && bytes[0] == 0 && bytes[1] == 0 && bytes[2] == DTYPE_U8
}

/// One parsed IDX array: its dimensions and its bytes (borrowed from the input).
#[derive(Debug)]
pub struct IdxArray<'a> {
    /// The sizes from the header, the first being the number of items.
    pub dims: Vec<usize>,
    /// Exactly the product of `dims` bytes.
    pub data: &'a [u8],
}

/// Parses one IDX array at the start of `bytes`, returning it and the bytes after it.
/// `file` names the source in errors.
pub fn parse<'a>(file: &str, bytes: &'a [u8]) -> Result<(IdxArray<'a>, &'a [u8]), DatasetError> {
    let bad = |reason: String| DatasetError::BadIdx {
        file: file.to_owned(),
        reason,
    };
    let truncated = |what: String| DatasetError::Truncated {
        file: file.to_owned(),
        what,
    };
    if bytes.len() < 4 {
        return Err(truncated(format!(
            "the 4-byte IDX magic is missing ({} bytes)",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "magic starts {:02x} {:02x}, expected 00 00",
            bytes[0], bytes[1]
        )));
    }
    if bytes[2] != DTYPE_U8 {
        return Err(bad(format!(
            "element type 0x{:02x} (only unsigned bytes, 0x08, are read)",
            bytes[2]
        )));
    }
    let ndims = usize::from(bytes[3]);
    if !(1..=4).contains(&ndims) {
        return Err(bad(format!("{ndims} dimensions (1 to 4 are read)")));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(truncated(format!(
            "the header needs {header} bytes for {ndims} dimensions, the file has {}",
            bytes.len()
        )));
    }
    let mut dims = Vec::with_capacity(ndims);
    for chunk in bytes[4..header].chunks_exact(4) {
        let d = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        dims.push(d as usize);
    }
    let item_len = dims[1..]
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    let item_len = item_len
        .filter(|&n| n <= MAX_SAMPLE_LEN as u64)
        .ok_or_else(|| DatasetError::TooLarge {
            file: file.to_owned(),
            what: format!("an item of dimensions {:?}", &dims[1..]),
            got: dims[1..].iter().map(|&d| d as u64).product::<u64>(),
            limit: MAX_SAMPLE_LEN as u64,
        })?;
    if dims[0] > MAX_SAMPLES {
        return Err(DatasetError::TooLarge {
            file: file.to_owned(),
            what: "the item count".into(),
            got: dims[0] as u64,
            limit: MAX_SAMPLES as u64,
        });
    }
    // Both factors are bounded above, so the product fits in u64.
    let total = dims[0] as u64 * item_len;
    if total > MAX_VALUES as u64 {
        return Err(DatasetError::TooLarge {
            file: file.to_owned(),
            what: format!("the data of dimensions {dims:?}"),
            got: total,
            limit: MAX_VALUES as u64,
        });
    }
    let total = total as usize;
    let body = &bytes[header..];
    if body.len() < total {
        return Err(truncated(format!(
            "dimensions {dims:?} need {total} data bytes, only {} are present",
            body.len()
        )));
    }
    let (data, rest) = body.split_at(total);
    Ok((IdxArray { dims, data }, rest))
}

/// Pixels as f32 in [0, 1] (byte / 255). This crate is built unoptimized in debug builds,
/// where an iterator chain costs several calls per byte; a table and eight plain indexed
/// lookups per step keep 47 MB of Fashion-MNIST well under a second there.
fn scale_pixels(data: &[u8]) -> Vec<f32> {
    let mut table = [0f32; 256];
    for (i, v) in table.iter_mut().enumerate() {
        *v = i as f32 / 255.0;
    }
    let mut out = vec![0f32; data.len()];
    let whole = data.len() / 8 * 8;
    for (o, d) in out[..whole]
        .chunks_exact_mut(8)
        .zip(data[..whole].chunks_exact(8))
    {
        o[0] = table[d[0] as usize];
        o[1] = table[d[1] as usize];
        o[2] = table[d[2] as usize];
        o[3] = table[d[3] as usize];
        o[4] = table[d[4] as usize];
        o[5] = table[d[5] as usize];
        o[6] = table[d[6] as usize];
        o[7] = table[d[7] as usize];
    }
    for (o, &d) in out[whole..].iter_mut().zip(&data[whole..]) {
        *o = table[usize::from(d)];
    }
    out
}

/// Builds a dataset from an IDX image array (`[n, h, w]` → shape `[1, h, w]`, or
/// `[n, c, h, w]` → `[c, h, w]`, or `[n, f]` → `[f]`) and an IDX label array (`[n]`). The
/// class count is the largest label + 1. `images_file` and `labels_file` name them in errors.
pub fn dataset_from_arrays(
    images_file: &str,
    images: &IdxArray<'_>,
    labels_file: &str,
    labels: &IdxArray<'_>,
) -> Result<Dataset, DatasetError> {
    if labels.dims.len() != 1 {
        return Err(DatasetError::BadIdx {
            file: labels_file.to_owned(),
            reason: format!("labels have dimensions {:?}, expected one", labels.dims),
        });
    }
    if images.dims.len() < 2 {
        return Err(DatasetError::BadIdx {
            file: images_file.to_owned(),
            reason: format!("images have dimensions {:?}, expected 2 to 4", images.dims),
        });
    }
    if images.dims[0] != labels.dims[0] {
        return Err(DatasetError::CountMismatch {
            file: images_file.to_owned(),
            images: images.dims[0],
            labels: labels.dims[0],
        });
    }
    let shape = match images.dims.len() {
        3 => vec![1, images.dims[1], images.dims[2]],
        _ => images.dims[1..].to_vec(),
    };
    // Byte labels are below 256, so always within MAX_CLASSES.
    let max = labels.data.iter().copied().max().map_or(0, u32::from);
    let label_values: Vec<u32> = labels.data.iter().map(|&b| u32::from(b)).collect();
    Dataset::new(
        images_file,
        scale_pixels(images.data),
        label_values,
        shape,
        max + 1,
    )
}

/// Reads a dataset from an images IDX file's bytes and a labels IDX file's bytes.
pub fn read_pair(
    images_file: &str,
    images: &[u8],
    labels_file: &str,
    labels: &[u8],
) -> Result<Dataset, DatasetError> {
    let (img, _) = parse(images_file, images)?;
    let (lab, _) = parse(labels_file, labels)?;
    dataset_from_arrays(images_file, &img, labels_file, &lab)
}

/// Reads the inline IDX form: an images IDX array immediately followed by a labels IDX
/// array, nothing after.
pub fn read_concatenated(file: &str, bytes: &[u8]) -> Result<Dataset, DatasetError> {
    let (img, rest) = parse(file, bytes)?;
    if rest.is_empty() {
        return Err(DatasetError::Truncated {
            file: file.to_owned(),
            what: "the labels IDX array after the images is missing".into(),
        });
    }
    let (lab, rest) = parse(file, rest)?;
    if !rest.is_empty() {
        return Err(DatasetError::Invalid {
            file: file.to_owned(),
            reason: format!("{} bytes after the labels IDX array", rest.len()),
        });
    }
    dataset_from_arrays(file, &img, file, &lab)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IDX array of unsigned bytes with the given dimensions and data.
    pub(crate) fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, DTYPE_U8, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_images_and_labels_scaled() {
        let images = idx(&[2, 2, 2], &[0, 255, 51, 102, 255, 0, 0, 0]);
        let labels = idx(&[2], &[3, 1]);
        let d = read_pair("img", &images, "lab", &labels).unwrap();
        assert_eq!(d.shape(), &[1, 2, 2]);
        assert_eq!(d.labels(), &[3, 1]);
        assert_eq!(d.classes(), 4);
        assert_eq!(d.sample(0), &[0.0, 1.0, 0.2, 0.4]);
    }

    #[test]
    fn truncated_data_names_the_file_and_the_shortfall() {
        let mut images = idx(&[2, 2, 2], &[0; 8]);
        images.truncate(images.len() - 3);
        let err = parse("train-images", &images).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DatasetError::Truncated { .. }), "{err:?}");
        assert!(
            msg.contains("train-images") && msg.contains("need 8 data bytes, only 5"),
            "{msg}"
        );
        let err = parse("h", &images[..9]).unwrap_err();
        assert!(err.to_string().contains("header needs 16 bytes"), "{err}");
    }

    #[test]
    fn huge_dimensions_are_refused_before_allocating() {
        let err = parse("x", &idx(&[u32::MAX, 60_000, 60_000], &[])).unwrap_err();
        assert!(matches!(err, DatasetError::TooLarge { .. }), "{err:?}");
        let err = parse("x", &idx(&[u32::MAX, 28, 28], &[])).unwrap_err();
        assert!(matches!(err, DatasetError::TooLarge { .. }), "{err:?}");
        // Within the bounds but more than the file holds: truncated, not allocated.
        let err = parse("x", &idx(&[100_000, 28, 28], &[])).unwrap_err();
        assert!(matches!(err, DatasetError::Truncated { .. }), "{err:?}");
    }

    #[test]
    fn bad_magic_and_count_mismatch_are_refused() {
        let err = parse("x", b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd").unwrap_err();
        assert!(err.to_string().contains("element type 0x0d"), "{err}");
        let err = parse("x", b"PK\x03\x04").unwrap_err();
        assert!(matches!(err, DatasetError::BadIdx { .. }), "{err:?}");
        let images = idx(&[2, 1, 1], &[0, 0]);
        let labels = idx(&[3], &[0, 0, 0]);
        let err = read_pair("img", &images, "lab", &labels).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::CountMismatch {
                    images: 2,
                    labels: 3,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn concatenated_form_reads_both_arrays() {
        let mut bytes = idx(&[1, 1, 2], &[255, 0]);
        bytes.extend(idx(&[1], &[0]));
        let d = read_concatenated("inline", &bytes).unwrap();
        assert_eq!(
            (d.len(), d.shape(), d.classes()),
            (1, &[1usize, 1, 2][..], 1)
        );
        let only_images = idx(&[1, 1, 2], &[255, 0]);
        let err = read_concatenated("inline", &only_images).unwrap_err();
        assert!(err.to_string().contains("labels IDX array"), "{err}");
    }
}
