//! The window operations candle does not do the PyTorch way, written out on plain slices:
//! im2col and its adjoint col2im (convolution with any stride, padding and a non-square
//! input), max pooling (the first maximum of a window takes the gradient, NaN propagates)
//! and average pooling (any kernel and stride). `ops` wraps them as candle operations.

use rayon::prelude::*;

/// A square window sliding over `[n, c, h, w]` with `stride` and zero `padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Window {
    /// Output height (the caller checked that the window fits).
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// Values per sample of the input.
    fn plane(&self) -> usize {
        self.c * self.h * self.w
    }

    /// The input row (or column) under output position `o` and kernel offset `k`, if it is
    /// inside the image (not padding).
    fn at(&self, o: usize, k: usize, size: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.padding)
            .filter(|&i| i < size)
    }
}

/// `x [n, c, h, w]` to columns `[n, oh * ow, c * k * k]`: row `oh * OW + ow` holds the window
/// under that output position, in the order of a `[filters, c, k, k]` weight.
pub(crate) fn im2col(x: &[f32], g: &Window) -> Vec<f32> {
    let (oh, ow, k) = (g.oh(), g.ow(), g.kernel);
    let row = g.c * k * k;
    let per_sample = oh * ow * row;
    let mut cols = vec![0f32; g.n * per_sample];
    cols.par_chunks_mut(per_sample.max(1))
        .zip(x.par_chunks(g.plane().max(1)))
        .for_each(|(out, img)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let dst = &mut out[(oy * ow + ox) * row..][..row];
                    for c in 0..g.c {
                        for ky in 0..k {
                            let Some(iy) = g.at(oy, ky, g.h) else {
                                continue;
                            };
                            let src = &img[(c * g.h + iy) * g.w..][..g.w];
                            for kx in 0..k {
                                if let Some(ix) = g.at(ox, kx, g.w) {
                                    dst[(c * k + ky) * k + kx] = src[ix];
                                }
                            }
                        }
                    }
                }
            }
        });
    cols
}

/// The adjoint of [`im2col`]: sums column gradients back onto the image `[n, c, h, w]`.
pub(crate) fn col2im(cols: &[f32], g: &Window) -> Vec<f32> {
    let (oh, ow, k) = (g.oh(), g.ow(), g.kernel);
    let row = g.c * k * k;
    let per_sample = oh * ow * row;
    let mut x = vec![0f32; g.n * g.plane()];
    x.par_chunks_mut(g.plane().max(1))
        .zip(cols.par_chunks(per_sample.max(1)))
        .for_each(|(img, src)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let from = &src[(oy * ow + ox) * row..][..row];
                    for c in 0..g.c {
                        for ky in 0..k {
                            let Some(iy) = g.at(oy, ky, g.h) else {
                                continue;
                            };
                            let dst = &mut img[(c * g.h + iy) * g.w..][..g.w];
                            for kx in 0..k {
                                if let Some(ix) = g.at(ox, kx, g.w) {
                                    dst[ix] += from[(c * k + ky) * k + kx];
                                }
                            }
                        }
                    }
                }
            }
        });
    x
}

/// Calls `f(plane_in, plane_out)` for every `[h, w]` plane of `x` and its `[oh, ow]` output.
fn per_plane(x: &[f32], g: &Window, out: &mut [f32], f: impl Fn(&[f32], &mut [f32]) + Sync) {
    let (hw, ohw) = (g.h * g.w, g.oh() * g.ow());
    out.par_chunks_mut(ohw.max(1))
        .zip(x.par_chunks(hw.max(1)))
        .for_each(|(o, i)| f(i, o));
}

/// The flat index (in the plane) of each window's first maximum; NaN wins as in PyTorch.
fn argmax(plane: &[f32], g: &Window, oy: usize, ox: usize) -> usize {
    let mut best = (oy * g.stride) * g.w + ox * g.stride;
    for ky in 0..g.kernel {
        for kx in 0..g.kernel {
            let i = (oy * g.stride + ky) * g.w + ox * g.stride + kx;
            let v = plane[i];
            if v > plane[best] || (v.is_nan() && !plane[best].is_nan()) {
                best = i;
            }
        }
    }
    best
}

/// Max pooling of `x [n, c, h, w]` (no padding).
pub(crate) fn max_pool(x: &[f32], g: &Window) -> Vec<f32> {
    let mut out = vec![0f32; g.n * g.c * g.oh() * g.ow()];
    per_plane(x, g, &mut out, |plane, o| {
        for oy in 0..g.oh() {
            for ox in 0..g.ow() {
                o[oy * g.ow() + ox] = plane[argmax(plane, g, oy, ox)];
            }
        }
    });
    out
}

