//! The arithmetic of training: dense layers over a batch, softmax cross-entropy, and the
//! backward pass. Every loop runs in a fixed order on one thread, so the same inputs give the
//! same bits.

use super::{Dense, Head};
use crate::train::rng::SplitMix64;

/// Buffers reused from batch to batch, so a training step allocates nothing.
#[derive(Default)]
pub(crate) struct Workspace {
    hidden_pre: Vec<f32>,
    hidden: Vec<f32>,
    /// Per hidden unit and example: 0 if dropped, 1 / (1 - rate) if kept.
    keep: Vec<f32>,
    logits: Vec<f32>,
    d_logits: Vec<f32>,
    d_hidden: Vec<f32>,
}

impl Workspace {
    /// The logits of the last forward pass, row after row.
    pub(crate) fn logits(&self) -> &[f32] {
        &self.logits
    }
}

/// Inverted dropout on the hidden layer: kept units are scaled by 1 / (1 - rate) during
/// training, so nothing changes at inference.
pub(crate) struct Dropout<'a> {
    pub(crate) rate: f32,
    pub(crate) rng: &'a mut SplitMix64,
}

/// The loss of one batch, summed over its examples.
pub(crate) struct BatchLoss {
    /// Σ weight(label) · −ln p(label).
    pub(crate) weighted: f64,
    pub(crate) correct: usize,
}

/// Forward and backward over a batch of `labels.len()` rows of `x`. The loss is
/// (1 / batch) Σ weight(label) · −ln softmax(logits)(label); `grads` receives its gradient
/// (weight decay is not part of it: the optimiser applies it). With balanced class weights the
/// weights average 1 over the training set, so the loss keeps the scale of plain cross-entropy.
pub(crate) fn gradient(
    head: &Head,
    x: &[f32],
    labels: &[usize],
    class_weights: &[f32],
    dropout: Option<Dropout>,
    grads: &mut Head,
    ws: &mut Workspace,
) -> BatchLoss {
    let rows = labels.len();
    let input = forward(head, x, rows, dropout, ws);
    let loss = softmax_cross_entropy(
        &ws.logits,
        labels,
        class_weights,
        1.0 / rows as f32,
        &mut ws.d_logits,
    );

    let Workspace {
        hidden_pre,
        hidden,
        keep,
        d_logits,
        d_hidden,
        ..
    } = ws;
    let output_input = if head.hidden.is_some() {
        &hidden[..]
    } else {
        input
    };
    weight_gradient(d_logits, output_input, rows, &mut grads.output);
    if let (Some(layer), Some(grad)) = (&head.hidden, &mut grads.hidden) {
        input_gradient(d_logits, &head.output, rows, d_hidden);
        let dropped = !keep.is_empty();
        for (i, (d, &pre)) in d_hidden.iter_mut().zip(hidden_pre.iter()).enumerate() {
            let through = if dropped { keep[i] } else { 1.0 };
            *d = if pre > 0.0 { *d * through } else { 0.0 };
        }
        debug_assert_eq!(layer.outputs, grad.outputs);
        weight_gradient(d_hidden, x, rows, grad);
    }
    loss
}

/// The loss and correct count of `labels.len()` rows of `x`, without dropout or gradients.
pub(crate) fn evaluate(
    head: &Head,
    x: &[f32],
    labels: &[usize],
    class_weights: &[f32],
    ws: &mut Workspace,
) -> BatchLoss {
    forward(head, x, labels.len(), None, ws);
    softmax_cross_entropy(&ws.logits, labels, class_weights, 0.0, &mut ws.d_logits)
}

/// Logits for `rows` rows of `x` into `ws.logits`; returns the input of the output layer when
/// there is no hidden layer (else that input is `ws.hidden`).
fn forward<'x>(
    head: &Head,
    x: &'x [f32],
    rows: usize,
    dropout: Option<Dropout>,
    ws: &mut Workspace,
) -> &'x [f32] {
    ws.keep.clear();
    let Some(layer) = &head.hidden else {
        affine(&head.output, x, rows, &mut ws.logits);
        return x;
    };
    affine(layer, x, rows, &mut ws.hidden_pre);
    ws.hidden.clear();
    ws.hidden.extend(ws.hidden_pre.iter().map(|&z| z.max(0.0)));
    if let Some(Dropout { rate, rng }) = dropout
        && rate > 0.0
    {
        let scale = 1.0 / (1.0 - rate);
        ws.keep.extend((0..ws.hidden.len()).map(
            |_| {
                if rng.next_f32() < rate { 0.0 } else { scale }
            },
        ));
        ws.hidden
            .iter_mut()
            .zip(&ws.keep)
            .for_each(|(h, k)| *h *= k);
    }
    affine(&head.output, &ws.hidden, rows, &mut ws.logits);
    x
}

