//! The CSV reader: numeric features and one integer label column, read from bytes already in
//! memory (file access and gzip are `source`'s business). With a header the label column is
//! named (default `label`, else `target`); without one (sklearn's digits form) the label is
//! the last column. Plain comma-separated cells: no quoting, as numbers need none.

use super::{shorten, Dataset, DatasetError, MAX_CLASSES, MAX_SAMPLES, MAX_SAMPLE_LEN, MAX_VALUES};

/// The largest CSV text we parse.
pub const MAX_CSV_BYTES: usize = 256 * 1024 * 1024;

/// How to read a CSV file.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    /// Whether the first row names the columns.
    pub has_header: bool,
    /// The label column's name (with a header); `None` means `label`, else `target`.
    /// Without a header the label is the last column and this must be `None`.
    pub label_column: Option<String>,
    /// Every feature is multiplied by this (1.0 keeps features as given).
    pub scale: f32,
    /// Each sample's shape; `None` means `[features]`. Its product must equal the number of
    /// feature columns.
    pub shape: Option<Vec<usize>>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            has_header: true,
            label_column: None,
            scale: 1.0,
            shape: None,
        }
    }
}

/// Parses `text` (named `file` in errors) into a dataset; the class count is the largest
/// label + 1.
pub fn read(file: &str, bytes: &[u8], options: &CsvOptions) -> Result<Dataset, DatasetError> {
    if bytes.len() > MAX_CSV_BYTES {
        return Err(DatasetError::TooLarge {
            file: file.to_owned(),
            what: "the CSV text".into(),
            got: bytes.len() as u64,
            limit: MAX_CSV_BYTES as u64,
        });
    }
    let invalid = |reason: String| DatasetError::Invalid {
        file: file.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8 text ({e})")))?;
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty());

    // The column names (with a header) and the label's index.
    let (names, label_at, width) = if options.has_header {
        let (_, header) = lines
            .next()
            .ok_or_else(|| invalid("no header row".into()))?;
        let names: Vec<String> = header
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_owned())
            .collect();
        let find = |n: &str| names.iter().position(|c| c == n);
        let (wanted, at) = match &options.label_column {
            Some(name) => (name.clone(), find(name)),
            None => ("label".to_owned(), find("label").or_else(|| find("target"))),
        };
        let at = at.ok_or_else(|| DatasetError::MissingLabelColumn {
            file: file.to_owned(),
            column: wanted,
            header: shorten(&names.join(",")),
        })?;
        let width = names.len();
        (Some(names), at, width)
    } else {
        if options.label_column.is_some() {
            return Err(invalid(
                "a label column name needs a header row; without one the label is the last column"
                    .into(),
            ));
        }
        let width = match lines.clone().next() {
            Some((_, first)) => first.split(',').count(),
            None => return Err(invalid("no rows".into())),
        };
        (None, width - 1, width)
    };
    let features = width - 1;
    if features == 0 {
        return Err(invalid("no feature columns besides the label".into()));
    }
    if features > MAX_SAMPLE_LEN {
        return Err(DatasetError::TooLarge {
            file: file.to_owned(),
            what: "the feature column count".into(),
            got: features as u64,
            limit: MAX_SAMPLE_LEN as u64,
        });
    }
    let shape = options.shape.clone().unwrap_or_else(|| vec![features]);
    if shape.iter().product::<usize>() != features {
        return Err(invalid(format!(
            "{features} feature columns do not fill the shape {shape:?}"
        )));
    }
    let column_name = |i: usize| match &names {
        Some(names) => names[i].clone(),
        None => i.to_string(),
    };

    let mut samples = Vec::new();
    let mut labels = Vec::new();
    for (row, line) in lines {
        if labels.len() == MAX_SAMPLES || samples.len() + features > MAX_VALUES {
            return Err(DatasetError::TooLarge {
                file: file.to_owned(),
                what: "the row count".into(),
                got: labels.len() as u64 + 1,
                limit: (MAX_SAMPLES.min(MAX_VALUES / features)) as u64,
            });
        }
        let start = samples.len();
        let mut cells = 0;
        for (col, cell) in line.split(',').enumerate() {
            cells += 1;
            if col >= width {
                continue;
            }
            let cell = cell.trim();
            if col == label_at {
                labels.push(parse_label(cell).ok_or_else(|| DatasetError::BadLabel {
                    file: file.to_owned(),
                    row,
                    value: shorten(cell),
                    max: MAX_CLASSES,
                })?);
                continue;
            }
            match cell.parse::<f32>() {
                Ok(v) if v.is_finite() => samples.push(v * options.scale),
                _ => {
                    return Err(DatasetError::NonNumeric {
                        file: file.to_owned(),
                        row,
                        column: column_name(col),
                        cell: shorten(cell),
                    })
                }
            }
        }
        if cells != width {
            return Err(DatasetError::Ragged {
                file: file.to_owned(),
                row,
                expected: width,
                got: cells,
            });
        }
        debug_assert_eq!(samples.len() - start, features);
    }
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    Dataset::new(file, samples, labels, shape, classes)
}

