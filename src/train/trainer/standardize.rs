//! Per-feature standardisation, learnt on the training set and folded into the first layer at
//! the end, so the exported head takes raw backbone features.

use super::{Dataset, Dense};

pub(crate) struct Standardizer {
    mean: Vec<f32>,
    /// 1 / standard deviation; 0 for a feature that is constant over the training set.
    inv_std: Vec<f32>,
}

impl Standardizer {
    pub(crate) fn identity(dim: usize) -> Standardizer {
        Standardizer {
            mean: vec![0.0; dim],
            inv_std: vec![1.0; dim],
        }
    }

    pub(crate) fn fit(data: &Dataset) -> Standardizer {
        let dim = data.dim();
        let n = data.len() as f64;
        let mut sum = vec![0.0f64; dim];
        for row in data.rows() {
            sum.iter_mut()
                .zip(row)
                .for_each(|(s, &x)| *s += f64::from(x));
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let mut squares = vec![0.0f64; dim];
        for row in data.rows() {
            for ((s, &x), m) in squares.iter_mut().zip(row).zip(&mean) {
                *s += (f64::from(x) - m).powi(2);
            }
        }
        let inv_std = squares
            .iter()
            .zip(&mean)
            .map(|(s, m)| {
                let std = (s / n).sqrt();
                // A feature that never varies in training carries no information; giving it
                // weight 0 (rather than dividing by ~0) keeps a value never seen in training
                // from swinging the logits.
                if std <= 1e-6 * (1.0 + m.abs()) {
                    0.0
                } else {
                    (1.0 / std) as f32
                }
            })
            .collect();
        Standardizer {
            mean: mean.iter().map(|&m| m as f32).collect(),
            inv_std,
        }
    }

    /// The dataset's features, standardised, n × dim row-major.
    pub(crate) fn apply(&self, data: &Dataset) -> Vec<f32> {
        let mut out = Vec::with_capacity(data.len() * data.dim());
        for row in data.rows() {
            out.extend(
                row.iter()
                    .zip(&self.mean)
                    .zip(&self.inv_std)
                    .map(|((&x, &m), &s)| (x - m) * s),
            );
        }
        out
    }

    /// Rewrites a first layer trained on standardised features to take raw ones:
    /// W·((x − μ) ⊙ s) + b = (W ⊙ s)·x + (b − (W ⊙ s)·μ), with the sums in f64.
    pub(crate) fn fold_into(&self, layer: &mut Dense) {
        for (w, b) in layer
            .weights
            .chunks_exact_mut(layer.inputs)
            .zip(&mut layer.bias)
        {
            let mut shift = 0.0f64;
            for ((w, &s), &m) in w.iter_mut().zip(&self.inv_std).zip(&self.mean) {
                let folded = f64::from(*w) * f64::from(s);
                shift += folded * f64::from(m);
                *w = folded as f32;
            }
            *b = (f64::from(*b) - shift) as f32;
        }
    }
}