/// out[r, o] = bias[o] + Σ_i x[r, i] · weights[o, i]: ONNX Gemm with transB = 1.
pub(crate) fn affine(layer: &Dense, x: &[f32], rows: usize, out: &mut Vec<f32>) {
    debug_assert_eq!(x.len(), rows * layer.inputs);
    out.clear();
    out.resize(rows * layer.outputs, 0.0);
    // Output units outermost: a weight row stays in cache while the batch streams past it.
    for (o, (w, &b)) in layer
        .weights
        .chunks_exact(layer.inputs)
        .zip(&layer.bias)
        .enumerate()
    {
        for (r, xr) in x.chunks_exact(layer.inputs).enumerate() {
            out[r * layer.outputs + o] = b + dot(w, xr);
        }
    }
}

/// Softmax cross-entropy per row; with `scale` > 0 also writes
/// d_logits = scale · weight(label) · (softmax − onehot(label)).
fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[usize],
    class_weights: &[f32],
    scale: f32,
    d_logits: &mut Vec<f32>,
) -> BatchLoss {
    let classes = class_weights.len();
    d_logits.clear();
    if scale > 0.0 {
        d_logits.resize(logits.len(), 0.0);
    }
    let mut weighted = 0.0f64;
    let mut correct = 0;
    for (r, (row, &label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let (best, max) = argmax(row);
        correct += usize::from(best == label);
        let sum: f32 = row.iter().map(|&z| (z - max).exp()).sum();
        let log_sum = sum.ln();
        let weight = class_weights[label];
        weighted += f64::from(weight * (log_sum - (row[label] - max)));
        if scale > 0.0 {
            let d = &mut d_logits[r * classes..(r + 1) * classes];
            let factor = scale * weight;
            for (d, &z) in d.iter_mut().zip(row) {
                *d = factor * ((z - max).exp() / sum);
            }
            d[label] -= factor;
        }
    }
    BatchLoss { weighted, correct }
}

/// The first index of the largest value, and that value.
pub(crate) fn argmax(row: &[f32]) -> (usize, f32) {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
}

/// grad.weights = d_outᵀ · input and grad.bias = Σ_rows d_out, for `rows` rows.
fn weight_gradient(d_out: &[f32], input: &[f32], rows: usize, grad: &mut Dense) {
    let (inputs, outputs) = (grad.inputs, grad.outputs);
    debug_assert_eq!(d_out.len(), rows * outputs);
    debug_assert_eq!(input.len(), rows * inputs);
    grad.weights.fill(0.0);
    grad.bias.fill(0.0);
    for (o, (gw, gb)) in grad
        .weights
        .chunks_exact_mut(inputs)
        .zip(grad.bias.iter_mut())
        .enumerate()
    {
        for (r, xr) in input.chunks_exact(inputs).enumerate() {
            let d = d_out[r * outputs + o];
            // ReLU and dropout zero many of these: skipping them is exact, not an estimate.
            if d != 0.0 {
                *gb += d;
                axpy(gw, d, xr);
            }
        }
    }
}

/// d_in = d_out · weights: the gradient with respect to the layer's input.
fn input_gradient(d_out: &[f32], layer: &Dense, rows: usize, d_in: &mut Vec<f32>) {
    d_in.clear();
    d_in.resize(rows * layer.inputs, 0.0);
    for (r, dr) in d_in.chunks_exact_mut(layer.inputs).enumerate() {
        let d_row = &d_out[r * layer.outputs..(r + 1) * layer.outputs];
        for (&d, w) in d_row.iter().zip(layer.weights.chunks_exact(layer.inputs)) {
            if d != 0.0 {
                axpy(dr, d, w);
            }
        }
    }
}

/// Σ a[i]·b[i] with eight running sums: the fixed grouping lets the compiler use SIMD without
/// reordering anything, so the result is the same on every run.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (a8, a_tail) = a.as_chunks::<8>();
    let (b8, b_tail) = b.as_chunks::<8>();
    let mut acc = [0.0f32; 8];
    for (x, y) in a8.iter().zip(b8) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

/// y += alpha · x.
fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_head(dim: usize, hidden: Option<usize>, classes: usize, seed: u64) -> Head {
        let mut rng = SplitMix64::new(seed);
        let mut dense = |inputs: usize, outputs: usize| Dense {
            inputs,
            outputs,
            weights: (0..inputs * outputs).map(|_| rng.symmetric(1.0)).collect(),
            bias: (0..outputs).map(|_| rng.symmetric(0.5)).collect(),
        };
        match hidden {
            None => Head {
                hidden: None,
                output: dense(dim, classes),
            },
            Some(units) => Head {
                hidden: Some(dense(dim, units)),
                output: dense(units, classes),
            },
        }
    }

    fn parameters_mut(head: &mut Head) -> Vec<&mut f32> {
        let mut all = Vec::new();
        for layer in head
            .hidden
            .iter_mut()
            .chain(std::iter::once(&mut head.output))
        {
            all.extend(layer.weights.iter_mut());
            all.extend(layer.bias.iter_mut());
        }
        all
    }

    /// The mean weighted loss, in f64 from the f32 forward pass.
    fn loss(head: &Head, x: &[f32], labels: &[usize], weights: &[f32]) -> f64 {
        let mut ws = Workspace::default();
        evaluate(head, x, labels, weights, &mut ws).weighted / labels.len() as f64
    }

    fn check_gradient(hidden: Option<usize>) {
        let (dim, classes, rows) = (4, 3, 6);
        let mut rng = SplitMix64::new(99);
        let x: Vec<f32> = (0..rows * dim).map(|_| rng.symmetric(1.0)).collect();
        let labels = [0, 1, 2, 1, 0, 2];
        let weights = [0.5, 2.0, 1.25];
        let mut head = random_head(dim, hidden, classes, 5);

        let mut grads = head.zeros_like();
        let mut ws = Workspace::default();
        gradient(&head, &x, &labels, &weights, None, &mut grads, &mut ws);
        let analytic: Vec<f32> = parameters_mut(&mut grads).into_iter().map(|g| *g).collect();

        let eps = 1e-3f32;
        let count = analytic.len();
        for (i, &expected) in analytic.iter().enumerate().take(count) {
            let original = *parameters_mut(&mut head)[i];
            *parameters_mut(&mut head)[i] = original + eps;
            let plus = loss(&head, &x, &labels, &weights);
            *parameters_mut(&mut head)[i] = original - eps;
            let minus = loss(&head, &x, &labels, &weights);
            *parameters_mut(&mut head)[i] = original;
            let numeric = (plus - minus) / (2.0 * f64::from(eps));
            let error = (numeric - f64::from(expected)).abs();
            assert!(
                error <= 2e-3 * (1.0 + numeric.abs()),
                "parameter {i} of {count}: analytic {expected}, finite difference {numeric}"
            );
        }
    }

    #[test]
    fn linear_gradient_matches_finite_differences() {
        check_gradient(None);
    }

    #[test]
    fn hidden_gradient_matches_finite_differences() {
        check_gradient(Some(5));
    }

    #[test]
    fn dot_handles_tails_and_matches_a_plain_sum() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.25).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-4);
    }

    #[test]
    fn dropout_zeroes_about_the_rate_and_scales_the_rest() {
        let head = random_head(8, Some(1000), 2, 1);
        let x = vec![0.3f32; 8];
        let mut rng = SplitMix64::new(3);
        let mut ws = Workspace::default();
        forward(
            &head,
            &x,
            1,
            Some(Dropout {
                rate: 0.25,
                rng: &mut rng,
            }),
            &mut ws,
        );
        let dropped = ws.keep.iter().filter(|&&k| k == 0.0).count();
        assert!((200..300).contains(&dropped), "{dropped} of 1000 dropped");
        assert!(ws.keep.iter().all(|&k| k == 0.0 || k == 1.0 / 0.75));
    }
}
