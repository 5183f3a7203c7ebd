//! A complete third-party plugin written only against `cyxwiz-sdk`: a "scale" model defined by
//! a tiny JSON file such as `{"factor": 2.5, "width": 4}`, multiplying a float32 `[batch, width]`
//! input `x` by `factor` into `y`.
use cyxwiz_sdk::{serde::Deserialize, *};
use std::{num::NonZeroU32, path::Path};

#[derive(Default)]
pub struct ScalePlugin;
/// The model file; a missing field, a wrong type or a zero `width` is an error naming it.
#[derive(Deserialize)]
#[serde(crate = "cyxwiz_sdk::serde")]
pub struct Scale {
    factor: f32,
    width: NonZeroU32,
}

impl Plugin for ScalePlugin {
    const NAME: &'static str = "example-scale";
    const DESCRIPTION: &'static str = "multiplies a float32 matrix by a constant from a JSON file";
    const FORMATS: &'static [Format] = &[Format::new("scale", &["scale"])];
    const CAPABILITIES: Capabilities = Capabilities::TENSOR_INFERENCE;
    type Model = Scale;

    fn load(&self, path: &Path, _: &LoadOptions) -> Result<Scale> {
        read_json(path)
    }
}

impl Model for Scale {
    fn info(&self) -> Result<ModelInfo> {
        let spec = |name| TensorSpec::f32(name, [-1, self.width.get().into()]);
        Ok(ModelInfo::tensors(vec![spec("x")], vec![spec("y")]))
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
