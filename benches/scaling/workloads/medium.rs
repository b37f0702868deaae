//! `medium`: medium-sized buffers, as a program that compresses a file in
//! chunks allocates them. Each thread repeatedly allocates an input buffer of
//! 256 KiB–4 MiB and fills it (reading the chunk), allocates an output buffer
//! of 256 KiB up to the input's size and "compresses" the input into it (a
//! cheap fold of every input word), checksumming the output. The last 4
//! chunks stay alive in a ring (a pipeline's chunks in flight); the oldest is
//! checked — input against its generator, output against its checksum — and
//! both buffers are freed.
//!
//! Every request is above the small-object sizes and near or above common
//! mmap thresholds, so this measures how an allocator keeps, reuses and
//! returns large blocks: an allocator that maps and unmaps every buffer pays
//! page faults on every touch. The chunk count shrinks with the square root
//! of the sweep's scale ([`Spec::n_sqrt`]), since each chunk is
//! milliseconds of work.

use super::{join_all, share, Rng, Spec};
use std::collections::VecDeque;

/// Chunks in a full-size run, split among the threads.
const CHUNKS: usize = 560;
/// Chunks (input and output buffer) alive at once per thread.
const RING: usize = 4;
/// Buffer sizes, in 8-byte words: 256 KiB to 4 MiB.
const WORDS: (usize, usize) = ((256 << 10) / 8, (4 << 20) / 8);

/// Word `i` of the input chunk `seed`: what "reading the file" yields.
#[inline]
fn input_word(seed: u64, i: usize) -> u64 {
    let x = (seed ^ i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

/// Folds `input` into `out_len` words: each output word mixes the input
/// words that map onto it, so every input word is read once and the output
/// is written front to back.
fn compress(input: &[u64], out_len: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(out_len);
    let mut acc = 0u64;
    let mut err = 0;
    for &w in input {
        acc = acc.rotate_left(5) ^ w.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        err += out_len;
        if err >= input.len() {
            err -= input.len();
            out.push(acc);
        }
    }
    debug_assert_eq!(out.len(), out_len);
    out
}

/// Order-sensitive checksum of a buffer.
fn checksum(words: &[u64]) -> u64 {
    words.iter().enumerate().fold(0u64, |sum, (j, &w)| {
        sum.wrapping_add((w ^ j as u64).wrapping_mul(0x94D0_49BB_1331_11EB))
    })
}

/// A chunk in flight: its buffers and what they must hold.
struct Chunk {
    seed: u64,
    input: Vec<u64>,
    output: Vec<u64>,
    sum: u64,
}

impl Chunk {
    fn new(rng: &mut Rng, seed: u64) -> Self {
        let in_len = rng.range(WORDS.0, WORDS.1);
        let out_len = rng.range(WORDS.0, in_len);
        let mut input = Vec::with_capacity(in_len);
        input.extend((0..in_len).map(|i| input_word(seed, i)));
        let output = compress(&input, out_len);
        let sum = checksum(&output);
        Self {
            seed,
            input,
            output,
            sum,
        }
    }

    fn check(&self) -> Result<(), String> {
        if let Some(i) = (0..self.input.len()).find(|&i| self.input[i] != input_word(self.seed, i))
        {
            return Err(format!(
                "medium: input buffer of chunk {:#x} ({} KiB at {:p}) corrupted at word {i}",
                self.seed,
                self.input.len() / 128,
                self.input.as_ptr()
            ));
        }
        if checksum(&self.output) != self.sum {
            return Err(format!(
                "medium: output buffer of chunk {:#x} ({} KiB at {:p}) fails its checksum",
                self.seed,
                self.output.len() / 128,
                self.output.as_ptr()
            ));
        }
        Ok(())
    }
}

fn worker(t: usize, chunks: usize) -> Result<u64, String> {
    let mut rng = Rng::new(t as u64 + 4242);
    let mut ring = VecDeque::with_capacity(RING + 1);
    for c in 0..chunks {
        ring.push_back(Chunk::new(&mut rng, ((t as u64) << 32) | c as u64));
        if ring.len() > RING {
            ring.pop_front().expect("ring is full").check()?;
        }
    }
    for chunk in ring {
        chunk.check()?;
    }
    Ok(2 * chunks as u64)
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    let total = spec.n_sqrt(CHUNKS, spec.threads * (RING + 1));
    let handles: Vec<_> = (0..spec.threads)
        .map(|t| {
            let n = share(total, spec.threads, t);
            std::thread::spawn(move || worker(t, n))
        })
        .collect();
    Ok(join_all(handles)?.iter().sum())
}