/// A label: an integer in `0..MAX_CLASSES`, written `3` or `3.0`.
fn parse_label(cell: &str) -> Option<u32> {
    let v = match cell.parse::<u32>() {
        Ok(v) => v,
        Err(_) => {
            let f = cell.parse::<f64>().ok()?;
            if f.fract() != 0.0 || !(0.0..f64::from(MAX_CLASSES)).contains(&f) {
                return None;
            }
            f as u32
        }
    };
    (v < MAX_CLASSES).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(label: &str) -> CsvOptions {
        CsvOptions {
            label_column: Some(label.into()),
            ..CsvOptions::default()
        }
    }

    #[test]
    fn reads_features_as_given_and_finds_the_default_label() {
        let csv = b"a,b,label\n1.5,-2,1\r\n0,3e2,0\n\n";
        let d = read("x.csv", csv, &CsvOptions::default()).unwrap();
        assert_eq!(d.samples(), &[1.5, -2.0, 0.0, 300.0]);
        assert_eq!(
            (d.labels(), d.shape(), d.classes()),
            (&[1, 0][..], &[2usize][..], 2)
        );
        let t = read("x.csv", b"target,f\n2.0,7\n", &CsvOptions::default()).unwrap();
        assert_eq!(
            (t.labels(), t.samples(), t.classes()),
            (&[2][..], &[7.0][..], 3)
        );
        let n = read("x.csv", b"f,y\n1,4\n", &named("y")).unwrap();
        assert_eq!(n.labels(), &[4]);
    }

    #[test]
    fn headerless_form_takes_the_last_column_and_scales() {
        let opts = CsvOptions {
            has_header: false,
            scale: 1.0 / 16.0,
            shape: Some(vec![1, 2, 2]),
            ..CsvOptions::default()
        };
        let d = read("digits", b"0,16,8,4,7\n", &opts).unwrap();
        assert_eq!(
            (d.samples(), d.labels(), d.shape()),
            (&[0.0, 1.0, 0.5, 0.25][..], &[7][..], &[1usize, 2, 2][..])
        );
    }

    #[test]
    fn wrong_label_column_names_the_column_and_the_header() {
        let err = read("x.csv", b"a,b,class\n1,2,0\n", &named("species")).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, DatasetError::MissingLabelColumn { .. }),
            "{err:?}"
        );
        assert!(
            msg.contains("\"species\"") && msg.contains("a,b,class"),
            "{msg}"
        );
        let err = read("x.csv", b"a,b,class\n1,2,0\n", &CsvOptions::default()).unwrap_err();
        assert!(err.to_string().contains("\"label\""), "{err}");
    }

    #[test]
    fn non_numeric_cell_names_row_and_column() {
        let err = read(
            "x.csv",
            b"a,b,label\n1,2,0\n1,two,1\n",
            &CsvOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, DatasetError::NonNumeric { row: 3, column, cell, .. } if column == "b" && cell == "two"),
            "{err:?}"
        );
        let err = read("x.csv", b"a,label\nnan,0\n", &CsvOptions::default()).unwrap_err();
        assert!(
            matches!(err, DatasetError::NonNumeric { row: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn ragged_rows_and_bad_labels_are_refused() {
        let err = read("x.csv", b"a,b,label\n1,2,0\n1,0\n", &CsvOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::Ragged {
                    row: 3,
                    expected: 3,
                    got: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = read("x.csv", b"a,label\n1,2,3\n", &CsvOptions::default()).unwrap_err();
        assert!(
            matches!(err, DatasetError::Ragged { got: 3, .. }),
            "{err:?}"
        );
        for bad in ["-1", "1.5", "cat", "99999999", "1e9"] {
            let csv = format!("a,label\n1,{bad}\n");
            let err = read("x.csv", csv.as_bytes(), &CsvOptions::default()).unwrap_err();
            assert!(
                matches!(err, DatasetError::BadLabel { row: 2, .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn empty_and_featureless_files_are_refused() {
        for csv in [&b""[..], b"a,label\n", b"label\n1\n"] {
            let err = read("x.csv", csv, &CsvOptions::default()).unwrap_err();
            assert!(matches!(err, DatasetError::Invalid { .. }), "{err:?}");
        }
    }
}
