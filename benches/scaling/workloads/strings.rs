//! `strings`: short-string processing. Each thread tokenises a generated
//! text into owned, upper-cased `String`s, formats each as `TOKEN#len`, joins
//! them with commas into one string, then splits that back and parses every
//! length — the allocation pattern of parsers, loggers and text pipelines:
//! many short strings, a few growing ones, all short-lived.

use super::{join_all, share, Rng, Spec};

/// Strings made in a full-size run, split among the threads.
const STRINGS: usize = 6_000_000;
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

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

fn worker(t: usize, strings: usize) -> Result<u64, String> {
    let mut rng = Rng::new(t as u64 + 5);
    let text = text(&mut rng);
    // What the joined string must look like, from borrowed slices only.
    let words: Vec<&str> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let expected_len: usize = words
        .iter()
        .map(|w| w.len() + 1 + digits(w.len()))
        .sum::<usize>()
        + words.len()
        - 1;
    let per_round = 2 * words.len() + 1;
    let rounds = (strings / per_round).max(1);
    for _ in 0..rounds {
        let tokens: Vec<String> = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| w.to_ascii_uppercase())
            .collect();
        let formatted: Vec<String> = tokens.iter().map(|t| format!("{t}#{}", t.len())).collect();
        let joined = formatted.join(",");
        drop(formatted);
        if joined.len() != expected_len {
            return Err(format!(
                "strings: joined {} bytes, expected {expected_len}",
                joined.len()
            ));
        }
        for (piece, token) in joined.split(',').zip(&tokens) {
            let (word, len) = piece
                .split_once('#')
                .ok_or_else(|| format!("strings: bad piece {piece:?}"))?;
            let len: usize = len
                .parse()
                .map_err(|_| format!("strings: bad length in {piece:?}"))?;
            if word != token || len != token.len() {
                return Err(format!("strings: {piece:?} does not match {token:?}"));
            }
        }
    }
    Ok((rounds * per_round) as u64)
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(STRINGS, 1);
    let handles: Vec<_> = (0..spec.threads)
        .map(|t| {
            let n = share(total, spec.threads, t);
            std::thread::spawn(move || worker(t, n))
        })
        .collect();
    Ok(join_all(handles)?.iter().sum())
}
