//! `strings`: the scaling benchmark's short-string processing. Each thread
//! tokenises a generated text into upper-cased `String`s, formats each as
//! `TOKEN#len`, joins them with commas, then splits the joined string back
//! and parses and checks every piece. The short strings (two per word, all
//! alive until the round ends) come from the variant's source; the one long
//! joined string per round comes from the global allocator in every variant.
//! Every short string is sized once (`reserve` of its final length: one
//! allocation for `plain`, none for a pool object that has the capacity
//! already). One pool, shared by all threads.

use super::{on_threads, share, Rng, Spec};
use crate::variants::{Kind, Source};
use std::fmt::Write as _;

/// What the workload does and counts.
pub const ABOUT: &str = "tokenise text into upper-cased Strings, format each as TOKEN#len, join, split back and check; 2 short Strings per word, 2000 words alive per round (ops = strings made)";

/// Strings made in a default-size run, split among the threads.
const STRINGS: usize = 2_500_000;
/// Words in each thread's text.
const WORDS: usize = 2000;

const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ne", "tra", "sho", "al", "loc", "ver", "in", "qu", "ep", "ost", "ra", "ti",
    "um",
];

fn text(rng: &mut Rng) -> String {
    let mut s = String::new();
    for w in 0..WORDS {
        let syllables = rng.range(1, 4);
        for _ in 0..syllables {
            s.push_str(SYLLABLES[rng.below(SYLLABLES.len())]);
        }
        s.push_str(match w % 13 {
            3 => ", ",
            12 => ". ",
            _ => " ",
        });
    }
    s
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

fn worker<S: Source<String>>(src: &S, t: usize, strings: usize) -> Result<u64, String> {
    let mut rng = Rng::new(t as u64 + 5);
    let text = text(&mut rng);
    let n_words = words(&text).count();
    // What the joined string must look like.
    let expected_len: usize = words(&text)
        .map(|w| w.len() + 1 + digits(w.len()))
        .sum::<usize>()
        + n_words
        - 1;
    let per_round = 2 * n_words + 1;
    let rounds = (strings / per_round).max(1);
    // The handle vectors are reused: only the strings are the workload.
    let mut tokens = Vec::with_capacity(n_words);
    let mut formatted = Vec::with_capacity(n_words);
    for _ in 0..rounds {
        tokens.extend(words(&text).map(|w| {
            src.fill(|s| {
                s.reserve(w.len());
                s.push_str(w);
                s.make_ascii_uppercase();
            })
        }));
        formatted.extend(tokens.iter().map(|token| {
            src.fill(|s| {
                src.read(token, |token| {
                    s.reserve(token.len() + 1 + digits(token.len()));
                    let _ = write!(s, "{token}#{}", token.len());
                })
            })
        }));
        let mut joined = String::with_capacity(expected_len);
        for (i, f) in formatted.drain(..).enumerate() {
            if i > 0 {
                joined.push(',');
            }
            src.read(&f, |f| joined.push_str(f));
            src.free(f);
        }
        if joined.len() != expected_len {
            return Err(format!(
                "strings: joined {} bytes, expected {expected_len}",
                joined.len()
            ));
        }
        let mut pieces = 0;
        for (piece, token) in joined.split(',').zip(&tokens) {
            let (word, len) = piece
                .split_once('#')
                .ok_or_else(|| format!("strings: bad piece {piece:?}"))?;
            let len: usize = len
                .parse()
                .map_err(|_| format!("strings: bad length in {piece:?}"))?;
            if !src.read(token, |token| word == token && len == token.len()) {
                return Err(format!("strings: piece {piece:?} does not match its token"));
            }
            pieces += 1;
        }
        if pieces != n_words {
            return Err(format!("strings: {pieces} pieces for {n_words} words"));
        }
        tokens.drain(..).for_each(|h| src.free(h));
    }
    Ok((rounds * per_round) as u64)
}

pub fn run<K: Kind>(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(STRINGS, 1);
    let src = K::new::<String>(spec.threads * 2 * WORDS);
    on_threads(spec.threads, |t| {
        worker(&src, t, share(total, spec.threads, t))
    })
}
