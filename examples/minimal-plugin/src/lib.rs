//! A complete third-party plugin written only against `cyxwiz-sdk`: a "scale" model defined by
//! a tiny JSON file such as `{"factor": 2.5, "width": 4}`, multiplying a float32 `[batch, width]`
//! input `x` by `factor` into `y`.
use cyxwiz_sdk::{serde_json::Value, *};
use std::path::Path;

#[derive(Default)]
pub struct ScalePlugin;
pub struct Scale {
    factor: f32,
    width: i64,
}

impl Plugin for ScalePlugin {
    const NAME: &'static str = "example-scale";
    const DESCRIPTION: &'static str = "multiplies a float32 matrix by a constant from a JSON file";
    const FORMATS: &'static [Format] = &[Format {
        name: "scale",
        extensions: &["scale"],
    }];
    const CAPABILITIES: Capabilities = Capabilities::TENSOR_INFERENCE;
    type Model = Scale;

    fn load(&self, path: &Path, _: &LoadOptions) -> Result<Scale> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::from_io(path, &e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| Error::invalid_input(format!("{}: not JSON: {e}", path.display())))?;
        match (json["factor"].as_f64(), json["width"].as_i64()) {
            (Some(f), Some(w)) if w > 0 => Ok(Scale {
                factor: f as f32,
                width: w,
            }),
            _ => Err(Error::invalid_input(
                "a scale model needs `factor` and a positive `width`",
            )),
        }
    }
}

impl Model for Scale {
    fn info(&self) -> Result<ModelInfo> {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            dtype: DType::F32,
            shape: vec![-1, self.width],
        };
        let (inputs, outputs) = (vec![spec("x")], vec![spec("y")]);
        Ok(ModelInfo {
            inputs,
            outputs,
            capabilities: Capabilities::TENSOR_INFERENCE,
            ..Default::default()
        })
    }

    fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        self.info()?.check_inputs(inputs)?;
        let y: Vec<f32> = inputs[0]
            .to_f32_vec()?
            .iter()
            .map(|v| v * self.factor)
            .collect();
        Ok(vec![Tensor::from_f32("y", inputs[0].shape.to_vec(), &y)])
    }
}

export_plugin!(ScalePlugin);
