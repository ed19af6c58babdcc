//! Ranking a probability vector into labelled guesses.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guess {
    pub label: String,
    pub index: usize,
    pub score: f32,
}

/// The `k` most probable classes, best first (ties keep the lower class index first).
pub fn top_k(probabilities: &[f32], labels: &[String], k: usize) -> Vec<Guess> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| {
        probabilities[b]
            .total_cmp(&probabilities[a])
            .then(a.cmp(&b))
    });
    order
        .into_iter()
        .take(k)
        .map(|index| Guess {
            label: labels[index].clone(),
            index,
            score: probabilities[index],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_best_first() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let top = top_k(&[0.2, 0.5, 0.3], &labels, 2);
        assert_eq!(
            top.iter().map(|g| g.label.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert_eq!(top[0].index, 1);
        assert_eq!(top_k(&[0.2, 0.5, 0.3], &labels, 10).len(), 3);
    }
}
