//! candle operations with PyTorch's semantics where candle's own differ or are missing:
//! convolution through [`Im2Col`] and [`ConvOut`] (candle's conv backward assumes square
//! inputs), max and average pooling with any stride (candle's backward needs kernel ==
//! stride and divisible sizes), activations with PyTorch's gradients (ReLU's is 0 at 0) and
//! dropout, each one pass forward and one backward. Fewer, fused operations also keep
//! candle's spinning elementwise thread pool out of the way (it serves every candle
//! elementwise operation over 64K values and ignores the job's thread bound). Everything
//! else is composed of candle's differentiable primitives.

use crate::kernels::{self, Window};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

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

/// `[n, c, h, w]` to the columns `[n * oh * ow, c * k * k]` of [`kernels::im2col`].
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
        let shape = Shape::from((g.n * g.oh() * g.ow(), g.c * g.kernel * g.kernel));
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
    let row = cols.dim(1)?;
    let products = cols.matmul(&weight.reshape((filters, row))?.t()?)?;
    products.apply_op2(
        bias,
        ConvOut {
            n,
            positions: oh * ow,
            filters,
            oh,
            ow,
        },
    )
}

/// The convolution's epilogue in one pass: the products `[n * positions, filters]` plus the
/// bias, laid out as `[n, filters, oh, ow]`.
struct ConvOut {
    n: usize,
    positions: usize,
    filters: usize,
    oh: usize,
    ow: usize,
}

impl CustomOp2 for ConvOut {
    fn name(&self) -> &'static str {
        "cyxwiz-conv-out"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let products = f32_input(s1, l1, self.name())?;
        let bias = f32_input(s2, l2, self.name())?;
        let (p, f) = (self.positions, self.filters);
        if products.len() != self.n * p * f || bias.len() != f {
            candle_core::bail!("{}: unexpected input sizes", self.name());
        }
        let mut out = vec![0f32; products.len()];
        out.par_chunks_mut((p * f).max(1))
            .zip(products.par_chunks((p * f).max(1)))
            .for_each(|(dst, src)| {
                for (fi, plane) in dst.chunks_mut(p.max(1)).enumerate() {
                    for (pi, v) in plane.iter_mut().enumerate() {
                        *v = src[pi * f + fi] + bias[fi];
                    }
                }
            });
        let shape = Shape::from((self.n, f, self.oh, self.ow));
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        products: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let g = values(grad)?;
        let (p, f) = (self.positions, self.filters);
        let mut dp = vec![0f32; g.len()];
        dp.par_chunks_mut((p * f).max(1))
            .zip(g.par_chunks((p * f).max(1)))
            .for_each(|(dst, src)| {
                for (fi, plane) in src.chunks(p.max(1)).enumerate() {
                    for (pi, v) in plane.iter().enumerate() {
                        dst[pi * f + fi] = *v;
                    }
                }
            });
        let mut db = vec![0f32; f];
        for sample in g.chunks((p * f).max(1)) {
            for (fi, plane) in sample.chunks(p.max(1)).enumerate() {
                db[fi] += plane.iter().sum::<f32>();
            }
        }
        Ok((
            Some(Tensor::from_vec(dp, products.shape(), products.device())?),
            Some(Tensor::from_vec(db, bias.shape(), bias.device())?),
        ))
    }
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

/// Values per parallel chunk of an elementwise pass.
const CHUNK: usize = 16 * 1024;

/// An elementwise activation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
    Gelu,
}

impl Act {
    fn value(self, x: f32) -> f32 {
        match self {
            Act::Relu => x.max(0.0),
            Act::LeakyRelu(slope) => {
                if x > 0.0 {
                    x
                } else {
                    x * slope
                }
            }
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Tanh => x.tanh(),
            Act::Gelu => {
                let erf =
                    candle_core::cpu::erf::erf_f64(f64::from(x) * std::f64::consts::FRAC_1_SQRT_2);
                x * 0.5 * (1.0 + erf as f32)
            }
        }
    }

    /// `dy/dx` from the input `x` and the output `y`, as PyTorch's backward computes it
    /// (ReLU's is 0 at 0, LeakyReLU's is the slope at 0).
    fn slope(self, x: f32, y: f32) -> f32 {
        match self {
            Act::Relu => f32::from(u8::from(x > 0.0)),
            Act::LeakyRelu(slope) => {
                if x > 0.0 {
                    1.0
                } else {
                    slope
                }
            }
            Act::Sigmoid => y * (1.0 - y),
            Act::Tanh => 1.0 - y * y,
            Act::Gelu => {
                let x64 = f64::from(x);
                let cdf = 0.5
                    * (1.0 + candle_core::cpu::erf::erf_f64(x64 * std::f64::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * x64 * x64).exp()
                    * 0.5
                    * std::f64::consts::FRAC_2_SQRT_PI
                    * std::f64::consts::FRAC_1_SQRT_2;
                (cdf + x64 * pdf) as f32
            }
        }
    }
}

impl CustomOp1 for Act {
    fn name(&self) -> &'static str {
        "cyxwiz-activation"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_input(storage, layout, self.name())?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| y.iter_mut().zip(x).for_each(|(y, &x)| *y = self.value(x)));
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let (x, y, mut g) = (values(arg)?, values(res)?, values(grad)?);
        g.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
            .for_each(|(g, (x, y))| {
                for i in 0..g.len() {
                    g[i] *= self.slope(x[i], y[i]);
                }
            });
        Ok(Some(Tensor::from_vec(g, arg.shape(), arg.device())?))
    }
}

fn activation(x: &Tensor, act: Act) -> CResult<Tensor> {
    x.contiguous()?.apply_op1(act)
}

/// ReLU, with PyTorch's gradient (0 at 0).
pub(crate) fn relu(x: &Tensor) -> CResult<Tensor> {
    activation(x, Act::Relu)
}

/// LeakyReLU: `x` where `x > 0`, `slope * x` elsewhere (gradient `slope` at 0, as PyTorch).
pub(crate) fn leaky_relu(x: &Tensor, slope: f64) -> CResult<Tensor> {
    activation(x, Act::LeakyRelu(slope as f32))
}

/// Exact GELU, `x/2 · (1 + erf(x/√2))`.
pub(crate) fn gelu(x: &Tensor) -> CResult<Tensor> {
    activation(x, Act::Gelu)
}

/// The logistic sigmoid (no overflow: `exp(-x)` at infinity gives 0).
pub(crate) fn sigmoid(x: &Tensor) -> CResult<Tensor> {
    activation(x, Act::Sigmoid)
}

/// Tanh.
pub(crate) fn tanh(x: &Tensor) -> CResult<Tensor> {
    activation(x, Act::Tanh)
}

/// `x * mask` with the mask fixed (dropout): one pass forward, one backward.
struct Masked(Vec<f32>);

impl CustomOp1 for Masked {
    fn name(&self) -> &'static str {
        "cyxwiz-dropout"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_input(storage, layout, self.name())?;
        if x.len() != self.0.len() {
            candle_core::bail!("dropout mask of {} values for {}", self.0.len(), x.len());
        }
        let y = x.iter().zip(&self.0).map(|(x, m)| x * m).collect();
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let g: Vec<f32> = values(grad)?
            .iter()
            .zip(&self.0)
            .map(|(g, m)| g * m)
            .collect();
        Ok(Some(Tensor::from_vec(g, arg.shape(), arg.device())?))
    }
}

/// `x * mask` (a dropout mask of `x.elem_count()` values).
pub(crate) fn masked(x: &Tensor, mask: Vec<f32>) -> CResult<Tensor> {
    x.contiguous()?.apply_op1(Masked(mask))
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
