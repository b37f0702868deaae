//! `numeric`: the allocation pattern of a dynamic language's arithmetic,
//! where every number is a heap object and every intermediate result a new
//! one (CPython's ints and floats). Each thread keeps 512 boxed integers,
//! floats and complex numbers and updates them with expressions whose every
//! step allocates a new `Box` and drops the operands it replaces. The same
//! computation on plain numbers runs alongside, and the results must agree
//! bit for bit.

use super::{join_all, share, Spec};
use std::hint::black_box;

/// Boxes allocated in a full-size run, split among the threads.
const BOXES: usize = 16_000_000;
/// Live numbers of each kind per thread.
const LIVE: usize = 512;
/// Boxes allocated per element per sweep (3 int + 3 float + 2 complex).
const PER_ELEMENT: usize = 8;

const MODULUS: u64 = 1_000_000_007;

type Complex = (f64, f64);

fn int_step(a: u64, b: u64) -> u64 {
    (a * 3 + b) % MODULUS
}

fn float_step(a: f64, b: f64) -> f64 {
    (a * 0.5 + b).sqrt() + 0.25
}

fn complex_step(z: Complex, c: Complex) -> Complex {
    let sq = (z.0 * z.0 - z.1 * z.1, 2.0 * z.0 * z.1);
    (sq.0 * 0.25 + c.0, sq.1 * 0.25 + c.1)
}

/// `bx` is `Box::new` behind `black_box`, so the optimiser cannot elide or
/// reuse the allocations: allocating a new object for every result *is* the
/// workload (hence also `clippy::replace_box` is allowed).
#[inline(always)]
fn bx<T>(v: T) -> Box<T> {
    black_box(Box::new(v))
}

#[allow(clippy::replace_box)]
fn worker(t: usize, boxes: usize) -> Result<u64, String> {
    let mut ints: Vec<Box<u64>> = (0..LIVE).map(|i| Box::new((i * 7 + t) as u64)).collect();
    let mut floats: Vec<Box<f64>> = (0..LIVE).map(|i| Box::new(i as f64 / 3.0)).collect();
    let mut cplx: Vec<Box<Complex>> = (0..LIVE)
        .map(|i| Box::new((i as f64 / LIVE as f64, 0.5)))
        .collect();
    let mut ints_ref: Vec<u64> = ints.iter().map(|b| **b).collect();
    let mut floats_ref: Vec<f64> = floats.iter().map(|b| **b).collect();
    let mut cplx_ref: Vec<Complex> = cplx.iter().map(|b| **b).collect();
    let c0 = (-0.4, 0.3);
    let sweeps = (boxes / (LIVE * PER_ELEMENT)).max(1);
    for _ in 0..sweeps {
        for i in 0..LIVE {
            let next = (i + 1) % LIVE;
            // Integers: t1 = a * 3; t2 = t1 + b; a = t2 % M — three objects.
            let t1 = bx(*ints[i] * 3);
            let t2 = bx(*t1 + *ints[next]);
            ints[i] = bx(*t2 % MODULUS);
            ints_ref[i] = int_step(ints_ref[i], ints_ref[next]);
            // Floats: t1 = a * 0.5; t2 = t1 + b; a = sqrt(t2) + 0.25.
            let f1 = bx(*floats[i] * 0.5);
            let f2 = bx(*f1 + *floats[next]);
            floats[i] = bx(f2.sqrt() + 0.25);
            floats_ref[i] = float_step(floats_ref[i], floats_ref[next]);
            // Complex: sq = z * z; z = sq * 0.25 + c.
            let z = *cplx[i];
            let sq = bx((z.0 * z.0 - z.1 * z.1, 2.0 * z.0 * z.1));
            cplx[i] = bx((sq.0 * 0.25 + c0.0, sq.1 * 0.25 + c0.1));
            cplx_ref[i] = complex_step(cplx_ref[i], c0);
        }
    }
    for i in 0..LIVE {
        let same_complex = cplx[i].0.to_bits() == cplx_ref[i].0.to_bits()
            && cplx[i].1.to_bits() == cplx_ref[i].1.to_bits();
        if *ints[i] != ints_ref[i]
            || floats[i].to_bits() != floats_ref[i].to_bits()
            || !same_complex
        {
            return Err(format!(
                "numeric: element {i} differs from the unboxed computation"
            ));
        }
    }
    Ok((sweeps * LIVE * PER_ELEMENT) as u64)
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(BOXES, LIVE * PER_ELEMENT);
    let handles: Vec<_> = (0..spec.threads)
        .map(|t| {
            let n = share(total, spec.threads, t);
            std::thread::spawn(move || worker(t, n))
        })
        .collect();
    Ok(join_all(handles)?.iter().sum())
}