/// The gradient of [`max_pool`] with respect to `x`, given the output gradient `grad`.
pub(crate) fn max_pool_back(x: &[f32], grad: &[f32], g: &Window) -> Vec<f32> {
    let (hw, ohw) = (g.h * g.w, g.oh() * g.ow());
    let mut dx = vec![0f32; x.len()];
    dx.par_chunks_mut(hw.max(1))
        .zip(x.par_chunks(hw.max(1)))
        .zip(grad.par_chunks(ohw.max(1)))
        .for_each(|((d, plane), gp)| {
            for oy in 0..g.oh() {
                for ox in 0..g.ow() {
                    d[argmax(plane, g, oy, ox)] += gp[oy * g.ow() + ox];
                }
            }
        });
    dx
}

/// Average pooling of `x [n, c, h, w]` (no padding, divisor `kernel²`).
pub(crate) fn avg_pool(x: &[f32], g: &Window) -> Vec<f32> {
    let mut out = vec![0f32; g.n * g.c * g.oh() * g.ow()];
    let scale = 1.0 / (g.kernel * g.kernel) as f32;
    per_plane(x, g, &mut out, |plane, o| {
        for oy in 0..g.oh() {
            for ox in 0..g.ow() {
                let mut sum = 0f32;
                for ky in 0..g.kernel {
                    let start = (oy * g.stride + ky) * g.w + ox * g.stride;
                    sum += plane[start..start + g.kernel].iter().sum::<f32>();
                }
                o[oy * g.ow() + ox] = sum * scale;
            }
        }
    });
    out
}

/// The gradient of [`avg_pool`] with respect to its input, given the output gradient.
pub(crate) fn avg_pool_back(grad: &[f32], g: &Window) -> Vec<f32> {
    let (hw, ohw) = (g.h * g.w, g.oh() * g.ow());
    let scale = 1.0 / (g.kernel * g.kernel) as f32;
    let mut dx = vec![0f32; g.n * g.c * hw];
    dx.par_chunks_mut(hw.max(1))
        .zip(grad.par_chunks(ohw.max(1)))
        .for_each(|(d, gp)| {
            for oy in 0..g.oh() {
                for ox in 0..g.ow() {
                    let v = gp[oy * g.ow() + ox] * scale;
                    for ky in 0..g.kernel {
                        let start = (oy * g.stride + ky) * g.w + ox * g.stride;
                        d[start..start + g.kernel].iter_mut().for_each(|x| *x += v);
                    }
                }
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(n: usize, c: usize, h: usize, w: usize, k: usize, s: usize, p: usize) -> Window {
        Window {
            n,
            c,
            h,
            w,
            kernel: k,
            stride: s,
            padding: p,
        }
    }

    #[test]
    fn im2col_reads_windows_with_padding() {
        // One 1x3x2 image, 2x2 kernel, padding 1, stride 2: output 2x2.
        let g = window(1, 1, 3, 2, 2, 2, 1);
        assert_eq!((g.oh(), g.ow()), (2, 2));
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let cols = im2col(&x, &g);
        assert_eq!(
            cols,
            vec![
                0.0, 0.0, 0.0, 1.0, // window at (-1,-1)
                0.0, 0.0, 2.0, 0.0, // (-1, 1)
                0.0, 3.0, 0.0, 5.0, // (1, -1)
                4.0, 0.0, 6.0, 0.0, // (1, 1)
            ]
        );
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> for any x, y.
        let g = window(2, 3, 5, 4, 3, 2, 1);
        let x: Vec<f32> = (0..2 * 3 * 5 * 4)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let cols = im2col(&x, &g);
        let y: Vec<f32> = (0..cols.len()).map(|i| (i as f32 * 0.11).cos()).collect();
        let lhs: f64 = cols.iter().zip(&y).map(|(a, b)| f64::from(a * b)).sum();
        let back = col2im(&y, &g);
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| f64::from(a * b)).sum();
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
    }

    #[test]
    fn max_pool_gives_the_first_maximum_the_gradient() {
        // 1x1x3x3, kernel 2, stride 1 (overlapping windows), a tie in the first window.
        let g = window(1, 1, 3, 3, 2, 1, 0);
        let x = [5.0, 5.0, 1.0, 0.0, 2.0, 7.0, 3.0, 3.0, 3.0];
        assert_eq!(max_pool(&x, &g), vec![5.0, 7.0, 3.0, 7.0]);
        let dx = max_pool_back(&x, &[1.0, 10.0, 100.0, 1000.0], &g);
        assert_eq!(dx, vec![1.0, 0.0, 0.0, 0.0, 0.0, 1010.0, 100.0, 0.0, 0.0]);
        let nan = [1.0, f32::NAN, 2.0, 3.0];
        assert!(max_pool(&nan, &window(1, 1, 2, 2, 2, 2, 0))[0].is_nan());
    }

    #[test]
    fn avg_pool_spreads_the_gradient_over_each_window() {
        // 1x1x3x2 with kernel 2 stride 1: two windows, the middle row shared.
        let g = window(1, 1, 3, 2, 2, 1, 0);
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(avg_pool(&x, &g), vec![2.5, 4.5]);
        let dx = avg_pool_back(&[4.0, 8.0], &g);
        assert_eq!(dx, vec![1.0, 1.0, 3.0, 3.0, 2.0, 2.0]);
    }
}
