//! Adam and SGD with momentum, both with decoupled weight decay (AdamW, Loshchilov & Hutter
//! 2019): each step first shrinks every weight by lr · weight_decay, then takes the gradient
//! step. Biases are not decayed. For plain SGD this equals an L2 penalty of
//! weight_decay / 2 · ‖w‖²; for Adam it does not, and is the better-behaved of the two.

use super::{Dense, Head, Optimizer};

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

pub(crate) struct OptimizerState {
    optimizer: Optimizer,
    weight_decay: f32,
    steps: i32,
    /// Per tensor, in `tensors` order: Adam's first moment or SGD's velocity.
    first: Vec<Vec<f32>>,
    /// Per tensor: Adam's second moment (empty for SGD).
    second: Vec<Vec<f32>>,
}

/// A head's tensors in a fixed order, each with whether weight decay applies to it.
fn tensors(head: &mut Head) -> impl Iterator<Item = (&mut Vec<f32>, bool)> {
    head.hidden
        .iter_mut()
        .chain(std::iter::once(&mut head.output))
        .flat_map(|Dense { weights, bias, .. }| [(weights, true), (bias, false)])
}

fn gradients(grads: &Head) -> impl Iterator<Item = &[f32]> {
    grads
        .hidden
        .iter()
        .chain(std::iter::once(&grads.output))
        .flat_map(|Dense { weights, bias, .. }| [&weights[..], &bias[..]])
}

impl OptimizerState {
    pub(crate) fn new(optimizer: Optimizer, weight_decay: f32, head: &mut Head) -> OptimizerState {
        let zeros: Vec<Vec<f32>> = tensors(head).map(|(t, _)| vec![0.0; t.len()]).collect();
        let second = match optimizer {
            Optimizer::Adam { .. } => zeros.clone(),
            Optimizer::Sgd { .. } => Vec::new(),
        };
        OptimizerState {
            optimizer,
            weight_decay,
            steps: 0,
            first: zeros,
            second,
        }
    }

    pub(crate) fn step(&mut self, head: &mut Head, grads: &Head) {
        self.steps += 1;
        match self.optimizer {
            Optimizer::Adam { lr } => {
                let correction1 = 1.0 - BETA1.powi(self.steps);
                let correction2 = 1.0 - BETA2.powi(self.steps);
                for (k, ((param, decays), grad)) in tensors(head).zip(gradients(grads)).enumerate()
                {
                    let shrink = if decays {
                        1.0 - lr * self.weight_decay
                    } else {
                        1.0
                    };
                    let (m, v) = (&mut self.first[k], &mut self.second[k]);
                    for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(m).zip(v) {
                        *m = BETA1 * *m + (1.0 - BETA1) * g;
                        *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                        let m_hat = *m / correction1;
                        let v_hat = *v / correction2;
                        *p = *p * shrink - lr * m_hat / (v_hat.sqrt() + EPSILON);
                    }
                }
            }
            Optimizer::Sgd { lr, momentum } => {
                for (k, ((param, decays), grad)) in tensors(head).zip(gradients(grads)).enumerate()
                {
                    let shrink = if decays {
                        1.0 - lr * self.weight_decay
                    } else {
                        1.0
                    };
                    for ((p, &g), velocity) in param.iter_mut().zip(grad).zip(&mut self.first[k]) {
                        *velocity = momentum * *velocity + g;
                        *p = *p * shrink - lr * *velocity;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_weight(w: f32, b: f32) -> Head {
        Head {
            hidden: None,
            output: Dense {
                inputs: 1,
                outputs: 1,
                weights: vec![w],
                bias: vec![b],
            },
        }
    }

    #[test]
    fn adam_first_step_moves_each_parameter_by_lr_against_its_gradient() {
        let mut head = one_weight(1.0, 1.0);
        let grads = one_weight(0.5, -2.0);
        let mut state = OptimizerState::new(Optimizer::Adam { lr: 0.1 }, 0.0, &mut head);
        state.step(&mut head, &grads);
        // Bias-corrected m̂ / √v̂ is sign(g) on the first step.
        assert!((head.output.weights[0] - 0.9).abs() < 1e-6);
        assert!((head.output.bias[0] - 1.1).abs() < 1e-6);
    }

    #[test]
    fn decay_shrinks_weights_but_not_biases() {
        let mut head = one_weight(2.0, 2.0);
        let grads = one_weight(0.0, 0.0);
        let mut state = OptimizerState::new(
            Optimizer::Sgd {
                lr: 0.1,
                momentum: 0.9,
            },
            0.5,
            &mut head,
        );
        state.step(&mut head, &grads);
        assert!((head.output.weights[0] - 2.0 * (1.0 - 0.1 * 0.5)).abs() < 1e-6);
        assert_eq!(head.output.bias[0], 2.0);
    }

    #[test]
    fn sgd_momentum_accumulates_velocity() {
        let mut head = one_weight(0.0, 0.0);
        let grads = one_weight(1.0, 0.0);
        let mut state = OptimizerState::new(
            Optimizer::Sgd {
                lr: 0.1,
                momentum: 0.5,
            },
            0.0,
            &mut head,
        );
        state.step(&mut head, &grads);
        state.step(&mut head, &grads);
        // Velocities 1 then 1.5: w = -0.1 - 0.15.
        assert!((head.output.weights[0] + 0.25).abs() < 1e-6);
    }
}
