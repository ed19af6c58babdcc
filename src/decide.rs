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

/// The ranked classes, and the winner when it clears the threshold and is not unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub top: Vec<Guess>,
    /// The best class if its (smoothed) probability is at least the threshold and the result
    /// is not unknown.
    pub label: Option<String>,
    /// The (smoothed) known score is below the head's unknown threshold: the image looks like
    /// none of the head's classes.
    pub unknown: bool,
    /// The (smoothed) known score: the head's largest logit.
    pub known_score: f32,
}

/// What a result is decided on: the (smoothed) probabilities and known score.
#[derive(Debug, Clone, Copy)]
pub struct Scores<'a> {
    pub probabilities: &'a [f32],
    pub known_score: f32,
}

/// What decides: how many classes to rank, the probability a label needs, and the known score
/// below which a result is unknown (a head without one never says unknown).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub top: usize,
    pub threshold: f32,
    pub unknown_below: Option<f32>,
}

pub fn decide(scores: Scores, labels: &[String], rules: Rules) -> Decision {
    let top = top_k(scores.probabilities, labels, rules.top.max(1));
    let unknown = rules
        .unknown_below
        .is_some_and(|below| scores.known_score < below);
    let label = top
        .first()
        .filter(|best| best.score >= rules.threshold && !unknown)
        .map(|best| best.label.clone());
    Decision {
        top,
        label,
        unknown,
        known_score: scores.known_score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decides on probabilities alone, with a head that never says unknown.
    fn on(probabilities: &[f32], labels: &[String], top: usize, threshold: f32) -> Decision {
        let scores = Scores {
            probabilities,
            known_score: 0.0,
        };
        let rules = Rules {
            top,
            threshold,
            unknown_below: None,
        };
        decide(scores, labels, rules)
    }

    #[test]
    fn one_noisy_frame_does_not_flip_a_smoothed_result() {
        let labels: Vec<String> = ["cat", "dog"].map(String::from).to_vec();
        let mut smoother = Smoother::new(3);
        smoother.push(&[0.9, 0.1]);
        smoother.push(&[0.8, 0.2]);
        let mean = smoother.push(&[0.1, 0.9]).to_vec();
        assert!((mean[0] - 0.6).abs() < 1e-6 && (mean[1] - 0.4).abs() < 1e-6);
        assert_eq!(on(&mean, &labels, 1, 0.5).label.as_deref(), Some("cat"));
        // The window slides: two more "dog" frames and the decision follows the scene.
        smoother.push(&[0.1, 0.9]);
        let mean = smoother.push(&[0.1, 0.9]).to_vec();
        assert_eq!(on(&mean, &labels, 1, 0.5).label.as_deref(), Some("dog"));
    }

    #[test]
    fn below_the_threshold_there_is_no_label() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let decision = on(&[0.4, 0.35, 0.25], &labels, 2, 0.5);
        assert_eq!(decision.label, None);
        assert_eq!(decision.top.len(), 2);
        assert_eq!(
            on(&[0.4, 0.35, 0.25], &labels, 2, 0.4).label.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn a_known_score_below_the_heads_threshold_is_unknown_and_has_no_label() {
        let labels: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let rules = Rules {
            top: 2,
            threshold: 0.5,
            unknown_below: Some(3.0),
        };
        let scores = |known_score| Scores {
            probabilities: &[0.9, 0.1],
            known_score,
        };
        let unknown = decide(scores(2.5), &labels, rules);
        assert!(unknown.unknown);
        assert_eq!(unknown.label, None);
        assert_eq!(unknown.top[0].label, "a", "the best guess is still ranked");
        let known = decide(scores(3.0), &labels, rules);
        assert!(!known.unknown);
        assert_eq!(known.label.as_deref(), Some("a"));
        // A head without a threshold never says unknown.
        let rules = Rules {
            unknown_below: None,
            ..rules
        };
        assert!(!decide(scores(-100.0), &labels, rules).unknown);
    }

    #[test]
    fn a_window_of_one_is_the_frame_itself() {
        let mut smoother = Smoother::new(1);
        smoother.push(&[0.9, 0.1]);
        assert_eq!(smoother.push(&[0.2, 0.8]), [0.2, 0.8]);
    }
}
