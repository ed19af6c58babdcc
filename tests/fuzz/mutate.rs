//! Deterministic mutation of fuzz inputs: a small PRNG and the usual byte-level mutations
//! (bit flips, interesting values, arithmetic, truncation, deletion, duplication and insertion
//! of chunks, splicing two inputs). The same seed gives the same inputs on every machine.

/// SplitMix64: small, fast, and good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (which must not be 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Values that make parsers take their edge cases.
const INTERESTING_8: [u8; 9] = [0, 1, 2, 0x10, 0x7F, 0x80, 0xFE, 0xFF, 0x40];
const INTERESTING_32: [u32; 12] = [
    0,
    1,
    2,
    3,
    0x7F,
    0xFF,
    0x100,
    0xFFFF,
    0x1_0000,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
];

/// A mutation of `input`: one to eight mutations stacked, splicing with `other` among them,
/// the result at most `max_len` bytes.
pub fn mutate(input: &[u8], other: &[u8], rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let mut data = input.to_vec();
    let count = 1 + rng.below(8);
    for _ in 0..count {
        mutate_once(&mut data, other, rng);
    }
    data.truncate(max_len);
    data
}

fn mutate_once(data: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    if data.is_empty() {
        let len = 1 + rng.below(16);
        data.extend((0..len).map(|_| rng.next() as u8));
        return;
    }
    let len = data.len();
    let at = rng.below(len);
    match rng.below(11) {
        0 => data[at] ^= 1 << rng.below(8),
        1 => data[at] = INTERESTING_8[rng.below(INTERESTING_8.len())],
        2 => {
            let delta = 1 + rng.below(16) as u8;
            data[at] = if rng.chance(2) {
                data[at].wrapping_add(delta)
            } else {
                data[at].wrapping_sub(delta)
            };
        }
        3 => {
            // A 16- or 32-bit value, either byte order: sizes and lengths in headers.
            let value = INTERESTING_32[rng.below(INTERESTING_32.len())];
            let bytes = if rng.chance(2) {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            let width = if rng.chance(2) { 2 } else { 4 };
            let bytes = if width == 2 && bytes[..2] == [0, 0] {
                &bytes[2..]
            } else {
                &bytes[..width]
            };
            let end = (at + bytes.len()).min(len);
            data[at..end].copy_from_slice(&bytes[..end - at]);
        }
        4 => data.truncate(at),
        5 => {
            let end = at + 1 + rng.below((len - at).min(256));
            data.drain(at..end);
        }
        6 => {
            // A chunk of the input again, somewhere in it.
            let end = at + 1 + rng.below((len - at).min(256));
            let chunk = data[at..end].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, chunk);
        }
        7 => {
            let count = 1 + rng.below(32);
            let byte = if rng.chance(2) {
                rng.next() as u8
            } else {
                INTERESTING_8[rng.below(INTERESTING_8.len())]
            };
            data.splice(at..at, std::iter::repeat_n(byte, count));
        }
        8 if !other.is_empty() => {
            // Splice: this input's start, the other's end.
            let from = rng.below(other.len());
            data.truncate(at);
            data.extend_from_slice(&other[from..]);
        }
        9 if !other.is_empty() => {
            // A chunk of the other input over this one's bytes.
            let from = rng.below(other.len());
            let n = (1 + rng.below(64)).min(other.len() - from).min(len - at);
            data[at..at + n].copy_from_slice(&other[from..from + n]);
        }
        _ => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(len);
                data[at] = rng.next() as u8;
            }
        }
    }
}

/// The shape of an outcome: `text` with each word that holds a digit (`640`, `0xFFE0`) or a
/// character that is not printable ASCII as `#`, quoted text (`"..."`, `` `...` ``), values in
/// braces or brackets and paths left out, at most 100 characters: errors that differ only in their numbers
/// or in what they quote of the input (a chunk's name, a path) are one outcome.
pub fn shape_of(text: &str) -> String {
    let mut shape = String::new();
    let mut word = String::new();
    // What is being left out: the closing quote, or braces still open, or a path.
    let (mut quote, mut braces, mut path) = (None, 0, false);
    let flush = |word: &mut String, shape: &mut String| {
        if word
            .chars()
            .any(|c| c.is_ascii_digit() || !c.is_ascii_graphic())
        {
            if !shape.ends_with('#') {
                shape.push('#');
            }
        } else {
            shape.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if let Some(q) = quote {
            if c == q {
                shape.push(c);
                quote = None;
            }
            continue;
        }
        if braces > 0 {
            match c {
                '{' | '[' => braces += 1,
                '}' | ']' => braces -= 1,
                _ => {}
            }
            if braces == 0 {
                shape.push(c);
            }
            continue;
        }
        if path {
            if c == ':' || c.is_whitespace() {
                shape.push(c);
                path = false;
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' || !(c.is_ascii_graphic() || c == ' ') {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut shape);
        match c {
            '"' | '`' => quote = Some(c),
            '{' | '[' => braces = 1,
            '/' => path = true,
            _ => {}
        }
        shape.push(c);
    }
    flush(&mut word, &mut shape);
    shape.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_bounded() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = mutate(b"hello, world", b"other input", &mut a, 64);
            let y = mutate(b"hello, world", b"other input", &mut b, 64);
            assert_eq!(x, y);
            assert!(x.len() <= 64);
        }
        assert_eq!(
            shape_of("a 640 × 480 frame, 12 bytes"),
            "a # # # frame, # bytes"
        );
        assert_eq!(
            shape_of("bad marker 0xFFE0 in `x1y`, key \"abc\", ChunkType { type: \\u{b}A }"),
            "bad marker # in ``, key \"\", ChunkType {}"
        );
    }
}
