//! A deployment's `device` setting: `cpu`, `auto`, `cuda` or `cuda:N`
//! (`crate::deployments::device` resolves it against the node's GPUs).

/// A device a deployment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The CPU.
    Cpu,
    /// A GPU if one is usable, else the CPU without a warning.
    Auto,
    /// A GPU: any (`None`) or this index.
    Cuda(Option<u32>),
}

impl DeviceRequest {
    /// Parses a deployment's `device`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            "cuda" | "gpu" => Ok(Self::Cuda(None)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<u32>().ok())
                .map(|n| Self::Cuda(Some(n)))
                .ok_or_else(|| {
                    format!("device `{text}` must be `cpu`, `auto`, `cuda` or `cuda:N`")
                }),
        }
    }
}
