//! candle operations with PyTorch's semantics where candle's own differ or are missing:
//! convolution through [`Im2Col`] (candle's conv backward assumes square inputs), max and
//! average pooling with any stride (candle's backward needs kernel == stride and
//! divisible sizes), a ReLU whose gradient at 0 is 0, and a sigmoid whose gradient does not
//! overflow. Everything else is composed of candle's differentiable primitives.

use crate::kernels::{self, Window};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

type CResult<T> = candle_core::Result<T>;

/// The contiguous float32 values of a custom op's input.
fn f32_input<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> CResult<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{what} takes float32 tensors");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what} takes contiguous tensors"),
    }
}

fn window_of(shape: &Shape, kernel: usize, stride: usize, padding: usize) -> CResult<Window> {
    let (n, c, h, w) = shape.dims4()?;
    Ok(Window {
        n,
        c,
        h,
        w,
        kernel,
        stride,
        padding,
    })
}

/// A tensor's values, contiguous, as float32.
fn values(t: &Tensor) -> CResult<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// `[n, c, h, w]` to the columns `[n, oh * ow, c * k * k]` of [`kernels::im2col`].
struct Im2Col {
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "cyxwiz-im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_input(storage, layout, self.name())?;
        let g = window_of(layout.shape(), self.kernel, self.stride, self.padding)?;
        let cols = kernels::im2col(x, &g);
        let shape = Shape::from((g.n, g.oh() * g.ow(), g.c * g.kernel * g.kernel));
        Ok((CpuStorage::F32(cols), shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let g = window_of(arg.shape(), self.kernel, self.stride, self.padding)?;
        let dx = kernels::col2im(&values(grad)?, &g);
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `Conv2d`: `x [n, c, h, w]`, `weight [f, c, k, k]`, `bias [f]` → `[n, f, oh, ow]`.
pub(crate) fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
) -> CResult<Tensor> {
    let (filters, _, kernel, _) = weight.dims4()?;
    let (n, _, h, w) = x.dims4()?;
    let g = Window {
        n,
        c: 0,
        h,
        w,
        kernel,
        stride,
        padding,
    };
    let (oh, ow) = (g.oh(), g.ow());
    let cols = x.contiguous()?.apply_op1(Im2Col {
        kernel,
        stride,
        padding,
    })?;
    let (_, positions, row) = cols.dims3()?;
    let w2 = weight.reshape((filters, row))?;
    cols.reshape((n * positions, row))?
        .matmul(&w2.t()?)?
        .reshape((n, positions, filters))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n, filters, oh, ow))?
        .broadcast_add(&bias.reshape((1, filters, 1, 1))?)
}

/// Max or average pooling.
struct Pool {
    max: bool,
    kernel: usize,
    stride: usize,
}

impl CustomOp1 for Pool {
    fn name(&self) -> &'static str {
        if self.max {
            "cyxwiz-max-pool2d"
        } else {
            "cyxwiz-avg-pool2d"
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_input(storage, layout, self.name())?;
        let g = window_of(layout.shape(), self.kernel, self.stride, 0)?;
        let out = if self.max {
            kernels::max_pool(x, &g)
        } else {
            kernels::avg_pool(x, &g)
        };
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.n, g.c, g.oh(), g.ow())),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let g = window_of(arg.shape(), self.kernel, self.stride, 0)?;
        let grad = values(grad)?;
        let dx = if self.max {
            kernels::max_pool_back(&values(arg)?, &grad, &g)
        } else {
            kernels::avg_pool_back(&grad, &g)
        };
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `MaxPool2d(kernel, stride)` (`max`) or `AvgPool2d(kernel, stride)`.
pub(crate) fn pool(x: &Tensor, max: bool, kernel: usize, stride: usize) -> CResult<Tensor> {
    x.contiguous()?.apply_op1(Pool {
        max,
        kernel,
        stride,
    })
}

/// `x * (x > 0)`: ReLU with PyTorch's gradient (0 at 0).
pub(crate) fn relu(x: &Tensor) -> CResult<Tensor> {
    x.mul(&x.gt(0f64)?.to_dtype(DType::F32)?)
}

/// LeakyReLU: `x` where `x > 0`, `slope * x` elsewhere (gradient `slope` at 0, as PyTorch).
pub(crate) fn leaky_relu(x: &Tensor, slope: f64) -> CResult<Tensor> {
    let factor = x
        .gt(0f64)?
        .to_dtype(DType::F32)?
        .affine(1.0 - slope, slope)?;
    x.mul(&factor)
}

/// Exact GELU, `x/2 · (1 + erf(x/√2))`.
pub(crate) fn gelu(x: &Tensor) -> CResult<Tensor> {
    let erf = x.affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)?.erf()?;
    x.affine(0.5, 0.0)?.mul(&erf.affine(1.0, 1.0)?)
}

/// The logistic sigmoid; its gradient `y (1 - y)` is computed from the output.
struct Sigmoid;

impl CustomOp1 for Sigmoid {
    fn name(&self) -> &'static str {
        "cyxwiz-sigmoid"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_input(storage, layout, self.name())?;
        let y = x.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        Ok(Some(grad.mul(&res.mul(&res.affine(-1.0, 1.0)?)?)?))
    }
}

/// `Sigmoid`.
pub(crate) fn sigmoid(x: &Tensor) -> CResult<Tensor> {
    x.contiguous()?.apply_op1(Sigmoid)
}

/// `softmax` over the last axis of `[n, k]`, shifted by the (constant) row maximum.
pub(crate) fn softmax(x: &Tensor) -> CResult<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(1)?.detach())?;
    let e = shifted.exp()?;
    e.broadcast_div(&e.sum_keepdim(1)?)
}

/// `log_softmax` over the last axis of `[n, k]`.
pub(crate) fn log_softmax(x: &Tensor) -> CResult<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(1)?.detach())?;
    shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(1)?.log()?)
}

#[cfg(test)]
mod tests;
