//! From per-frame probabilities to a decision: temporal smoothing (and the averaging of a
//! triggered burst, the same mean over a window emptied for each press) and a confidence
//! threshold.

use std::collections::VecDeque;

use crate::scores::{Guess, top_k};

/// The mean of the last `window` probability vectors: one noisy frame moves the result by at
/// most 1/`window` of its weight, so a decision does not flip on a single frame.
pub struct Smoother {
    window: usize,
    recent: VecDeque<Vec<f32>>,
    sum: Vec<f32>,
    mean: Vec<f32>,
}

impl Smoother {
    pub fn new(window: usize) -> Smoother {
        Smoother {
            window: window.max(1),
            recent: VecDeque::new(),
            sum: Vec::new(),
            mean: Vec::new(),
        }
    }

    /// Adds a frame's probabilities and returns the mean over the window.
    pub fn push(&mut self, probabilities: &[f32]) -> &[f32] {
        if self.sum.len() != probabilities.len() {
            self.recent.clear();
            self.sum = vec![0.0; probabilities.len()];
        }
        let mut entry = if self.recent.len() == self.window {
            let oldest = self.recent.pop_front().unwrap();
            self.sum.iter_mut().zip(&oldest).for_each(|(s, o)| *s -= o);
            oldest
        } else {
            Vec::with_capacity(probabilities.len())
        };
        entry.clear();
        entry.extend_from_slice(probabilities);
        self.sum.iter_mut().zip(&entry).for_each(|(s, p)| *s += p);
        self.recent.push_back(entry);
        let n = self.recent.len() as f32;
        self.mean.clear();
        self.mean.extend(self.sum.iter().map(|s| s / n));
        &self.mean
    }

    /// The mean of the frames pushed since the window was last emptied (empty before any).
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Empties the window: the next push starts a new mean.
    pub fn clear(&mut self) {
        self.recent.clear();
        self.sum.clear();
        self.mean.clear();
    }
}

/// The ranked classes, and the winner when it clears the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub top: Vec<Guess>,
    /// The best class if its (smoothed) probability is at least the threshold.
    pub label: Option<String>,
}

pub fn decide(probabilities: &[f32], labels: &[String], top: usize, threshold: f32) -> Decision {
    let top = top_k(probabilities, labels, top.max(1));
    let label = top
        .first()
        .filter(|best| best.score >= threshold)
        .map(|best| best.label.clone());
    Decision { top, label }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_noisy_frame_does_not_flip_a_smoothed_result() {
        let labels: Vec<String> = ["cat", "dog"].map(String::from).to_vec();
        let mut smoother = Smoother::new(3);
        smoother.push(&[0.9, 0.1]);
        smoother.push(&[0.8, 0.2]);
        let mean = smoother.push(&[0.1, 0.9]).to_vec();
        assert!((mean[0] - 0.6).abs() < 1e-6 && (mean[1] - 0.4).abs() < 1e-6);
        assert_eq!(decide(&mean, &labels, 1, 0.5).label.as_deref(), Some("cat"));
        // The window slides: two more "dog" frames and the decision follows the scene.
        smoother.push(&[0.1, 0.9]);
        let mean = smoother.push(&[0.1, 0.9]).to_vec();
        assert_eq!(decide(&mean, &labels, 1, 0.5).label.as_deref(), Some("dog"));
    }

    #[test]
    fn below_the_threshold_there_is_no_label() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let decision = decide(&[0.4, 0.35, 0.25], &labels, 2, 0.5);
        assert_eq!(decision.label, None);
        assert_eq!(decision.top.len(), 2);
        assert_eq!(
            decide(&[0.4, 0.35, 0.25], &labels, 2, 0.4).label.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn a_window_of_one_is_the_frame_itself() {
        let mut smoother = Smoother::new(1);
        smoother.push(&[0.9, 0.1]);
        assert_eq!(smoother.push(&[0.2, 0.8]), [0.2, 0.8]);
    }
}
