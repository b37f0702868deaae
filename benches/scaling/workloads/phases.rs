//! `phases`: a program that changes phase. The threads together fill a
//! footprint with objects of one size, free them all, and go on to the next
//! phase with another size: 64 B objects; then 1 KiB objects with 64–512 KiB
//! buffers among them (a quarter of the bytes); then 256 B objects. A
//! barrier separates the phases, so nothing is live when one starts.
//!
//! An allocator that reuses freed memory across size classes peaks at about
//! the footprint; one that keeps freed memory for the size that used it
//! peaks at two or three times that. So the footprint is what the peak RSS
//! is read against: it shrinks with the square root of the sweep's scale
//! ([`Spec::n_sqrt`]: 192 MiB full, about 66 MiB in the default sweep).
//!
//! The small objects are held in a list threaded through the objects
//! themselves (word 0 links to the next one), so the workload adds no
//! memory of its own to the peak. Every object and buffer is filled with a
//! pattern and checked before it is freed.

use super::{join_all, share, Raw, Rng, Spec};
use std::alloc::Layout;
use std::sync::{Arc, Barrier};

/// Bytes the threads fill in each phase of a full-size run.
const FOOTPRINT: usize = 192 << 20;
/// Least bytes per thread and phase, so every phase has objects to free.
const MIN_PER_THREAD: usize = 1 << 20;
/// Object size of each phase, and whether a quarter of the phase's bytes go
/// to medium buffers instead.
const PHASES: [(usize, bool); 3] = [(64, false), (1024, true), (256, false)];
/// Size range of the medium buffers.
const MEDIUM: (usize, usize) = (64 << 10, 512 << 10);
/// Alignment of every request.
const ALIGN: usize = 8;

/// Word `i` of the block tagged `tag`: every word differs, so a block that
/// overlaps another or reads back stale memory fails the check.
#[inline]
fn pattern(tag: u64, i: usize) -> u64 {
    tag ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Fills words `from..` of `b` with the pattern of `tag`.
fn fill(b: &mut Raw, tag: u64, from: usize) {
    for i in from..b.len() / 8 {
        b.put_u64(8 * i, pattern(tag, i));
    }
}

/// Checks words `from..` of `b` against the pattern of `tag`.
fn check(b: &Raw, tag: u64, from: usize) -> Result<(), String> {
    match (from..b.len() / 8).find(|&i| b.get_u64(8 * i) != pattern(tag, i)) {
        None => Ok(()),
        Some(i) => Err(format!(
            "phases: {}-byte block at {:#x} (tag {tag:#x}) corrupted at word {i}",
            b.len(),
            b.addr()
        )),
    }
}

/// Blocks of one layout, linked through their first word: holding them
/// costs no memory besides the blocks. Blocks still in the list when it is
/// dropped (after a failed check) are leaked, which a failed cell's
/// throwaway process does not mind.
struct Chain {
    head: *mut u8,
    layout: Layout,
}

impl Chain {
    fn new(size: usize) -> Self {
        Self {
            head: std::ptr::null_mut(),
            layout: Layout::from_size_align(size, ALIGN).expect("valid layout"),
        }
    }

    fn push(&mut self, mut b: Raw) {
        debug_assert_eq!(b.len(), self.layout.size());
        b.put_u64(0, self.head as u64);
        self.head = b.into_raw().0;
    }

    /// The block pushed last, if any.
    fn pop(&mut self) -> Option<Raw> {
        if self.head.is_null() {
            return None;
        }
        // SAFETY: `head` came from `into_raw` of a block of `layout` (every
        // block pushed has it) and is taken back once: it leaves the list.
        let b = unsafe { Raw::from_raw(self.head, self.layout) };
        self.head = b.get_u64(0) as *mut u8;
        Some(b)
    }
}

/// The tag of object `index` of `phase` on thread `t`.
fn tag(phase: usize, t: usize, index: usize) -> u64 {
    ((phase as u64) << 56) | ((t as u64) << 40) | index as u64
}

/// One phase on thread `t`: fills `bytes` with `size`-byte objects (and, if
/// `medium`, a quarter of it with medium buffers spread among them), then
/// checks and frees everything. Returns the objects allocated.
fn phase(
    t: usize,
    p: usize,
    bytes: usize,
    size: usize,
    medium: bool,
    rng: &mut Rng,
) -> Result<u64, String> {
    let mut buffer_sizes = Vec::new();
    if medium {
        let budget = bytes / 4;
        let mut used = 0;
        while used < budget {
            let s = rng.range(MEDIUM.0, MEDIUM.1) & !7;
            if used + s > budget && !buffer_sizes.is_empty() {
                break;
            }
            used += s;
            buffer_sizes.push(s);
        }
    }
    let medium_bytes: usize = buffer_sizes.iter().sum();
    let objects = bytes.saturating_sub(medium_bytes) / size;
    // One buffer after every `every` objects.
    let every = objects / (buffer_sizes.len() + 1);
    let mut buffers = Vec::with_capacity(buffer_sizes.len());
    let mut chain = Chain::new(size);
    for i in 0..objects {
        let mut b = Raw::new(size, ALIGN);
        let key = tag(p, t, i);
        b.put_u64(8, key);
        fill(&mut b, key, 2);
        chain.push(b);
        if every > 0 && (i + 1) % every == 0 && buffers.len() < buffer_sizes.len() {
            let k = buffers.len();
            let mut m = Raw::new(buffer_sizes[k], ALIGN);
            fill(&mut m, tag(p, t, objects + k), 0);
            buffers.push(m);
        }
    }
    for (k, &s) in buffer_sizes.iter().enumerate().skip(buffers.len()) {
        let mut m = Raw::new(s, ALIGN);
        fill(&mut m, tag(p, t, objects + k), 0);
        buffers.push(m);
    }
    // Free the objects newest first (the list's order), then the buffers.
    for i in (0..objects).rev() {
        let b = chain
            .pop()
            .ok_or_else(|| format!("phases: object list ended {} objects early", i + 1))?;
        let key = tag(p, t, i);
        if b.get_u64(8) != key {
            return Err(format!(
                "phases: object {i} of phase {p} on thread {t} at {:#x} has tag {:#x}",
                b.addr(),
                b.get_u64(8)
            ));
        }
        check(&b, key, 2)?;
    }
    if chain.pop().is_some() {
        return Err("phases: object list longer than the objects allocated".into());
    }
    for (k, m) in buffers.into_iter().enumerate() {
        check(&m, tag(p, t, objects + k), 0)?;
    }
    Ok((objects + buffer_sizes.len()) as u64)
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    let footprint = spec.n_sqrt(FOOTPRINT, MIN_PER_THREAD * spec.threads);
    let barrier = Arc::new(Barrier::new(spec.threads));
    let handles: Vec<_> = (0..spec.threads)
        .map(|t| {
            let bytes = share(footprint, spec.threads, t);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> Result<u64, String> {
                let mut rng = Rng::new(t as u64 + 77);
                let mut ops = 0;
                let mut failed = None;
                for (p, &(size, medium)) in PHASES.iter().enumerate() {
                    // A thread that failed keeps meeting the barriers, so
                    // the others are not left waiting.
                    if failed.is_none() {
                        match phase(t, p, bytes, size, medium, &mut rng) {
                            Ok(n) => ops += n,
                            Err(e) => failed = Some(e),
                        }
                    }
                    barrier.wait();
                }
                failed.map_or(Ok(ops), Err)
            })
        })
        .collect();
    Ok(join_all(handles)?.iter().sum())
}
