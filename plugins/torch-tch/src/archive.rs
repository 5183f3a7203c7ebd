//! Reads a TorchScript archive without libtorch: checks it is a zip with the `data.pkl` and
//! `code/` of `torch.jit.save`, finds the root module's class and parses its `forward`
//! signature, which names the arguments the node exposes as inputs (TorchScript keeps names
//! and types, but no tensor shapes).

use cyxwiz_sdk::{Error, Result};
use std::{io::Read, path::Path};

/// One `forward` argument.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: String,
    /// The TorchScript type as written: `Tensor`, `int`, `float`, `bool`, ...
    pub ty: String,
    pub has_default: bool,
}

/// The root module's class and its `forward` arguments (without `self`).
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    pub class: String,
    pub args: Vec<Arg>,
    pub returns: String,
}

impl Signature {
    /// `forward(x: Tensor, sr: int) -> Tensor`
    pub fn describe(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| format!("{}: {}", a.name, a.ty))
            .collect();
        format!("forward({}) -> {}", args.join(", "), self.returns)
    }
}

fn invalid(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!(
        "{}: not a TorchScript archive: {why}",
        path.display()
    ))
}

/// Opens `path` as a TorchScript archive and reads the root `forward` signature.
pub fn read_signature(path: &Path) -> Result<Signature> {
    let file = std::fs::File::open(path).map_err(|e| Error::from_io(path, &e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| invalid(path, e))?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| invalid(path, "no `data.pkl` (was it saved with torch.jit.save?)"))?
        .clone();
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    let mut head = Vec::new();
    zip.by_name(&pkl)
        .map_err(|e| invalid(path, e))?
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| invalid(path, e))?;
    let (module, class) = root_class(&head)
        .ok_or_else(|| invalid(path, "`data.pkl` does not start with a TorchScript module"))?;
    let code_path = format!("{prefix}code/{}.py", module.replace('.', "/"));
    let mut code = String::new();
    zip.by_name(&code_path)
        .map_err(|_| invalid(path, format!("`{code_path}` is missing")))?
        .take(16 << 20)
        .read_to_string(&mut code)
        .map_err(|e| invalid(path, e))?;
    parse_forward(&code, &class).ok_or_else(|| {
        Error::unsupported(format!(
            "{}: cannot read the signature of `{class}.forward` from `{code_path}`",
            path.display()
        ))
    })
}

/// `\x80\x02c<module>\n<Class>\n...`: the first GLOBAL of the pickle is the root module class.
fn root_class(pkl: &[u8]) -> Option<(String, String)> {
    let rest = pkl.strip_prefix(b"\x80")?.get(1..)?.strip_prefix(b"c")?;
    let text = std::str::from_utf8(rest.get(..rest.len().min(400))?).ok();
    let text = match text {
        Some(t) => t.to_string(),
        None => String::from_utf8_lossy(rest).into_owned(),
    };
    let mut lines = text.split('\n');
    let module = lines.next()?.to_string();
    let class = lines.next()?.to_string();
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    (module.starts_with("__torch__") && ok(&module) && ok(&class)).then_some((module, class))
}

/// Finds `def forward(self: <module>.<class>, ...) -> T:` inside `class <class>` and parses it.
fn parse_forward(code: &str, class: &str) -> Option<Signature> {
    let body = code.split(&format!("class {class}(")).nth(1)?;
    let body = body.split("\nclass ").next()?;
    let start = body.find("def forward(")? + "def forward(".len();
    let text = &body[start..];
    // The argument list ends at the parenthesis that closes `forward(`.
    let mut depth = 0usize;
    let mut end = None;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ']' => depth = depth.checked_sub(1)?,
            ')' if depth == 0 => {
                end = Some(i);
                break;
            }
            ')' => depth -= 1,
            _ => {}
        }
    }
    let end = end?;
    let returns = text[end + 1..]
        .split(':')
        .next()?
        .trim()
        .strip_prefix("->")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|| "None".to_string());
    let args = split_top_level(&text[..end])
        .into_iter()
        .skip(1) // self
        .map(|part| {
            let (decl, default) = match part.split_once('=') {
                Some((d, _)) => (d, true),
                None => (part.as_str(), false),
            };
            let (name, ty) = decl.split_once(':')?;
            Some(Arg {
                name: name.trim().to_string(),
                ty: ty.trim().to_string(),
                has_default: default,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Signature {
        class: class.to_string(),
        args,
        returns,
    })
}

/// Splits on commas outside brackets.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_string());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "class Inner(Module):\n  def forward(self: __torch__.m.Inner,\n    x: Tensor) -> Tensor:\n    return x\nclass Root(Module):\n  __parameters__ = []\n  def forward(self: __torch__.m.Root,\n    x: Tensor,\n    pair: Tuple[Tensor, int],\n    sr: int=16000) -> Tuple[Tensor, Tensor]:\n    return (x, x)\n  def reset(self: __torch__.m.Root) -> NoneType:\n    return None\n";

    #[test]
    fn parses_the_root_forward_with_nested_types_and_defaults() {
        let sig = parse_forward(CODE, "Root").expect("parsed");
        assert_eq!(sig.returns, "Tuple[Tensor, Tensor]");
        let args: Vec<(&str, &str, bool)> = sig
            .args
            .iter()
            .map(|a| (a.name.as_str(), a.ty.as_str(), a.has_default))
            .collect();
        assert_eq!(
            args,
            vec![
                ("x", "Tensor", false),
                ("pair", "Tuple[Tensor, int]", false),
                ("sr", "int", true)
            ]
        );
        assert_eq!(
            sig.describe(),
            "forward(x: Tensor, pair: Tuple[Tensor, int], sr: int) -> Tuple[Tensor, Tensor]"
        );
        assert_eq!(parse_forward(CODE, "Inner").map(|s| s.args.len()), Some(1));
        assert_eq!(parse_forward(CODE, "Missing"), None);
    }

    #[test]
    fn root_class_comes_from_the_first_pickle_global() {
        let pkl = b"\x80\x02c__torch__.vad.model\nVADRNNJITMerge\nq\x00)\x81}(X";
        assert_eq!(
            root_class(pkl),
            Some(("__torch__.vad.model".into(), "VADRNNJITMerge".into()))
        );
        assert_eq!(root_class(b"\x80\x02cos\nsystem\n"), None);
        assert_eq!(root_class(b"garbage"), None);
        assert_eq!(root_class(b""), None);
    }
}
