//! SplitMix64: a small, fast, well-mixed generator whose output depends only on the seed, so a
//! run can be repeated bit for bit without pulling in `rand` (whose streams may change between
//! releases).

pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// An independent generator for one use (initialisation, shuffling, dropout), so that e.g.
    /// changing the dropout rate does not change the order the examples are seen in.
    pub(crate) fn stream(seed: u64, purpose: u64) -> SplitMix64 {
        let mut mixer = SplitMix64::new(seed ^ purpose.wrapping_mul(0xD1B5_4A32_D192_ED03));
        SplitMix64::new(mixer.next_u64())
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 24 bits (all an `f32` mantissa holds).
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in [-limit, limit).
    pub(crate) fn symmetric(&mut self, limit: f32) -> f32 {
        (2.0 * self.next_f32() - 1.0) * limit
    }

    /// Uniform in 0..n (Lemire's multiply-shift; the bias, below n / 2^64, is immaterial here).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher–Yates.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64_sequence() {
        // First outputs for seed 1234567 from Vigna's reference splitmix64.c.
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
        assert_eq!(rng.next_u64(), 9817491932198370423);
    }

    #[test]
    fn shuffles_into_a_permutation_and_draws_in_range() {
        let mut rng = SplitMix64::new(7);
        let mut items: Vec<usize> = (0..100).collect();
        rng.shuffle(&mut items);
        assert_ne!(items, (0..100).collect::<Vec<_>>());
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        for _ in 0..1000 {
            assert!(rng.below(3) < 3);
            let u = rng.next_f32();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
