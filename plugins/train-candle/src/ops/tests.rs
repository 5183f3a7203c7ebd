//! Each operation against a direct reference and its gradient against finite differences.

use super::*;
use candle_core::{Device, Var};

fn seq(n: usize, scale: f32) -> Vec<f32> {
    // Distinct, irregular values (no ties for max pooling).
    (0..n)
        .map(|i| ((i * 7919 % 101) as f32 / 101.0 - 0.5) * scale + i as f32 * 1e-3)
        .collect()
}

/// `sum(f(x) * r)` and its gradient by candle, against central differences of the same.
fn gradient_check(shape: &[usize], f: impl Fn(&Tensor) -> CResult<Tensor>) {
    let n: usize = shape.iter().product();
    let x0 = seq(n, 2.0);
    let out_len = f(&Tensor::from_slice(&x0, shape, &Device::Cpu).unwrap())
        .unwrap()
        .elem_count();
    let r = Tensor::from_vec(seq(out_len, 1.0), out_len, &Device::Cpu).unwrap();
    let objective = |x: &Tensor| {
        f(x).unwrap()
            .flatten_all()
            .unwrap()
            .mul(&r)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let var = Var::from_slice(&x0, shape, &Device::Cpu).unwrap();
    let grads = objective(var.as_tensor()).backward().unwrap();
    let analytic = grads
        .get(var.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let h = 1e-2f32;
    for i in 0..n {
        let at = |delta: f32| {
            let mut x = x0.clone();
            x[i] += delta;
            let t = Tensor::from_slice(&x, shape, &Device::Cpu).unwrap();
            f64::from(objective(&t).to_scalar::<f32>().unwrap())
        };
        let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
        let a = f64::from(analytic[i]);
        assert!(
            (a - numeric).abs() <= 2e-2 * (1.0 + numeric.abs()),
            "element {i}: analytic {a} vs numeric {numeric}"
        );
    }
}

/// A direct convolution in f64: `[n, c, h, w] * [f, c, k, k]`.
fn direct_conv(
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    ws: [usize; 4],
    b: &[f32],
    s: usize,
    p: usize,
) -> Vec<f32> {
    let [n, c, h, wd] = xs;
    let [f, _, k, _] = ws;
    let oh = (h + 2 * p - k) / s + 1;
    let ow = (wd + 2 * p - k) / s + 1;
    let mut out = Vec::new();
    for ni in 0..n {
        for fi in 0..f {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = f64::from(b[fi]);
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (
                                    (oy * s + ky) as isize - p as isize,
                                    (ox * s + kx) as isize - p as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x[((ni * c + ci) * h + iy as usize) * wd + ix as usize];
                                let wv = w[((fi * c + ci) * k + ky) * k + kx];
                                acc += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    out.push(acc as f32);
                }
            }
        }
    }
    out
}

#[test]
fn conv2d_matches_a_direct_convolution_on_a_non_square_strided_input() {
    let (xs, ws) = ([2, 3, 7, 5], [4, 3, 3, 3]);
    let x = seq(xs.iter().product(), 1.0);
    let w = seq(ws.iter().product(), 0.5);
    let b = vec![0.1, -0.2, 0.3, 0.0];
    let dev = &Device::Cpu;
    let got = conv2d(
        &Tensor::from_slice(&x, xs.as_slice(), dev).unwrap(),
        &Tensor::from_slice(&w, ws.as_slice(), dev).unwrap(),
        &Tensor::from_slice(&b, 4, dev).unwrap(),
        2,
        1,
    )
    .unwrap();
    assert_eq!(got.dims(), &[2, 4, 4, 3]);
    let want = direct_conv(&x, xs, &w, ws, &b, 2, 1);
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{g} vs {w}");
    }
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let dev = &Device::Cpu;
    let w = Tensor::from_vec(seq(2 * 2 * 3 * 3, 0.7), (2, 2, 3, 3), dev).unwrap();
    let b = Tensor::from_vec(vec![0.05f32, -0.1], 2, dev).unwrap();
    // Input gradient, stride 2 with padding on a 5x4 image.
    gradient_check(&[1, 2, 5, 4], |x| conv2d(x, &w, &b, 2, 1));
    // Weight gradient.
    let x = Tensor::from_vec(seq(2 * 2 * 5 * 4, 1.0), (2, 2, 5, 4), dev).unwrap();
    gradient_check(&[2, 2, 3, 3], |w| conv2d(&x, w, &b, 2, 1));
}

#[test]
fn pooling_gradients_match_finite_differences() {
    gradient_check(&[2, 2, 5, 4], |x| pool(x, true, 2, 1));
    gradient_check(&[1, 2, 5, 5], |x| pool(x, true, 2, 2));
    gradient_check(&[2, 1, 5, 4], |x| pool(x, false, 3, 2));
}

#[test]
fn activations_match_their_definitions_and_gradients() {
    let dev = &Device::Cpu;
    let x = Tensor::from_vec(vec![-2.0f32, -0.0, 0.0, 0.5, 3.0], 5, dev).unwrap();
    let v = |t: CResult<Tensor>| t.unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(v(relu(&x)), vec![0.0, 0.0, 0.0, 0.5, 3.0]);
    assert_eq!(v(leaky_relu(&x, 0.1)), vec![-0.2, 0.0, 0.0, 0.5, 3.0]);
    let g = v(gelu(&x));
    // GELU(0.5) = 0.5 * Phi(0.5) = 0.345731...
    assert!((g[3] - 0.345_731_3).abs() < 1e-6, "{g:?}");
    let s = v(sigmoid(&x));
    assert!((s[0] - 0.119_202_92).abs() < 1e-7 && s[2] == 0.5);
    // No overflow far out.
    let far = Tensor::from_vec(vec![-200.0f32, 200.0], 2, dev).unwrap();
    assert_eq!(v(sigmoid(&far)), vec![0.0, 1.0]);

    // ReLU's and LeakyReLU's gradient at exactly 0 is PyTorch's: 0 and the slope.
    let var = Var::from_vec(vec![0.0f32, 1.0, -1.0], 3, dev).unwrap();
    let grads = leaky_relu(var.as_tensor(), 0.25)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        v(Ok(grads.get(var.as_tensor()).unwrap().clone())),
        vec![0.25, 1.0, 0.25]
    );
    let grads = relu(var.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        v(Ok(grads.get(var.as_tensor()).unwrap().clone())),
        vec![0.0, 1.0, 0.0]
    );

    gradient_check(&[3, 4], gelu);
    gradient_check(&[3, 4], tanh);
    gradient_check(&[3, 4], |x| leaky_relu(x, 0.1));
    let mask: Vec<f32> = (0..12)
        .map(|i| f32::from(u8::from(i % 3 != 0)) * 1.5)
        .collect();
    gradient_check(&[3, 4], |x| masked(x, mask.clone()));
    gradient_check(&[3, 4], sigmoid);
    gradient_check(&[3, 4], softmax);
    gradient_check(&[3, 4], log_softmax);
}

#[test]
fn softmax_rows_sum_to_one_even_for_large_logits() {
    let x = Tensor::from_vec(
        vec![1000.0f32, 1001.0, 999.0, -5.0, 0.0, 5.0],
        (2, 3),
        &Device::Cpu,
    )
    .unwrap();
    for row in softmax(&x).unwrap().to_vec2::<f32>().unwrap() {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{row:?}");
    }
    let l = log_softmax(&x).unwrap().to_vec2::<f32>().unwrap();
    assert!((l[0][1] - (-0.407_605_97)).abs() < 1e-5, "{l:?}");
}
